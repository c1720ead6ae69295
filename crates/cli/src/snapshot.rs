//! Manifests on disk -> the [`Snapshot`] of the mesh that the pure core decides on: the
//! same kind of view the operator builds from its watch caches. Namespaces give the
//! clearances (`drmesh.io/clearance`), Secrets tell which credentials exist, and the
//! drmesh objects that the API server would admit make up the mesh. What would not be
//! admitted (and anything unreadable) becomes a [`Diagnostic`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::mesh::labels;
use jiff::Timestamp;
use serde_json::Value;

use super::CliError;
use super::admission::Admission;
use super::report::{Diagnostic, ObjectId, Origin};
use crate::api::{Classification, GROUP, clearance_from_labels};
use crate::manifest::{Document, ManifestError, MeshObject, manifest_files, parse_documents_lenient};
use crate::mesh::Snapshot;

/// What every offline command reads: manifests, the instant to decide at, and what the
/// manifests may leave unsaid.
#[derive(Clone, Debug, clap::Args)]
pub struct Inputs {
    /// Manifests: files, directories (every .yaml/.yml file, recursively) or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required_unless_present = "cluster", num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Read the live mesh with the current kubeconfig (Namespaces, Secret names and the
    /// drmesh objects); with `-f` too, both are read. For `diff`: compare against it.
    #[arg(long)]
    pub cluster: bool,
    /// The instant to decide at (RFC 3339), e.g. 2026-01-01T00:00:00Z; default: now.
    /// Grants that expired before it grant nothing.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<Timestamp>,
    /// Namespace of objects that do not name one (as `kubectl apply -n`).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Clearance of a domain whose Namespace manifest is not among the inputs,
    /// e.g. `--clearance cnc=Restricted` (repeatable). A Namespace manifest wins.
    #[arg(long = "clearance", value_name = "NAMESPACE=LEVEL", value_parser = parse_clearance)]
    pub clearances: Vec<(String, Classification)>,
    /// The API server's addresses or CIDRs (comma-separated), as the operator's
    /// `--api-server-cidrs` resolves them: a grant to a User or Group then admits them on
    /// its ports (people read through the API server's proxy). Default: none.
    #[arg(long, value_name = "CIDRS", value_delimiter = ',', value_parser = parse_api_server)]
    pub api_server_cidrs: Vec<String>,
}

fn parse_api_server(text: &str) -> Result<String, String> {
    let parsed = crate::mesh::grant::ApiServer::parse([text])?;
    Ok(parsed.cidrs().first().cloned().unwrap_or_default())
}

fn parse_clearance(text: &str) -> Result<(String, Classification), String> {
    let (namespace, level) = text.split_once('=').ok_or("expected NAMESPACE=LEVEL, e.g. cnc=Restricted")?;
    let level = level.parse::<Classification>().map_err(|e| e.to_string())?;
    Ok((namespace.to_string(), level))
}

impl Inputs {
    /// The instant to decide at: `--now`, else the clock (the only clock read, here).
    pub fn instant(&self) -> Timestamp {
        self.now.unwrap_or_else(Timestamp::now)
    }
}

/// The mesh the manifests describe, with everything found wrong while reading them.
#[derive(Clone, Default)]
pub struct Mesh {
    pub snapshot: Snapshot,
    /// Where each admitted drmesh object (and each Namespace and Secret) was declared.
    pub origins: BTreeMap<ObjectId, Origin>,
    /// drmesh objects as written (after namespace defaulting), for transition rules.
    pub raw: BTreeMap<ObjectId, Value>,
    /// Every object read, in input order (admitted or not), for reports.
    pub objects: Vec<(ObjectId, Origin)>,
    /// Namespaces that have a Namespace manifest among the inputs.
    pub declared_namespaces: BTreeSet<String>,
    /// Namespaces the manifests say something about (objects in them, or their manifest).
    pub known_namespaces: BTreeSet<String>,
    /// Namespaces whose Secrets are among the inputs: there, a missing Secret is an error.
    pub secret_namespaces: BTreeSet<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Mesh {
    pub fn origin(&self, id: &ObjectId) -> Origin {
        self.origins.get(id).cloned().unwrap_or(Origin { file: PathBuf::from("<unknown>"), document: 0 })
    }
}

/// Reads every input. Unreadable paths fail with [`CliError::Read`] (exit code 2);
/// everything else wrong becomes a diagnostic of the returned mesh.
pub fn load(inputs: &Inputs, admission: &Admission) -> Result<Mesh, CliError> {
    let mut texts = if inputs.cluster { super::live::texts()? } else { Vec::new() };
    for path in &inputs.paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| CliError::Read { path: path.clone(), source })?;
            texts.push((PathBuf::from("<stdin>"), text));
            continue;
        }
        let files = manifest_files(path).map_err(|e| match e {
            ManifestError::Read { path, source } => CliError::Read { path, source },
            other => CliError::Read { path: path.clone(), source: std::io::Error::other(other.to_string()) },
        })?;
        if files.is_empty() {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no .yaml or .yml file in this directory");
            return Err(CliError::Read { path: path.clone(), source });
        }
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|source| CliError::Read { path: file.clone(), source })?;
            texts.push((file, text));
        }
    }
    let mut mesh = load_texts(&texts, &inputs.namespace, &inputs.clearances, admission);
    mesh.snapshot.api_server = crate::mesh::grant::ApiServer::parse(&inputs.api_server_cidrs).unwrap_or_default();
    Ok(mesh)
}

