//! drmesh as a library, for its tests and benches: the crates of the workspace under one
//! roof. The layers are separate crates (see Cargo.toml), so a wrong import between them
//! does not compile.

pub use drmesh_api as api;
pub use drmesh_cli as cli;
pub use drmesh_cli::manifest;
pub use drmesh_core as mesh;
pub use drmesh_core::audit;
pub use drmesh_operator::{audit_sink, controllers, leader, telemetry};
pub use drmesh_yaml as yaml;
