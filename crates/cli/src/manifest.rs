//! Loading manifests from files: multi-document YAML, from one file or a directory
//! tree. The offline CLI and the tests read `config/samples/` through this.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::api::{API_VERSION, AccessPolicy, Clearance, DataProduct, DataSource, GROUP, MeshPolicy};

/// One YAML document of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// The file it was read from.
    pub file: PathBuf,
    /// Position of the document in the file, from 0 (empty documents count too).
    pub index: usize,
    /// The document as JSON.
    pub value: Value,
}

impl Document {
    fn str_field(&self, pointer: &str) -> &str {
        self.value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
    }
    pub fn api_version(&self) -> &str {
        self.str_field("/apiVersion")
    }
    pub fn kind(&self) -> &str {
        self.str_field("/kind")
    }
    pub fn name(&self) -> &str {
        self.str_field("/metadata/name")
    }
    pub fn namespace(&self) -> Option<&str> {
        self.value.pointer("/metadata/namespace").and_then(Value::as_str)
    }

    /// `file#index (Kind name)`, for messages.
    pub fn describe(&self) -> String {
        format!("{}#{} ({} {})", self.file.display(), self.index, self.kind(), self.name())
    }

    /// The document as a drmesh object, or [`MeshObject::Other`] for any other kind.
    pub fn to_object(&self) -> Result<MeshObject, ManifestError> {
        let typed = |kind: &str| -> Option<Result<MeshObject, serde_json::Error>> {
            let value = self.value.clone();
            Some(match kind {
                "DataSource" => serde_json::from_value(value).map(|o| MeshObject::DataSource(Box::new(o))),
                "DataProduct" => serde_json::from_value(value).map(|o| MeshObject::DataProduct(Box::new(o))),
                "AccessPolicy" => serde_json::from_value(value).map(|o| MeshObject::AccessPolicy(Box::new(o))),
                "Clearance" => serde_json::from_value(value).map(|o| MeshObject::Clearance(Box::new(o))),
                "MeshPolicy" => serde_json::from_value(value).map(|o| MeshObject::MeshPolicy(Box::new(o))),
                _ => return None,
            })
        };
        let api_version = self.api_version();
        let in_group = api_version.split('/').next() == Some(GROUP);
        match (api_version == API_VERSION, typed(self.kind())) {
            (true, Some(parsed)) => parsed.map_err(|source| ManifestError::Invalid { what: self.describe(), source }),
            _ if in_group => {
                Err(ManifestError::UnknownKind { what: self.describe(), api_version: api_version.to_string() })
            }
            _ => Ok(MeshObject::Other),
        }
    }
}

/// A parsed manifest.
#[derive(Clone, Debug, PartialEq)]
pub enum MeshObject {
    DataSource(Box<DataSource>),
    DataProduct(Box<DataProduct>),
    AccessPolicy(Box<AccessPolicy>),
    /// Cluster-scoped: a person's or group's clearance.
    Clearance(Box<Clearance>),
    /// Cluster-scoped: the cluster's MeshPolicy.
    MeshPolicy(Box<MeshPolicy>),
    /// Any other kind (Namespace, Secret, ...).
    Other,
}

/// Why manifests could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: document {index} is not valid YAML: {source}", path.display())]
    Yaml {
        path: PathBuf,
        index: usize,
        #[source]
        source: drmesh_yaml::Error,
    },
    #[error("{}: document {index} is not an object with apiVersion and kind", path.display())]
    NotAnObject { path: PathBuf, index: usize },
    #[error("{what}: unknown drmesh kind for apiVersion {api_version}")]
    UnknownKind { what: String, api_version: String },
    #[error("{what}: {source}")]
    Invalid {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ManifestError {
    /// A stable label for metrics and exit reports.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::Yaml { .. } => "yaml",
            Self::NotAnObject { .. } => "not_an_object",
            Self::UnknownKind { .. } => "unknown_kind",
            Self::Invalid { .. } => "invalid",
        }
    }
}

/// Splits YAML text into documents, skipping empty ones (comments only, `---` alone).
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut documents = Vec::new();
    for (index, document) in drmesh_yaml::documents(text).enumerate() {
        let value = document.map_err(|source| ManifestError::Yaml { path: file.to_path_buf(), index, source })?;
        match &value {
            Value::Null => continue,
            Value::Object(map) if map.contains_key("apiVersion") && map.contains_key("kind") => {}
            _ => {
                return Err(ManifestError::NotAnObject { path: file.to_path_buf(), index });
            }
        }
        documents.push(Document { file: file.to_path_buf(), index, value });
    }
    Ok(documents)
}

