//! The committed CRD files must be exactly what the Rust types generate.
//! When this fails after changing crates/api, regenerate them with `make crds`
//! (i.e. `cargo run -q -- crds > crds/drmesh.io_crds.yaml`, same for the chart) and commit.

use std::path::Path;

#[test]
fn committed_crds_match_the_api_types() {
    let generated = drmesh::api::crds_yaml();
    for file in ["crds/drmesh.io_crds.yaml", "charts/drmesh/crds/drmesh.io_crds.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {file} ({e}); generate it with `make crds`"));
        assert!(committed == generated, "{file} is stale: regenerate it with `make crds` and commit the result");
    }
}
