pub mod api;
pub mod audit;
pub mod cli;
pub mod manifest;
pub mod mesh;
pub mod controllers;
pub mod telemetry;
pub mod leader;