/// Like [`parse_documents`], but goes on after a document that is not an object: returns
/// the documents read and every problem met. A YAML syntax error ends the file (the
/// stream cannot be resynchronised after it).
pub fn parse_documents_lenient(file: &Path, text: &str) -> (Vec<Document>, Vec<ManifestError>) {
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    for (index, document) in drmesh_yaml::documents(text).enumerate() {
        let value = match document {
            Ok(value) => value,
            Err(source) => {
                problems.push(ManifestError::Yaml { path: file.to_path_buf(), index, source });
                break;
            }
        };
        match &value {
            Value::Null => {}
            Value::Object(map) if map.contains_key("apiVersion") && map.contains_key("kind") => {
                documents.push(Document { file: file.to_path_buf(), index, value });
            }
            _ => problems.push(ManifestError::NotAnObject { path: file.to_path_buf(), index }),
        }
    }
    (documents, problems)
}

/// The files [`load_documents`] reads for `path`: the file itself, or every
/// `.yaml`/`.yml` file under the directory, in path order, hidden entries skipped.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    Ok(files)
}

/// The documents of a file, or of every `.yaml`/`.yml` file under a directory (files in
/// path order, hidden entries skipped).
pub fn load_documents(path: &Path) -> Result<Vec<Document>, ManifestError> {
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    let mut documents = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|source| ManifestError::Read { path: file.clone(), source })?;
        documents.extend(parse_documents(&file, &text)?);
    }
    Ok(documents)
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let read_error = |source| ManifestError::Read { path: path.to_path_buf(), source };
    if !path.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_error)? {
        entries.push(entry.map_err(read_error)?.path());
    }
    entries.sort();
    for entry in entries {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        if entry.is_dir() {
            collect_files(&entry, files)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            files.push(entry);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_DOCS: &str = "# a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: police}\n---\n# only a comment\n---\napiVersion: drmesh.io/v1alpha1\nkind: AccessPolicy\nmetadata: {name: g, namespace: police}\nspec:\n  dataProduct: incident-feed\n  subjects: [{kind: Group, name: cnc-officers}]\n";

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let docs = parse_documents(Path::new("x.yaml"), TWO_DOCS).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].kind(), docs[0].name()), ("Namespace", "police"));
        assert_eq!(docs[1].namespace(), Some("police"));
        assert!(matches!(docs[0].to_object(), Ok(MeshObject::Other)));
        match docs[1].to_object() {
            Ok(MeshObject::AccessPolicy(policy)) => {
                assert_eq!(policy.spec.data_product, "incident-feed")
            }
            other => panic!("expected an AccessPolicy, got {other:?}"),
        }
    }

    #[test]
    fn reports_bad_documents_with_their_place() {
        let err = parse_documents(Path::new("bad.yaml"), "a: [1\n").unwrap_err();
        assert_eq!(err.label(), "yaml");
        let err = parse_documents(Path::new("bad.yaml"), "---\n- 1\n").unwrap_err();
        assert!(matches!(err, ManifestError::NotAnObject { index: 0, .. }), "{err}");

        let bad_enum =
            "apiVersion: drmesh.io/v1alpha1\nkind: DataSource\nmetadata: {name: s}\nspec: {classification: Secret}\n";
        let docs = parse_documents(Path::new("s.yaml"), bad_enum).unwrap();
        let err = docs[0].to_object().unwrap_err();
        assert_eq!(err.label(), "invalid");
        assert!(err.to_string().starts_with("s.yaml#0 (DataSource s)"), "{err}");

        let unknown = "apiVersion: drmesh.io/v1\nkind: DataSource\nmetadata: {name: s}\n";
        let docs = parse_documents(Path::new("u.yaml"), unknown).unwrap();
        assert_eq!(docs[0].to_object().unwrap_err().label(), "unknown_kind");
    }

    #[test]
    fn loads_a_directory_tree_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), "apiVersion: v1\nkind: Secret\nmetadata: {name: b}\n").unwrap();
        std::fs::write(dir.path().join("a.yml"), "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n").unwrap();
        std::fs::write(dir.path().join("sub/c.yaml"), "apiVersion: v1\nkind: Secret\nmetadata: {name: c}\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not yaml: [").unwrap();
        let names: Vec<String> = load_documents(dir.path()).unwrap().iter().map(|d| d.name().to_string()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let missing = load_documents(&dir.path().join("missing.yaml")).unwrap_err();
        assert_eq!(missing.label(), "read");
    }
}
