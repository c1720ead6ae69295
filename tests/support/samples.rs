//! The reference mesh (config/samples) as JSON documents, file by file in name order.

use std::path::Path;

use serde_json::Value;

pub fn reference() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("samples").map(|e| e.expect("entry").path()).collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read sample");
        for doc in drmesh::yaml::documents(&text) {
            let v: Value = doc.expect("yaml");
            if !v.is_null() {
                docs.push(v);
            }
        }
    }
    docs
}
