//! The reference mesh (config/samples) and then its dummy credentials
//! (config/sample-credentials, kept apart so that no GitOps example syncs a Secret) as
//! JSON documents, file by file in name order.

use std::path::Path;

use serde_json::Value;

pub fn reference() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = Vec::new();
    for dir in ["config/samples", "config/sample-credentials"] {
        let mut files: Vec<_> =
            std::fs::read_dir(root.join(dir)).expect("samples").map(|e| e.expect("entry").path()).collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read sample");
            for doc in drmesh::yaml::documents(&text) {
                let v: Value = doc.expect("yaml");
                if !v.is_null() {
                    docs.push(v);
                }
            }
        }
    }
    docs
}
