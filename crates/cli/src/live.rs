//! `--cluster`: the live mesh as manifests, read with the current kubeconfig, so that
//! every offline command can look at a cluster through the same pure core.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, VersionMatch};
use kube::discovery::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::CliError;

fn cluster_error(what: &str, error: impl std::fmt::Display) -> CliError {
    CliError::Cluster(format!("{what}: {error}"))
}

/// Lists the Namespaces (for clearances), Secret names, and drmesh objects of the
/// cluster as one `kind: List` text named `<cluster>`.
pub fn texts() -> Result<Vec<(PathBuf, String)>, CliError> {
    texts_at(None)
}

/// Like [`texts`], every list read at the same resourceVersion: one consistent state of
/// the cluster (etcd revisions span all kinds). With `None`, the first list's version
/// is used; a caller that listed something else first passes that list's version, to
/// judge it against the mesh as it was at that moment.
pub fn texts_at(resource_version: Option<String>) -> Result<Vec<(PathBuf, String)>, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| cluster_error("cannot start the async runtime", e))?;
    let items = runtime.block_on(fetch(resource_version))?;
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    Ok(vec![(PathBuf::from("<cluster>"), list.to_string())])
}

/// Keeps what a manifest says: no status, no server-set metadata.
fn as_manifest(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        // creationTimestamp stays: a grant's maximum length counts from it.
        for key in ["managedFields", "resourceVersion", "uid", "generation", "selfLink"] {
            meta.remove(key);
        }
    }
    value
}

/// List parameters reading at `version` exactly (or the latest state, then pinned).
fn at(version: &Option<String>) -> ListParams {
    match version {
        Some(v) => ListParams::default().at(v).matching(VersionMatch::Exact),
        None => ListParams::default(),
    }
}

async fn fetch(mut version: Option<String>) -> Result<Vec<Value>, CliError> {
    let client: Client =
        super::kubeconfig::client().await.map_err(|e| cluster_error("cannot load the kubeconfig", e))?;
    let mut items = Vec::new();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let list = namespaces.list(&at(&version)).await.map_err(|e| cluster_error("cannot list namespaces", e))?;
    if version.is_none() {
        version = list.metadata.resource_version.clone();
    }
    for ns in list.items {
        items.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns.name_any(), "labels": ns.metadata.labels.clone().unwrap_or_default()}}));
    }
    for kind in ["DataSource", "DataProduct", "AccessPolicy", "Clearance", "MeshPolicy"] {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(crate::api::GROUP, crate::api::VERSION, kind));
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let list = match api.list(&at(&version)).await {
            Ok(list) => list,
            // The security officers' kinds: a reviewer who may not read them gets the mesh
            // without (people then count as uncleared, as `validate` warns).
            Err(kube::Error::Api(e)) if e.code == 403 && matches!(kind, "Clearance" | "MeshPolicy") => {
                eprintln!("drmesh: cannot list {kind}s ({}): people are taken as uncleared", e.message);
                continue;
            }
            Err(e) => return Err(cluster_error(&format!("cannot list {kind}s"), e)),
        };
        for object in list.items {
            let mut value = serde_json::to_value(&object).map_err(|e| cluster_error("cannot encode", e))?;
            value["apiVersion"] = json!(crate::api::API_VERSION);
            value["kind"] = json!(kind);
            items.push(as_manifest(value));
        }
    }
    let sources: Vec<(String, String)> = items
        .iter()
        .filter(|i| i["kind"] == "DataSource")
        .filter_map(|i| {
            let namespace = i["metadata"]["namespace"].as_str()?;
            Some((namespace.to_string(), i["spec"]["credentialsSecretRef"]["name"].as_str()?.to_string()))
        })
        .collect();
    items.extend(secrets(&client, &version, &sources).await?);
    Ok(items)
}

/// A Secret as the snapshot needs it: name and labels (`drmesh.io/credentials`), never
/// its content.
fn secret_item(meta: &kube::core::ObjectMeta) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": meta.name, "namespace": meta.namespace, "labels": meta.labels.clone().unwrap_or_default()}})
}

/// The Secrets' metadata: listed cluster-wide where the reader may (then a Secret a
/// DataSource names but that is missing is reported), else read one by one, only those
/// the DataSources name (`get` on them is enough; a missing one is then not reported).
/// A Secret the reader may not get is left unknown, with a warning: taken as released,
/// so a review shows the access its source would lend rather than hide it.
async fn secrets(
    client: &Client,
    version: &Option<String>,
    sources: &[(String, String)],
) -> Result<Vec<Value>, CliError> {
    let all: Api<Secret> = Api::all(client.clone());
    match all.list_metadata(&at(version)).await {
        Ok(list) => return Ok(list.items.iter().map(|s| secret_item(&s.metadata)).collect()),
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        Err(e) => return Err(cluster_error("cannot list secrets", e)),
    }
    let mut out = Vec::new();
    let unique: std::collections::BTreeSet<&(String, String)> = sources.iter().collect();
    for (namespace, name) in unique {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        match api.get_metadata_opt(name).await {
            Ok(found) => out.extend(found.map(|s| secret_item(&s.metadata))),
            Err(kube::Error::Api(status)) if status.code == 403 => {
                eprintln!(
                    "drmesh: warning: may not get Secret {namespace}/{name} (named by a DataSource): taken as released"
                );
            }
            Err(e) => return Err(cluster_error(&format!("cannot get Secret {namespace}/{name}"), e)),
        }
    }
    Ok(out)
}
