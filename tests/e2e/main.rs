//! End-to-end tests against the real local control plane. Run with `make e2e`
//! (brings the cluster up), or `cargo test --features e2e --test e2e` on a running one.
mod admission;
mod adoption;
mod datapath;
mod fail_closed;
mod harness;
mod matrix;
mod operator;
mod orders;
mod packaging;
mod people;
mod reads;
mod reasons;
mod smoke;
mod yaml;
