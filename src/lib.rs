pub mod api;
pub mod audit;
pub mod cli;
pub mod controllers;
pub mod leader;
pub mod manifest;
pub mod mesh;
pub mod telemetry;
