//! Real GitOps, proven: Flux's own source-controller and kustomize-controller (built from
//! Go modules by `tests/e2e/cluster/build.sh flux`) deliver the rendered chart and the
//! reference mesh from a git repository served by Flux's git test server on 127.0.0.1,
//! following docs/gitops.md ("Flux, step by step") word for word, with the shipped
//! config/gitops/flux/drmesh.yaml. Flux's health checks (kstatus and the example's
//! `healthCheckExprs`) wait on drmesh's conditions; a bad commit is reported by Flux and
//! changes no access; the fix converges.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::domains::{DOMAINS, credentials_copy, samples_copy};
use super::release::{CONVERGE, ONE_OPERATOR, Operator, Release};
use super::{ok, repo};
use crate::harness::{self, ClusterScoped, TestNamespace};

/// The example's repository URL in docs/gitops.md, replaced by the git server's.
const EXAMPLE_URL: &str = "https://git.example.org/platform/drmesh.git";
const FLUX_NS: &str = "flux-system";
/// The release and its namespace, as config/gitops/flux/drmesh.yaml and the guide name them.
const RELEASE: &str = "drmesh";
const RELEASE_NS: &str = "drmesh-system";
/// Flux's controllers act as Flux's installation makes them: these ServiceAccounts.
const FLUX_IDENTITIES: [&str; 2] = ["source-controller", "kustomize-controller"];

/// Flux's part of the build (its controllers, git server and CRDs), built on first use.
fn flux_dir() -> PathBuf {
    let out = Command::new(repo().join("tests/e2e/cluster/build.sh")).arg("flux").output().expect("build.sh flux");
    PathBuf::from(ok("tests/e2e/cluster/build.sh flux", out).trim())
}

