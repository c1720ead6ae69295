//! From `helm install` to a running mesh, as docs/install.md tells a platform
//! administrator: the guide's commands, run as written, against the chart's admission
//! policies.

use std::path::Path;
use std::process::{Command, Output};

use super::release::{CONVERGE, ONE_OPERATOR, Operator, Release};
use super::{FENCE_LABEL, kubectl_stdin, repo};
use crate::harness::{self, ClusterScoped};

pub const DOMAINS: [&str; 6] = ["cnc", "gendarmerie", "police", "sante", "sdis", "transport"];

/// The indented code blocks of the guide's section "From helm install to a running mesh".
fn guide_blocks() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("docs/install.md")).expect("install guide");
    let section = text.split("\n## From helm install to a running mesh\n").nth(1).expect("the section");
    let section = section.split("\n## ").next().expect("section text");
    let mut blocks: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        match line.strip_prefix("    ") {
            Some(code) if in_block => {
                let last = blocks.last_mut().expect("a block");
                last.push('\n');
                last.push_str(code);
            }
            Some(code) => {
                blocks.push(code.to_string());
                in_block = true;
            }
            None => in_block = false,
        }
    }
    blocks
}

/// config/samples with each domain renamed `DOMAIN-ID` and inside this test's fence (the
/// chart's policies bind to the fence label), so that it meets no other test's mesh.
pub fn samples_copy(id: &str, dir: &Path) {
    renamed_copy("config/samples", id, dir);
}

/// config/sample-credentials (the samples' dummy Secrets, apart from the mesh: no GitOps
/// example syncs them), with the domains renamed as `samples_copy` does.
pub fn credentials_copy(id: &str, dir: &Path) {
    renamed_copy("config/sample-credentials", id, dir);
}

fn renamed_copy(from: &str, id: &str, dir: &Path) {
    for entry in std::fs::read_dir(repo().join(from)).expect("samples").flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("sample");
        let mut out = String::new();
        for line in text.lines() {
            let mut line = line.to_string();
            let body = line.trim_start().trim_start_matches("- ").to_string();
            for d in DOMAINS {
                if body == format!("name: {d}") || body == format!("namespace: {d}") {
                    line.push_str(&format!("-{id}"));
                }
                line = line.replace(&format!("namespace: {d},"), &format!("namespace: {d}-{id},"));
            }
            out.push_str(&line);
            out.push('\n');
            if let Some(indent) =
                line.strip_suffix(line.trim_start()).filter(|_| body.starts_with("drmesh.io/clearance: "))
            {
                out.push_str(&format!("{indent}{FENCE_LABEL}: {id}\n"));
            }
        }
        std::fs::write(dir.join(entry.file_name()), resigned(&out)).expect("write sample");
    }
}

/// The renamed copy's grants, signed again (a signature covers the grant's namespace):
/// the documents that carry approvals are written back as JSON, the others as they were.
fn resigned(text: &str) -> String {
    let docs: Vec<&str> = text.split("\n---\n").collect();
    let mut out = Vec::new();
    for doc in docs {
        let parsed: Option<serde_json::Value> = drmesh::yaml::from_str(doc).ok();
        match parsed {
            Some(v) if v["kind"] == "AccessPolicy" && v["spec"]["approvals"].is_array() => {
                out.push(crate::harness::approved_by_examples(doc, &[1, 2]));
            }
            _ => out.push(doc.to_string()),
        }
    }
    out.join("\n---\n") + "\n"
}

