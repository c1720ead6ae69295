pub mod api;
pub mod audit;