/// Builds the mesh from file contents (file name, text). Never fails, never panics: what
/// cannot be used is reported.
pub fn load_texts(
    texts: &[(PathBuf, String)],
    default_namespace: &str,
    clearances: &[(String, Classification)],
    admission: &Admission,
) -> Mesh {
    let mut mesh = Mesh::default();
    for (namespace, level) in clearances {
        mesh.snapshot.set_clearance(namespace, *level);
        mesh.known_namespaces.insert(namespace.clone());
    }
    for (file, text) in texts {
        let (documents, problems) = parse_documents_lenient(file, text);
        for problem in problems {
            let (index, message) = match &problem {
                ManifestError::Yaml { index, source, .. } => (*index, format!("not valid YAML: {source}")),
                ManifestError::NotAnObject { index, .. } => (*index, "not an object with apiVersion and kind".into()),
                other => (0, other.to_string()),
            };
            let origin = Origin { file: file.clone(), document: index };
            mesh.diagnostics.push(Diagnostic::error(&origin, "yaml", message));
        }
        for document in documents.into_iter().flat_map(expand_list) {
            add_document(&mut mesh, document, default_namespace, admission);
        }
    }
    mesh
}

/// A `kind: List` (as `kubectl get -o yaml` and `drmesh render -o json` print) stands for its items.
fn expand_list(document: Document) -> Vec<Document> {
    if document.kind() != "List" {
        return vec![document];
    }
    let items = document.value.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    items
        .into_iter()
        .filter(|item| item.get("apiVersion").is_some() && item.get("kind").is_some())
        .map(|value| Document { file: document.file.clone(), index: document.index, value })
        .collect()
}

