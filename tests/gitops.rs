//! The shipped GitOps examples (config/gitops), checked offline: what each GitOps tool
//! needs to order drmesh before its mesh is there. The Flux example is also run, with
//! Flux's own controllers, by tests/e2e/packaging/flux.rs; Argo CD's is checked only here
//! (no Argo CD on the project's machines).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    drmesh::yaml::documents(&text)
        .map(|d| d.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|d: &Value| !d.is_null())
        .collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the example"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

fn wave(app: &Value) -> i64 {
    let w = app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
        .as_str()
        .unwrap_or_else(|| panic!("Application {} has no sync wave", app["metadata"]["name"]));
    w.parse().unwrap_or_else(|e| panic!("sync wave {w:?}: {e}"))
}

#[test]
fn the_argo_cd_example_syncs_the_mesh_after_drmesh_and_its_crds() {
    let docs = documents(&repo().join("config/gitops/argocd/application.yaml"));
    let apps: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Application").collect();
    assert_eq!(apps.len(), 2, "the chart and a domain's mesh");
    let drmesh = named(&docs, "Application", "drmesh");
    assert_eq!(drmesh["spec"]["source"]["path"], "charts/drmesh");
    let meshes: Vec<&&Value> = apps.iter().filter(|a| a["spec"]["source"]["path"] == "config/samples").collect();
    assert_eq!(meshes.len(), 1, "one Application delivers a domain of config/samples");
    let mesh = meshes[0];
    // The waves order the two Applications (app of apps): drmesh first.
    assert!(wave(drmesh) < wave(mesh), "drmesh's sync wave must come before the mesh's");
    let options = strings(&mesh["spec"]["syncPolicy"]["syncOptions"]);
    for option in ["SkipDryRunOnMissingResource=true", "ServerSideApply=true"] {
        assert!(options.contains(&option), "the mesh Application lacks {option}: {options:?}");
    }
    // Skipping the dry-run is only safe with retries: the sync that found no CRD retries.
    let retry = &mesh["spec"]["syncPolicy"]["retry"];
    assert!(
        retry["limit"].as_i64().is_some_and(|l| !(0..5).contains(&l)),
        "the mesh retries its sync (unlimited or at least 5 times): {retry}"
    );
    let options = strings(&drmesh["spec"]["syncPolicy"]["syncOptions"]);
    for option in ["CreateNamespace=true", "ServerSideApply=true"] {
        assert!(options.contains(&option), "the drmesh Application lacks {option}: {options:?}");
    }
    // The waves wait for the previous wave's health only with a health check of
    // Applications, which Argo CD no longer has built in: argocd-cm.yaml adds it.
    let cm = documents(&repo().join("config/gitops/argocd/argocd-cm.yaml"));
    let app_health = cm[0]["data"]["resource.customizations.health.argoproj.io_Application"].as_str();
    assert!(app_health.is_some_and(|lua| lua.contains("obj.status.health.status")), "argocd-cm.yaml: {}", cm[0]);
    // The included file exists and is a domain of the reference mesh.
    let include = mesh["spec"]["source"]["directory"]["include"].as_str().expect("directory.include");
    let domain = documents(&repo().join("config/samples").join(include));
    let namespace = named(&domain, "Namespace", mesh["spec"]["destination"]["namespace"].as_str().expect("namespace"));
    assert!(namespace["metadata"]["labels"]["drmesh.io/clearance"].is_string());
}

#[test]
fn the_flux_example_orders_kustomizations_on_kustomizations_in_existing_namespaces() {
    let docs = documents(&repo().join("config/gitops/flux/drmesh.yaml"));
    let namespaces: BTreeSet<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Namespace")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .chain(["flux-system"]) // Flux's own, made by its installation
        .collect();
    let kustomizations: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Kustomization").collect();
    assert!(kustomizations.len() >= 2, "drmesh, then the mesh");
    for d in docs.iter().filter(|d| d["kind"] != "Namespace") {
        let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
        assert!(
            namespaces.contains(ns),
            "{} {} is in namespace {ns:?}, which nothing creates",
            d["kind"],
            d["metadata"]["name"]
        );
    }
    let repositories: BTreeSet<&str> =
        docs.iter().filter(|d| d["kind"] == "GitRepository").filter_map(|d| d["metadata"]["name"].as_str()).collect();
    for k in &kustomizations {
        let name = &k["metadata"]["name"];
        let source = &k["spec"]["sourceRef"];
        assert_eq!(source["kind"], "GitRepository", "{name}");
        assert!(repositories.contains(source["name"].as_str().unwrap_or_default()), "{name}: unknown source {source}");
        let path = k["spec"]["path"].as_str().expect("path");
        assert!(path.starts_with("./"), "{name}: path {path}");
        assert_eq!(k["spec"]["wait"], true, "{name}: Flux waits on kstatus health");
        // A Kustomization's dependsOn names Kustomizations (never a HelmRelease).
        for dep in k["spec"]["dependsOn"].as_array().into_iter().flatten() {
            let dep_ns = dep["namespace"].as_str().or(k["metadata"]["namespace"].as_str());
            assert!(
                kustomizations
                    .iter()
                    .any(|o| o["metadata"]["name"] == dep["name"] && o["metadata"]["namespace"].as_str() == dep_ns),
                "{name} depends on {dep}, which is no Kustomization of the example"
            );
        }
    }
    assert!(docs.iter().all(|d| d["kind"] != "HelmRelease"), "no helm-controller in the tested example");
    let mesh = named(&docs, "Kustomization", "mesh");
    assert_eq!(mesh["spec"]["dependsOn"][0]["name"], "drmesh");
    assert_eq!(mesh["spec"]["path"], "./config/samples");
    assert!(repo().join("config/samples").is_dir());
    let kinds: BTreeSet<&str> =
        mesh["spec"]["healthCheckExprs"].as_array().into_iter().flatten().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["AccessPolicy", "DataProduct", "DataSource"]));
    // Security officers' objects never go through Flux (the chart's policy refuses it).
    let dropped: BTreeSet<&str> = mesh["spec"]["patches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["patch"].as_str().is_some_and(|t| t.contains("$patch: delete")))
        .filter_map(|p| p["target"]["kind"].as_str())
        .collect();
    assert_eq!(dropped, BTreeSet::from(["Clearance", "MeshPolicy"]), "the mesh leaves out people's clearances");
}
