//! The shipped GitOps examples (config/gitops), checked offline: what each GitOps tool
//! needs to order drmesh before its mesh is there, and no credentials in what they sync. The Flux example is also run, with
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

/// The files of the repository under `dir` (recursively), in name order.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `name` matches the glob `pattern` (`*` any run of characters, `?` one, `{a,b}` either:
/// what Argo CD's `directory.include`/`exclude` take).
fn glob(pattern: &str, name: &str) -> bool {
    if let Some(start) = pattern.find('{') {
        let end = pattern[start..].find('}').map(|e| start + e).expect("a closing brace");
        return pattern[start + 1..end]
            .split(',')
            .any(|alt| glob(&format!("{}{alt}{}", &pattern[..start], &pattern[end + 1..]), name));
    }
    fn matches(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => matches(&p[1..], n) || (!n.is_empty() && matches(p, &n[1..])),
            (Some('?'), Some(_)) => matches(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    matches(&p, &n)
}

fn manifest(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
}

/// A chart (a directory with Chart.yaml): what it installs is its CRDs and its templates.
fn chart_files(dir: &Path) -> Vec<PathBuf> {
    ["crds", "templates"].iter().map(|d| dir.join(d)).filter(|d| d.is_dir()).flat_map(|d| files_under(&d)).collect()
}

/// Every file of this repository that a shipped GitOps example (config/gitops) applies:
/// the paths of Argo CD's Applications (with their `directory` include, exclude and
/// recurse) and of Flux's Kustomizations (Flux applies every manifest under the path,
/// subdirectories included, when the path holds no kustomization.yaml). Flux's
/// `./deploy/drmesh` is the chart rendered by `helm template` (docs/gitops.md, step 2):
/// charts/drmesh stands for it.
fn synced_files() -> BTreeSet<PathBuf> {
    let mut synced = BTreeSet::new();
    let examples: Vec<PathBuf> = files_under(&repo().join("config/gitops"))
        .into_iter()
        .filter(|p| manifest(p) && !p.starts_with(repo().join("config/gitops/testdata")))
        .collect();
    let (mut applications, mut kustomizations) = (0, 0);
    for file in examples {
        for doc in documents(&file) {
            if doc["kind"] == "Application" && doc["apiVersion"].as_str().is_some_and(|v| v.starts_with("argoproj.io/"))
            {
                applications += 1;
                let spec = &doc["spec"];
                let sources: Vec<&Value> = match spec["sources"].as_array() {
                    Some(list) => list.iter().collect(),
                    None => vec![&spec["source"]],
                };
                for source in sources {
                    let path = source["path"].as_str().expect("an Application's source path");
                    let dir = repo().join(path);
                    if dir.join("Chart.yaml").is_file() {
                        synced.extend(chart_files(&dir));
                        continue;
                    }
                    let directory = &source["directory"];
                    let recurse = directory["recurse"].as_bool().unwrap_or(false);
                    let include = directory["include"].as_str().unwrap_or("*");
                    let exclude = directory["exclude"].as_str().unwrap_or("");
                    for f in files_under(&dir).into_iter().filter(|f| manifest(f)) {
                        let relative = f.strip_prefix(&dir).expect("under the path").to_string_lossy().into_owned();
                        if !recurse && relative.contains('/') {
                            continue;
                        }
                        let name = f.file_name().expect("a file name").to_string_lossy().into_owned();
                        let matched = |pattern: &str| glob(pattern, &name) || glob(pattern, &relative);
                        if matched(include) && (exclude.is_empty() || !matched(exclude)) {
                            synced.insert(f);
                        }
                    }
                }
            }
            if doc["kind"] == "Kustomization" && doc["apiVersion"].as_str().is_some_and(|v| v.contains("fluxcd.io")) {
                kustomizations += 1;
                let path = doc["spec"]["path"].as_str().expect("a Kustomization's path").trim_start_matches("./");
                if path == "deploy/drmesh" {
                    synced.extend(chart_files(&repo().join("charts/drmesh")));
                    continue;
                }
                let dir = repo().join(path);
                assert!(
                    !dir.join("kustomization.yaml").exists(),
                    "{path} has a kustomization.yaml: this test assumes Flux generates one"
                );
                synced.extend(files_under(&dir).into_iter().filter(|f| manifest(f)));
            }
        }
    }
    assert!(applications >= 2 && kustomizations >= 2, "the examples were read: {applications} {kustomizations}");
    synced
}

/// The Secrets of a file that carry values (`data` or `stringData`); a chart's template
/// that renders any Secret at all.
fn secrets_with_values(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    if file.components().any(|c| c.as_os_str() == "templates") {
        // Go templates are not YAML: any Secret kind is one too many.
        return text.lines().filter(|l| l.trim() == "kind: Secret").map(|_| "a templated Secret".to_string()).collect();
    }
    secrets_in(&text)
}

fn secrets_in(text: &str) -> Vec<String> {
    drmesh::yaml::documents(text)
        .filter_map(Result::ok)
        .filter(|d: &Value| d["kind"] == "Secret")
        .filter(|d| {
            ["data", "stringData"].iter().any(|k| d[*k].as_object().is_some_and(|m| !m.is_empty()) || d[*k].is_string())
        })
        .map(|d| {
            let (ns, name) = (d["metadata"]["namespace"].as_str(), d["metadata"]["name"].as_str());
            format!("Secret {}/{}", ns.unwrap_or_default(), name.unwrap_or_default())
        })
        .collect()
}

/// The GitOps examples deliver no credentials in plain text: no file that Argo CD or
/// Flux syncs holds a Secret with values (the samples' dummy credentials are apart, in
/// config/sample-credentials, which nothing syncs: a secret manager's job in real life).
#[test]
fn no_path_a_gitops_example_syncs_holds_a_secret_with_values() {
    // The detector itself: a Secret with stringData or data is caught, one without is not.
    let planted = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\nstringData: {password: x}\n---\n\
                   apiVersion: v1\nkind: Secret\nmetadata: {name: t, namespace: ns}\ndata: {password: eA==}\n---\n\
                   apiVersion: v1\nkind: Secret\nmetadata: {name: empty, namespace: ns}\n";
    assert_eq!(secrets_in(planted), ["Secret ns/s", "Secret ns/t"]);
    assert!(glob("police.yaml", "police.yaml") && glob("{police,cnc}.yaml", "cnc.yaml") && !glob("*.yml", "a.yaml"));

    let synced = synced_files();
    let samples = repo().join("config/samples");
    assert!(synced.iter().any(|f| f.starts_with(&samples)), "the mesh examples sync config/samples: {synced:?}");
    assert!(synced.contains(&repo().join("config/samples/police.yaml")), "Argo CD's domain is synced");
    let mut found = Vec::new();
    for file in &synced {
        for secret in secrets_with_values(file) {
            found.push(format!("{}: {secret}", file.strip_prefix(repo()).expect("in the repository").display()));
        }
    }
    assert!(
        found.is_empty(),
        "the GitOps examples sync Secrets with values (credentials in Git):\n{}",
        found.join("\n")
    );

    // The samples' credentials exist, apart, and no example syncs them.
    let credentials = repo().join("config/sample-credentials");
    let files: Vec<PathBuf> = files_under(&credentials).into_iter().filter(|f| manifest(f)).collect();
    assert!(!files.is_empty(), "config/sample-credentials holds the samples' dummy Secrets");
    for f in &files {
        assert!(!synced.contains(f), "{} is synced by a GitOps example", f.display());
        assert!(!secrets_with_values(f).is_empty(), "{} holds a Secret", f.display());
    }
}