fn add_document(mesh: &mut Mesh, mut document: Document, default_namespace: &str, admission: &Admission) {
    let origin = Origin { file: document.file.clone(), document: document.index };
    let kind = document.kind().to_string();
    let in_group = document.api_version().split('/').next() == Some(GROUP);
    let core = document.api_version() == "v1";
    if core && kind == "Namespace" {
        add_namespace(mesh, &document, origin);
        return;
    }
    if in_group && matches!(kind.as_str(), "Clearance" | "MeshPolicy") {
        add_cluster_policy(mesh, document, origin, admission);
        return;
    }
    let namespaced = in_group || (core && kind == "Secret");
    if !namespaced {
        return; // other kinds do not change what drmesh decides
    }
    if document.namespace().is_none() && document.value.get("metadata").is_some_and(Value::is_object) {
        document.value["metadata"]["namespace"] = Value::String(default_namespace.to_string());
        let id = ObjectId::new(&kind, default_namespace, document.name());
        let message = format!("metadata.namespace is not set: taken as {default_namespace:?} (set it, or pass -n)");
        mesh.diagnostics.push(Diagnostic::warning(&origin, "metadata", message).on(&id).at("metadata.namespace"));
    }
    let namespace = document.namespace().unwrap_or(default_namespace).to_string();
    let id = ObjectId::new(&kind, &namespace, document.name());
    mesh.objects.push((id.clone(), origin.clone()));
    if let Some(first) = mesh.origins.get(&id) {
        let message =
            format!("{id} is also declared in {}#{}: the last one declared wins", first.file.display(), first.document);
        mesh.diagnostics.push(Diagnostic::error(&origin, "duplicate", message).on(&id));
    }
    if core {
        mesh.known_namespaces.insert(namespace.clone());
        mesh.secret_namespaces.insert(namespace.clone());
        let released = document.value.pointer(&format!("/metadata/labels/{}", labels::CREDENTIALS.replace('/', "~1")))
            == Some(&Value::String("true".into()));
        if released {
            mesh.snapshot.add_secret(&namespace, document.name());
        } else {
            mesh.snapshot.add_unreleased_secret(&namespace, document.name());
        }
        mesh.origins.insert(id, origin);
        return;
    }
    if !admission.knows(&kind) || document.api_version() != crate::api::API_VERSION {
        let message = format!("unknown drmesh kind {kind:?} for apiVersion {:?}", document.api_version());
        mesh.diagnostics.push(Diagnostic::error(&origin, "schema", message).on(&id).at("kind"));
        return;
    }
    mesh.known_namespaces.insert(namespace.clone());
    match admitted(mesh, admission, &document, &origin, &id) {
        Some(MeshObject::DataSource(o)) => mesh.snapshot.add_source(*o),
        Some(MeshObject::DataProduct(o)) => mesh.snapshot.add_product(*o),
        Some(MeshObject::AccessPolicy(o)) => mesh.snapshot.add_policy(*o),
        _ => return,
    }
    mesh.raw.insert(id.clone(), document.value);
    mesh.origins.insert(id, origin);
}

/// The document as the API server would admit it (schema and CEL rules), parsed; its
/// violations or parse error become diagnostics and `None`.
fn admitted(
    mesh: &mut Mesh,
    admission: &Admission,
    document: &Document,
    origin: &Origin,
    id: &ObjectId,
) -> Option<MeshObject> {
    let violations = admission.check(document.kind(), &document.value);
    let admitted = violations.is_empty();
    for v in violations {
        mesh.diagnostics.push(Diagnostic::error(origin, v.rule, v.message).on(id).at(v.field));
    }
    if !admitted {
        return None;
    }
    match document.to_object() {
        Ok(object) => Some(object),
        Err(e) => {
            mesh.diagnostics.push(Diagnostic::error(origin, "schema", e.to_string()).on(id));
            None
        }
    }
}

/// A cluster-scoped Clearance or MeshPolicy: no namespace, checked like the API server would.
fn add_cluster_policy(mesh: &mut Mesh, document: Document, origin: Origin, admission: &Admission) {
    let kind = document.kind().to_string();
    let id = ObjectId::new(&kind, "", document.name());
    mesh.objects.push((id.clone(), origin.clone()));
    if let Some(first) = mesh.origins.get(&id) {
        let message =
            format!("{id} is also declared in {}#{}: the last one declared wins", first.file.display(), first.document);
        mesh.diagnostics.push(Diagnostic::error(&origin, "duplicate", message).on(&id));
    }
    match admitted(mesh, admission, &document, &origin, &id) {
        Some(MeshObject::Clearance(o)) => mesh.snapshot.add_person_clearance(*o),
        Some(MeshObject::MeshPolicy(o)) => mesh.snapshot.set_mesh_policy(*o),
        _ => return,
    }
    mesh.raw.insert(id.clone(), document.value);
    mesh.origins.insert(id, origin);
}

fn add_namespace(mesh: &mut Mesh, document: &Document, origin: Origin) {
    let name = document.name().to_string();
    let id = ObjectId::new("Namespace", "", &name);
    mesh.objects.push((id.clone(), origin.clone()));
    if !super::admission::is_dns_label(&name) {
        let message = format!("{name:?} is not a valid namespace name (lowercase RFC 1123 label)");
        mesh.diagnostics.push(Diagnostic::error(&origin, "metadata", message).on(&id).at("metadata.name"));
        return;
    }
    let labels: Option<BTreeMap<String, String>> =
        document.value.pointer("/metadata/labels").and_then(|l| serde_json::from_value(l.clone()).ok());
    let clearance = match clearance_from_labels(labels.as_ref()) {
        Ok(level) => level,
        Err(e) => {
            let field = format!("metadata.labels[{:?}]", crate::api::CLEARANCE_LABEL);
            let message = format!("{e}: the domain is treated as Public (fail closed)");
            mesh.diagnostics.push(Diagnostic::error(&origin, "clearance-label", message).on(&id).at(field));
            Classification::Public
        }
    };
    mesh.snapshot.set_clearance(&name, clearance);
    mesh.declared_namespaces.insert(name.clone());
    mesh.known_namespaces.insert(name);
    mesh.origins.insert(id, origin);
}