/// A block of the guide, run by bash as written (the admin's kubeconfig, kubectl on the
/// PATH), with config/samples/ and config/sample-credentials/ standing for the test's
/// copies (`samples` and its sibling `sample-credentials`).
fn run_block(block: &str, samples: &Path) -> Output {
    let kubectl_dir = harness::kubectl_path().parent().expect("bin dir").to_path_buf();
    let path = format!("{}:{}", kubectl_dir.display(), std::env::var("PATH").unwrap_or_default());
    let credentials = samples.with_file_name("sample-credentials");
    let script = block
        .replace("config/samples/", &format!("{}/", samples.display()))
        .replace("config/sample-credentials/", &format!("{}/", credentials.display()));
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(repo())
        .env("PATH", path)
        .env("KUBECONFIG", harness::kubeconfig_path())
        .output()
        .expect("bash")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn the_install_guide_takes_a_fresh_install_to_a_running_mesh() {
    let _turn = ONE_OPERATOR.lock().await;
    let mut release = Release::new("domains").await;
    release.fence();
    release.install();
    let id = release.id.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let samples = dir.path().join("samples");
    std::fs::create_dir(&samples).expect("samples dir");
    samples_copy(&id, &samples);
    let credentials = dir.path().join("sample-credentials");
    std::fs::create_dir(&credentials).expect("credentials dir");
    credentials_copy(&id, &credentials);
    let namespaces: Vec<String> = DOMAINS.iter().map(|d| format!("{d}-{id}")).collect();
    let _namespaces: Vec<ClusterScoped> =
        namespaces.iter().map(|n| ClusterScoped { kind: "namespace", name: n.clone() }).collect();

    let blocks = guide_blocks();
    assert_eq!(blocks.len(), 2, "the guide's section has its two blocks: {blocks:#?}");
    let (rbac, mesh) = (&blocks[0], &blocks[1]);
    assert!(rbac.contains("config/platform/clearance-admins.yaml") && mesh.contains("--as-group"), "{blocks:#?}");
    // The credentials are applied apart from the mesh (config/samples holds no Secret).
    assert!(mesh.contains("kubectl apply -f config/sample-credentials/"), "{mesh}");
    let domains_step: String =
        mesh.lines().take_while(|l| !l.starts_with("kubectl apply -f")).collect::<Vec<_>>().join("\n");

    // (Left over by an aborted run: the guide's step below creates them.)
    harness::kubectl(&["delete", "clusterrolebinding", "drmesh:clearance-admins", "--ignore-not-found"]);
    harness::kubectl(&["delete", "clusterrole", "drmesh:clearance-admin", "--ignore-not-found"]);
    // Without the guide's first step, the impersonated clearance admin may not create
    // namespaces at all (the workaround the guide used to give).
    let before = run_block(&domains_step, &samples);
    assert!(!before.status.success(), "{}", text(&before));
    assert!(text(&before).contains("forbidden") && text(&before).contains("namespaces"), "{}", text(&before));

    let _rbac = [
        ClusterScoped { kind: "clusterrole", name: "drmesh:clearance-admin".into() },
        ClusterScoped { kind: "clusterrolebinding", name: "drmesh:clearance-admins".into() },
    ];
    let out = run_block(rbac, &samples);
    assert!(out.status.success(), "{}", text(&out));
    let out = run_block(mesh, &samples);
    assert!(out.status.success(), "the guide's commands fail after helm install: {}", text(&out));
    for n in &namespaces {
        assert!(text(&out).contains(n.as_str()), "kubectl get drmesh -A shows {n}: {}", text(&out));
        let ns = harness::kubectl_json(&["get", "namespace", n, "-o", "json"]);
        assert!(ns["metadata"]["labels"]["drmesh.io/clearance"].is_string(), "{ns}");
    }

    // The attacker: eve may create and edit namespaces (the same ClusterRole, bound to her
    // alone) but is not a clearance admin. The chart's policy refuses her the label.
    let eve = harness::unique_name("eve");
    let _eve = ClusterScoped { kind: "clusterrolebinding", name: eve.clone() };
    let out = harness::kubectl(&[
        "create",
        "clusterrolebinding",
        &eve,
        "--clusterrole=drmesh:clearance-admin",
        "--user",
        &eve,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let forged = format!("{}-forged", namespaces[2]);
    let _forged = ClusterScoped { kind: "namespace", name: forged.clone() };
    let namespace = |clearance: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {forged}\n  labels: {{{FENCE_LABEL}: {id}{clearance}}}\n"
        )
    };
    let refused = harness::eventually("eve's labelled namespace to be refused by the policy", CONVERGE, || {
        let out = kubectl_stdin(&["apply", "--as", &eve, "-f", "-"], &namespace(", drmesh.io/clearance: Restricted"));
        // RBAC is eventually consistent (the binding just made): wait for the policy's answer.
        let said = text(&out);
        async move { (!out.status.success() && said.contains("drmesh.io/clearance")).then_some(said) }
    })
    .await;
    assert!(refused.contains("only members of drmesh:clearance-admins may"), "{refused}");
    // Her RBAC is not what refused her: the same namespace without the label is created,
    // and labelling it afterwards is refused too.
    let out = kubectl_stdin(&["apply", "--as", &eve, "-f", "-"], &namespace(""));
    assert!(out.status.success(), "{}", text(&out));
    let out = harness::kubectl(&["label", "namespace", &forged, "drmesh.io/clearance=Restricted", "--as", &eve]);
    assert!(!out.status.success() && text(&out).contains("only members of"), "{}", text(&out));
    // The cluster administrator, outside the group, is refused as well.
    let out = harness::kubectl(&["label", "namespace", &forged, "drmesh.io/clearance=Restricted"]);
    assert!(!out.status.success() && text(&out).contains("only members of"), "{}", text(&out));

    // And the mesh runs: the operator (as the chart's ServiceAccount) brings every
    // source, product and grant of the reference mesh to Ready.
    let kubeconfig = release.kubeconfig(dir.path());
    let mut operator = Operator::start(&kubeconfig, &release.namespace.name, &format!("{id}-op"), dir.path());
    operator.wait_leading().await;
    let objects = harness::wait_all_ready(&namespaces, CONVERGE).await;
    assert_eq!(objects, 18, "5 sources, 6 products and 7 grants Ready");
}