/// The indented code blocks of docs/gitops.md's section "Flux, step by step".
fn guide_blocks() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("docs/gitops.md")).expect("docs/gitops.md");
    let section = text.split("\n## Flux, step by step\n").nth(1).expect("the section");
    let section = section.split("\n### ").next().expect("section text");
    // A code block follows a blank line, indented 4 spaces (7 inside a numbered step),
    // and goes on while its lines keep that indentation (or more).
    let mut blocks: Vec<String> = Vec::new();
    let (mut indent, mut after_blank): (Option<usize>, bool) = (None, true);
    for line in section.lines() {
        let width = line.len() - line.trim_start().len();
        let blank = line.trim().is_empty();
        match indent {
            Some(i) if !blank && width >= i => {
                let last = blocks.last_mut().expect("a block");
                last.push('\n');
                last.push_str(&line[i..]);
            }
            _ => {
                indent = None;
                if after_blank && !blank && (width == 4 || width == 7) {
                    blocks.push(line[width..].to_string());
                    indent = Some(width);
                }
            }
        }
        after_blank = blank;
    }
    blocks
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A process of the test (a Flux controller, the git server): killed when dropped.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self { name, child, log }
    }

    /// Panics with its log if the process has exited.
    fn check(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!("{} exited ({status}):\n{}", self.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Flux's own objects: removed (finalizers dropped, since the controllers that would
/// release them are stopped) with the flux-system namespace, at the start (an aborted
/// run's) and when dropped — after the controllers, which are declared after this.
struct FluxObjects;

impl FluxObjects {
    fn remove() {
        for kind in ["kustomizations.kustomize.toolkit.fluxcd.io", "gitrepositories.source.toolkit.fluxcd.io"] {
            let out = harness::kubectl(&["get", kind, "-n", FLUX_NS, "-o", "name", "--ignore-not-found"]);
            for name in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
                let _ = harness::kubectl(&[
                    "patch",
                    name,
                    "-n",
                    FLUX_NS,
                    "--type",
                    "merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ]);
            }
        }
        let _ = harness::kubectl(&["delete", "namespace", FLUX_NS, "--wait=false", "--ignore-not-found"]);
    }
}

impl Drop for FluxObjects {
    fn drop(&mut self) {
        if std::env::var_os("DRMESH_E2E_KEEP").is_none() {
            Self::remove();
        }
    }
}

async fn wait_namespace_gone(name: &str) {
    harness::eventually(&format!("namespace {name} gone"), CONVERGE, || {
        let out = harness::kubectl(&["get", "namespace", name, "--ignore-not-found", "-o", "name"]);
        let gone = out.status.success() && out.stdout.is_empty();
        async move { gone.then_some(()) }
    })
    .await;
}

/// A kubeconfig acting as Flux's ServiceAccount `name` (impersonated by the admin).
fn flux_kubeconfig(name: &str, dir: &Path) -> PathBuf {
    let mut config: Value =
        drmesh::yaml::from_str(&std::fs::read_to_string(harness::kubeconfig_path()).expect("kubeconfig"))
            .expect("kubeconfig parses");
    let users = config["users"].as_array_mut().expect("users");
    let admin = users.iter_mut().find(|u| u["name"] == "admin").expect("admin user");
    admin["user"]["as"] = json!(format!("system:serviceaccount:{FLUX_NS}:{name}"));
    config["current-context"] = json!("admin");
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, drmesh::yaml::to_string(&config).expect("yaml")).expect("write kubeconfig");
    path
}

/// The environment of git, helm and the guide's commands: the admin's kubeconfig, the
/// local cluster's kubectl and helm first on the PATH, a fixed git identity.
fn guide_env(cmd: &mut Command) -> &mut Command {
    let bin = harness::kubectl_path().parent().expect("bin dir").to_path_buf();
    let home = std::env::temp_dir().join("drmesh-e2e-helm");
    cmd.env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
        .env("KUBECONFIG", harness::kubeconfig_path())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "drmesh e2e")
        .env("GIT_AUTHOR_EMAIL", "e2e@drmesh.invalid")
        .env("GIT_COMMITTER_NAME", "drmesh e2e")
        .env("GIT_COMMITTER_EMAIL", "e2e@drmesh.invalid")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = guide_env(Command::new("git").args(args).current_dir(dir)).output().expect("git");
    ok(&format!("git {args:?}"), out).trim().to_string()
}

/// A block of the guide, run by bash as written in the fork, with the git server's URL
/// in place of the example's.
fn run_block(block: &str, fork: &Path, url: &str) -> Output {
    let script = block.replace(EXAMPLE_URL, url);
    guide_env(Command::new("bash").args(["-euo", "pipefail", "-c", &script]).current_dir(fork)).output().expect("bash")
}

fn run_block_ok(what: &str, block: &str, fork: &Path, url: &str) -> String {
    let out = run_block(block, fork, url);
    assert!(out.status.success(), "the guide's step ({what}) fails:\n{block}\n{}", text(&out));
    text(&out)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn kustomization(name: &str) -> Value {
    harness::kubectl_json(&["get", "kustomizations.kustomize.toolkit.fluxcd.io", name, "-n", FLUX_NS, "-o", "json"])
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

/// Waits until Flux has attempted revision `sha` of Kustomization `name` and its Ready
/// condition is `ready` ("True", then also applied, or "False"); returns the Kustomization.
async fn wait_attempted(name: &str, sha: &str, ready: &str, flux: &mut [&mut Process]) -> Value {
    let what = format!("Kustomization {name} at revision {sha} with Ready={ready}");
    let mut last = Value::Null;
    let found = tokio::time::timeout(CONVERGE, async {
        loop {
            for p in flux.iter_mut() {
                p.check();
            }
            let k = kustomization(name);
            let attempted = k["status"]["lastAttemptedRevision"].as_str().is_some_and(|r| r.ends_with(sha));
            let current = k["status"]["observedGeneration"] == k["metadata"]["generation"];
            // Ready=True is for the applied revision: wait for Flux's status to say both.
            let applied =
                ready != "True" || k["status"]["lastAppliedRevision"].as_str().is_some_and(|r| r.ends_with(sha));
            if attempted && applied && current && condition(&k, "Ready").is_some_and(|c| c["status"] == ready) {
                return k;
            }
            last = k;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last seen: {:#}", last["status"]))
}

/// Who may do what in the domains: every RoleBinding, Role and NetworkPolicy of the
/// namespaces, keyed by kind/namespace/name, with what decides access.
fn access(namespaces: &[String]) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for ns in namespaces {
        let list = harness::kubectl_json(&["get", "rolebindings,roles,networkpolicies", "-n", ns, "-o", "json"]);
        for o in list["items"].as_array().into_iter().flatten() {
            let key = format!(
                "{}/{ns}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            );
            all.insert(
                key,
                json!({"subjects": o["subjects"], "roleRef": o["roleRef"], "rules": o["rules"], "spec": o["spec"]}),
            );
        }
    }
    all
}

/// The police domain's file of the fork, with one document edited by `edit`.
fn edit_document(file: &Path, kind: &str, name: &str, edit: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(file).expect("police.yaml");
    let header = format!("kind: {kind}\nmetadata:\n  name: {name}\n");
    let docs: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(docs.iter().filter(|d| d.contains(&header)).count(), 1, "one {kind} {name} in {}", file.display());
    let out: Vec<String> = docs.iter().map(|d| if d.contains(&header) { edit(d) } else { d.to_string() }).collect();
    std::fs::write(file, out.join("\n---\n")).expect("write police.yaml");
}

/// A commit of everything in the fork, pushed; returns its SHA.
fn commit_and_push(fork: &Path, message: &str) -> String {
    git(fork, &["commit", "-q", "-a", "-m", message]);
    git(fork, &["push", "-q", "origin", "main"]);
    git(fork, &["rev-parse", "HEAD"])
}

#[tokio::test]
async fn flux_delivers_drmesh_and_the_mesh_and_reports_bad_commits() {
    let _turn = ONE_OPERATOR.lock().await;
    let flux_bin = flux_dir();
    // The controllers' logs and the repositories; kept with DRMESH_E2E_KEEP.
    let tmp = tempfile::Builder::new().prefix("drmesh-flux-").tempdir().expect("temp dir");
    let dir = tmp.path().to_path_buf();
    let _tmp = if std::env::var_os("DRMESH_E2E_KEEP").is_some() {
        eprintln!("flux test: logs and repositories kept in {}", tmp.keep().display());
        None
    } else {
        Some(tmp)
    };

    // Leftovers of an aborted run (the example's names are fixed).
    FluxObjects::remove();
    let _ = harness::kubectl(&["delete", "namespace", RELEASE_NS, "--wait=false", "--ignore-not-found"]);
    wait_namespace_gone(FLUX_NS).await;
    wait_namespace_gone(RELEASE_NS).await;

    // The release: the chart's objects, fenced to this test's namespaces, deleted at the end.
    let id = harness::unique_name("flux");
    let namespace = TestNamespace { name: RELEASE_NS.to_string(), client: harness::admin().await };
    let mut release = Release::adopt(id.clone(), RELEASE, namespace);
    release.fence();
    let domains: Vec<String> = DOMAINS.iter().map(|d| format!("{d}-{id}")).collect();
    let _domains: Vec<ClusterScoped> =
        domains.iter().map(|n| ClusterScoped { kind: "namespace", name: n.clone() }).collect();

    // Flux's installation: its namespace, CRDs, and its controllers' ServiceAccounts
    // bound to cluster-admin (as `flux install` does).
    let _flux_objects = FluxObjects;
    ok("create flux-system", harness::kubectl(&["create", "namespace", FLUX_NS]));
    ok(
        "Flux's CRDs",
        harness::kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            flux_bin.join("crds").to_str().expect("utf-8"),
        ]),
    );
    ok(
        "Flux's CRDs Established",
        harness::kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/gitrepositories.source.toolkit.fluxcd.io",
            "crd/kustomizations.kustomize.toolkit.fluxcd.io",
            "--timeout=60s",
        ]),
    );
    let binding = format!("{id}-flux-reconciler");
    let _binding = ClusterScoped { kind: "clusterrolebinding", name: binding.clone() };
    let mut args = vec!["create", "clusterrolebinding", &binding, "--clusterrole=cluster-admin"];
    let sas: Vec<String> = FLUX_IDENTITIES.iter().map(|n| format!("--serviceaccount={FLUX_NS}:{n}")).collect();
    args.extend(sas.iter().map(String::as_str));
    ok("Flux's ClusterRoleBinding", harness::kubectl(&args));

    // Flux's controllers, as local processes against the local API server.
    let storage = free_port();
    let controller = |name: &'static str, extra: Vec<String>| {
        let mut cmd = Command::new(flux_bin.join(name));
        cmd.args([
            format!("--metrics-addr=127.0.0.1:{}", free_port()),
            format!("--health-addr=127.0.0.1:{}", free_port()),
            "--enable-leader-election=false".to_string(),
            "--log-level=info".to_string(),
        ])
        .args(extra)
        .env("KUBECONFIG", flux_kubeconfig(name, dir.as_path()))
        .env("RUNTIME_NAMESPACE", FLUX_NS);
        Process::spawn(name, &mut cmd, dir.as_path())
    };
    std::fs::create_dir(dir.as_path().join("artifacts")).expect("artifacts dir");
    let mut source = controller(
        "source-controller",
        vec![
            format!("--storage-path={}", dir.as_path().join("artifacts").display()),
            format!("--storage-addr=127.0.0.1:{storage}"),
            format!("--storage-adv-addr=127.0.0.1:{storage}"),
        ],
    );
    // Dependencies are checked every 5 s (Flux's default is 30 s): each commit waits for
    // the Kustomization drmesh to apply it before the mesh does.
    let mut kustomize = controller("kustomize-controller", vec!["--requeue-dependency=5s".to_string()]);

    // The git server (Flux's gittestserver) and the fork: the chart, config/platform,
    // config/gitops and the reference mesh (domains renamed and fenced for this run).
    let (gitserver, url) = {
        let log = dir.as_path().join("gitserver.log");
        let mut child = Command::new(flux_bin.join("gitserver"))
            .arg("-root")
            .arg(dir.as_path().join("git"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start gitserver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("gitserver's URL");
        let process = Process { name: "gitserver", child, log };
        assert!(line.starts_with("http://127.0.0.1:"), "gitserver: {line:?}");
        (process, format!("{}/platform/drmesh.git", line.trim()))
    };
    let fork = dir.as_path().join("fork");
    copy_dir(&repo().join("charts/drmesh"), &fork.join("charts/drmesh"));
    copy_dir(&repo().join("config/platform"), &fork.join("config/platform"));
    copy_dir(&repo().join("config/gitops"), &fork.join("config/gitops"));
    std::fs::create_dir_all(fork.join("config/samples")).expect("samples dir");
    samples_copy(&id, &fork.join("config/samples"));
    // The samples' dummy credentials: in the fork's Git, as in the repository, but applied
    // by the guide's step 1 (a secret manager's job), never by Flux.
    std::fs::create_dir_all(fork.join("config/sample-credentials")).expect("credentials dir");
    credentials_copy(&id, &fork.join("config/sample-credentials"));
    std::fs::create_dir_all(fork.join("deploy")).expect("deploy dir");
    std::fs::write(fork.join("deploy/values.yaml"), &release.values).expect("values");
    git(&fork, &["init", "-q", "-b", "main"]);
    git(&fork, &["remote", "add", "origin", &url]);
    git(&fork, &["add", "charts", "config/platform", "config/gitops", "config/sample-credentials"]);
    git(&fork, &["commit", "-q", "-m", "drmesh"]);
    git(&fork, &["push", "-q", "-u", "origin", "main"]);

    let blocks = guide_blocks();
    assert_eq!(blocks.len(), 5, "the guide's five commands: {blocks:#?}");
    let [domains_step, render, hand_over, wait, fetch] = <[String; 5]>::try_from(blocks).expect("five blocks");
    assert!(domains_step.contains("--as-group drmesh:clearance-admins"), "{domains_step}");
    assert!(domains_step.contains("kubectl apply -f config/sample-credentials/"), "{domains_step}");
    assert!(render.contains("helm template") && render.contains("git push"), "{render}");
    assert!(hand_over.contains("config/gitops/flux/drmesh.yaml") && hand_over.contains(EXAMPLE_URL), "{hand_over}");
    assert!(wait.contains("kustomization/mesh"), "{wait}");
    assert!(fetch.contains("reconcile.fluxcd.io/requestedAt"), "{fetch}");

    // 1. The domains, as a clearance admin (the guide's commands, as written).
    harness::kubectl(&["delete", "clusterrolebinding", "drmesh:clearance-admins", "--ignore-not-found"]);
    harness::kubectl(&["delete", "clusterrole", "drmesh:clearance-admin", "--ignore-not-found"]);
    let _rbac = [
        ClusterScoped { kind: "clusterrole", name: "drmesh:clearance-admin".into() },
        ClusterScoped { kind: "clusterrolebinding", name: "drmesh:clearance-admins".into() },
    ];
    run_block_ok("the domains", &domains_step, &fork, &url);
    // 2. The rendered chart and the mesh, pushed.
    run_block_ok("render and push", &render, &fork, &url);
    let good = git(&fork, &["rev-parse", "HEAD"]);
    let rendered = std::fs::read_to_string(fork.join("deploy/drmesh/drmesh.yaml")).expect("rendered chart");
    assert!(
        rendered.contains("kind: CustomResourceDefinition") && rendered.contains("kind: ValidatingAdmissionPolicy")
    );
    // 3. The shipped Flux objects, applied.
    run_block_ok("hand the repository to Flux", &hand_over, &fork, &url);

    // The chart's operator Deployment runs on kwok nodes, whose pods run nothing: once
    // Flux has delivered the chart (its RBAC with it), drmesh runs as the chart's
    // ServiceAccount in its place.
    let k = wait_attempted("drmesh", &good, "True", &mut [&mut source, &mut kustomize]).await;
    assert_eq!(k["status"]["lastAppliedRevision"], format!("main@sha1:{good}"));
    let deployment = harness::kubectl_json(&["get", "deployment", RELEASE, "-n", RELEASE_NS, "-o", "json"]);
    assert_eq!(
        deployment["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"], "drmesh",
        "Flux applied the chart"
    );
    let crd = harness::kubectl_json(&["get", "crd", "accesspolicies.drmesh.io", "-o", "json"]);
    assert_eq!(crd["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/prune"], "disabled", "{}", crd["metadata"]);
    // The operator keeps its audit head in the release namespace (as the chart's does):
    // inside the test's fence, which Flux's namespace is not created with.
    let label = format!("{}={id}", super::FENCE_LABEL);
    ok("label the release namespace", harness::kubectl(&["label", "namespace", RELEASE_NS, &label, "--overwrite"]));
    let mut operator =
        Operator::start(&release.kubeconfig(dir.as_path()), RELEASE_NS, &format!("{id}-op"), dir.as_path());
    operator.wait_leading().await;

    // 4. Wait as the guide says; then the mesh is Ready, and Flux said so no earlier
    // than the last of its objects.
    run_block_ok("wait for Ready", &wait, &fork, &url);
    let mesh = wait_attempted("mesh", &good, "True", &mut [&mut source, &mut kustomize]).await;
    assert_eq!(mesh["status"]["lastAppliedRevision"], format!("main@sha1:{good}"));
    let objects = harness::wait_all_ready(&domains, Duration::from_secs(5)).await;
    assert_eq!(objects, 18, "5 sources, 6 products and 7 grants Ready");
    // People's Clearances and the MeshPolicy were the security officer's, not Flux's; the
    // credentials the guide's step 1, not Flux's either.
    for name in ["meshpolicy/default", "clearance/cnc-officers"] {
        let o = harness::kubectl_json(&["get", name, "-o", "json"]);
        assert!(o["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"].is_null(), "Flux applied {name}: {o}");
    }
    let mut secrets = 0;
    for ns in &domains {
        let list =
            harness::kubectl_json(&["get", "secrets", "-n", ns, "-l", "drmesh.io/credentials=true", "-o", "json"]);
        for o in list["items"].as_array().into_iter().flatten() {
            secrets += 1;
            assert!(
                o["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"].is_null(),
                "Flux applied the Secret {}",
                o["metadata"]["name"]
            );
        }
    }
    assert_eq!(secrets, 5, "the five sources' credentials, applied by the guide's step 1");
    let flux_ready =
        condition(&mesh, "Ready").expect("Ready")["lastTransitionTime"].as_str().expect("time").to_string();
    for ns in &domains {
        let list = harness::kubectl_json(&["get", "datasources,dataproducts,accesspolicies", "-n", ns, "-o", "json"]);
        for o in list["items"].as_array().into_iter().flatten() {
            let ready = condition(o, "Ready").expect("Ready")["lastTransitionTime"].as_str().expect("time").to_string();
            // RFC 3339 in UTC with seconds: ordered as strings.
            assert!(
                ready <= flux_ready,
                "Flux called the mesh Ready at {flux_ready}, before {} ({ready})",
                o["metadata"]["name"]
            );
            assert_eq!(o["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"], "mesh", "Flux applied it");
        }
    }
    let before = access(&domains);
    assert!(before.keys().filter(|k| k.starts_with("RoleBinding/")).count() >= 7, "the mesh's access: {before:#?}");
    let analysts = |a: &BTreeMap<String, Value>| {
        a.iter().any(|(k, v)| k.starts_with("RoleBinding/") && v["subjects"].to_string().contains("incident-analytics"))
    };
    assert!(!analysts(&before));

    // A bad commit: incident-feed declassified, and a Restricted grant without expiry.
    let police = fork.join("config/samples/police.yaml");
    edit_document(&police, "DataProduct", "incident-feed", |d| {
        assert!(d.contains("\n  classification: Restricted\n"));
        d.replace("\n  classification: Restricted\n", "\n  classification: Internal\n")
    });
    let police_ns = format!("police-{id}");
    // (To a workload of the Restricted cnc domain: a grant to people would also need
    // their Clearance and two approvals.)
    let grant = format!(
        "\n---\n# The command centre's analytics read the incident feed.\napiVersion: drmesh.io/v1alpha1\nkind: AccessPolicy\nmetadata:\n  name: incident-feed-analysts\n  namespace: {police_ns}\nspec:\n  dataProduct: incident-feed\n  subjects:\n    - kind: ServiceAccount\n      namespace: cnc-{id}\n      name: incident-analytics\n  purpose: Weekly analysis of incident trends around Olympic sites.\n"
    );
    let domain = std::fs::read_to_string(&police).expect("police.yaml");
    std::fs::write(&police, domain + &grant).expect("write police.yaml");
    let bad = commit_and_push(&fork, "police: incident-feed is Internal now; analysts read it");
    run_block_ok("fetch at once", &fetch, &fork, &url);
    let mesh = wait_attempted("mesh", &bad, "False", &mut [&mut source, &mut kustomize]).await;
    let ready = condition(&mesh, "Ready").expect("Ready");
    let message = ready["message"].as_str().unwrap_or_default();
    assert_eq!(ready["reason"], "ReconciliationFailed", "{ready}");
    assert!(
        message
            .contains("spec.classification cannot be lowered (declassification is not an edit: create a new object)")
            && message.contains("incident-feed"),
        "Flux reports the API server's refusal: {ready}"
    );
    assert_eq!(mesh["status"]["lastAppliedRevision"], format!("main@sha1:{good}"), "the last good revision stays");
    let product = harness::kubectl_json(&["get", "dataproduct", "incident-feed", "-n", &police_ns, "-o", "json"]);
    assert_eq!(product["spec"]["classification"], "Restricted");
    let out = harness::kubectl(&[
        "get",
        "accesspolicy",
        "incident-feed-analysts",
        "-n",
        &police_ns,
        "--ignore-not-found",
        "-o",
        "name",
    ]);
    assert!(out.status.success() && out.stdout.is_empty(), "nothing of the refused commit is applied: {}", text(&out));
    assert_eq!(access(&domains), before, "the refused commit changed access");

    // The classification back: the grant without expiry is applied, and stalls.
    edit_document(&police, "DataProduct", "incident-feed", |d| {
        d.replace("\n  classification: Internal\n", "\n  classification: Restricted\n")
    });
    let stalled = commit_and_push(&fork, "police: incident-feed stays Restricted");
    run_block_ok("fetch at once", &fetch, &fork, &url);
    let mesh = wait_attempted("mesh", &stalled, "False", &mut [&mut source, &mut kustomize]).await;
    let ready = condition(&mesh, "Ready").expect("Ready");
    assert_eq!(ready["reason"], "HealthCheckFailed", "{ready}");
    assert!(
        ready["message"].as_str().unwrap_or_default().contains("incident-feed-analysts"),
        "Flux names the grant: {ready}"
    );
    let ap = harness::kubectl_json(&["get", "accesspolicy", "incident-feed-analysts", "-n", &police_ns, "-o", "json"]);
    let stall = condition(&ap, "Stalled").expect("Stalled");
    assert_eq!((&stall["status"], &stall["reason"]), (&json!("True"), &json!("MissingExpiry")), "{ap:#}");
    assert!(stall["message"].as_str().unwrap_or_default().contains("spec.expiresAt is required"), "{ap:#}");
    assert_eq!(access(&domains), before, "the stalled grant changed access");

    // The fix: an expiry. Flux converges, and the grant's access appears.
    edit_document(&police, "AccessPolicy", "incident-feed-analysts", |d| {
        format!("{}\n  expiresAt: \"2027-12-31T23:59:59Z\"", d.trim_end())
    });
    let fixed = commit_and_push(&fork, "police: the analysts' grant expires");
    run_block_ok("fetch at once", &fetch, &fork, &url);
    let mesh = wait_attempted("mesh", &fixed, "True", &mut [&mut source, &mut kustomize]).await;
    assert_eq!(mesh["status"]["lastAppliedRevision"], format!("main@sha1:{fixed}"));
    let objects = harness::wait_all_ready(&domains, Duration::from_secs(5)).await;
    assert_eq!(objects, 19, "the mesh and the fixed grant Ready");
    assert!(analysts(&access(&domains)), "the fixed grant's RoleBinding for incident-analytics exists");

    // A domain's clearance changed in Git: the chart's policy refuses it to Flux.
    let transport = fork.join("config/samples/transport.yaml");
    let before = access(&domains);
    let original = std::fs::read_to_string(&transport).expect("transport.yaml");
    assert!(original.contains("\n    drmesh.io/clearance: Internal\n"), "{original}");
    let lowered = original.replace("\n    drmesh.io/clearance: Internal\n", "\n    drmesh.io/clearance: Public\n");
    std::fs::write(&transport, lowered).expect("write transport.yaml");
    let relabel = commit_and_push(&fork, "transport: Public");
    run_block_ok("fetch at once", &fetch, &fork, &url);
    let mesh = wait_attempted("mesh", &relabel, "False", &mut [&mut source, &mut kustomize]).await;
    let ready = condition(&mesh, "Ready").expect("Ready");
    assert!(
        ready["message"].as_str().unwrap_or_default().contains("may not change the drmesh.io/clearance label"),
        "Flux reports the chart's policy: {ready}"
    );
    let ns = harness::kubectl_json(&["get", "namespace", &format!("transport-{id}"), "-o", "json"]);
    assert_eq!(ns["metadata"]["labels"]["drmesh.io/clearance"], "Internal");
    assert_eq!(access(&domains), before, "the refused relabelling changed access");
    std::fs::write(&transport, original).expect("write transport.yaml");
    let reverted = commit_and_push(&fork, "transport: Internal again");
    run_block_ok("fetch at once", &fetch, &fork, &url);
    wait_attempted("mesh", &reverted, "True", &mut [&mut source, &mut kustomize]).await;

    // The domains go while drmesh still runs: it releases the isolation of the deleted
    // products (a product's isolation outlives its pods), so no namespace is left behind.
    drop(kustomize);
    drop(source);
    for ns in &domains {
        harness::kubectl(&["delete", "namespace", ns, "--wait=false", "--ignore-not-found"]);
    }
    for ns in &domains {
        wait_namespace_gone(ns).await;
    }
    drop(operator);
    drop(gitserver);
}