/// Reads `path` for tests and tools: `load_texts` over the files of one directory.
pub fn load_path(path: &Path, admission: &Admission) -> Result<Mesh, CliError> {
    let inputs = Inputs {
        paths: vec![path.to_path_buf()],
        cluster: false,
        now: None,
        namespace: "default".into(),
        clearances: vec![],
        api_server_cidrs: vec![],
    };
    load(&inputs, admission)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::MeshView;

    fn samples() -> PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/samples")).to_path_buf()
    }

    /// The samples' dummy credentials, apart from the mesh (no GitOps example syncs them).
    fn credentials() -> PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/sample-credentials")).to_path_buf()
    }

    #[test]
    fn loads_the_reference_mesh_without_a_problem() {
        let admission = Admission::new().expect("schemas");
        let mesh = load_path(&samples(), &admission).expect("samples readable");
        assert_eq!(mesh.diagnostics, vec![]);
        let s = &mesh.snapshot;
        assert_eq!((s.sources.len(), s.products.len(), s.policies.len()), (5, 6, 7));
        assert_eq!(s.clearance("sdis"), Classification::Internal);
        assert_eq!(mesh.declared_namespaces.len(), 6);
        // With the credentials among the inputs, their Secrets are known.
        let inputs = Inputs {
            paths: vec![samples(), credentials()],
            cluster: false,
            now: None,
            namespace: "default".into(),
            clearances: vec![],
            api_server_cidrs: vec![],
        };
        let mesh = load(&inputs, &admission).expect("samples and credentials readable");
        assert_eq!(mesh.diagnostics, vec![]);
        assert_eq!(mesh.snapshot.secret_exists("police", "incident-db-credentials"), Some(true));
        assert!(mesh.secret_namespaces.contains("police"));
    }

    #[test]
    fn reports_what_it_cannot_use_and_keeps_the_rest() {
        let admission = Admission::new().expect("schemas");
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: police, labels: {drmesh.io/clearance: secret}}\n---\n- 1\n---\n\
                    apiVersion: drmesh.io/v1alpha1\nkind: AccessPolicy\nmetadata: {name: g}\nspec: {dataProduct: feed, subjects: []}\n---\n\
                    apiVersion: drmesh.io/v2\nkind: DataSource\nmetadata: {name: s, namespace: police}\n---\nkey: [unclosed\n";
        let mesh = load_texts(&[(PathBuf::from("bad.yaml"), text.into())], "police", &[], &admission);
        let rules: Vec<(&str, Option<usize>)> =
            mesh.diagnostics.iter().map(|d| (d.rule.as_str(), d.document)).collect();
        assert_eq!(
            rules,
            [
                ("yaml", Some(1)),
                ("yaml", Some(4)),
                ("clearance-label", Some(0)),
                ("metadata", Some(2)),
                ("schema", Some(2)),
                ("schema", Some(3))
            ],
            "{:#?}",
            mesh.diagnostics
        );
        assert_eq!(mesh.snapshot.clearance("police"), Classification::Public);
        assert!(mesh.snapshot.policies.is_empty());
    }

    #[test]
    fn clearances_from_flags_yield_to_namespace_manifests() {
        let admission = Admission::new().expect("schemas");
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: cnc, labels: {drmesh.io/clearance: Internal}}\n";
        let flags =
            [("cnc".to_string(), Classification::Restricted), ("sante".to_string(), Classification::Restricted)];
        let mesh = load_texts(&[(PathBuf::from("ns.yaml"), text.into())], "default", &flags, &admission);
        assert_eq!(mesh.snapshot.clearance("cnc"), Classification::Internal);
        assert_eq!(mesh.snapshot.clearance("sante"), Classification::Restricted);
        assert_eq!(parse_clearance("x=Public"), Ok(("x".into(), Classification::Public)));
        assert!(parse_clearance("x").is_err() && parse_clearance("x=Secret").is_err());
    }
}
