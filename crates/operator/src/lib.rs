//! The operator: the controllers that apply the core's decisions to the cluster, leader
//! election and telemetry. `drmesh run` starts it (see [`run`]).

/// The API types and the pure core, under the names the controllers use.
pub use drmesh_api as api;
pub use drmesh_core as mesh;
pub use drmesh_core::audit;

pub mod audit_sink;
pub mod controllers;
pub mod leader;
pub mod run;
pub mod telemetry;
