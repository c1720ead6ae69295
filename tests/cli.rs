//! The offline CLI as CI pipelines and reviewers run it: the `drmesh` binary on the
//! reference mesh (config/samples) and on crafted bad inputs (tests/fixtures/cli).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const NOW: &str = "2026-06-01T00:00:00Z";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn samples() -> PathBuf {
    root().join("config/samples")
}

/// The samples' dummy credentials, apart from the mesh (no GitOps example syncs them).
fn credentials() -> PathBuf {
    root().join("config/sample-credentials")
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/cli").join(name)
}

fn drmesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drmesh")).args(args).current_dir(root()).output().expect("drmesh runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn validate_accepts_the_reference_mesh() {
    let out = drmesh(&["validate", "-f", path(&samples()), "-f", path(&credentials()), "--now", NOW]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out), "33 object(s) checked: 0 error(s), 0 warning(s)\n");
    // Without its credentials (what GitOps delivers), the mesh is valid too: offline, a
    // Secret is known missing only where the inputs carry the namespace's Secrets.
    let out = drmesh(&["validate", "-f", path(&samples()), "--now", NOW]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out), "28 object(s) checked: 0 error(s), 0 warning(s)\n");
}

#[test]
fn validate_names_file_object_and_field_of_bad_shapes() {
    let out = drmesh(&["validate", "-f", "tests/fixtures/cli/bad-shape.yaml", "--now", NOW]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    for expected in [
        "tests/fixtures/cli/bad-shape.yaml#0: error: DataSource gendarmerie/crowd-sensors: spec.endpoint.port: 70000 is greater than the maximum",
        "tests/fixtures/cli/bad-shape.yaml#0: error: DataSource gendarmerie/crowd-sensors: spec.type: \"Mongo\" is not one of",
        "DataSource gendarmerie/crowd-sensors: spec: unknown field(s) \"colour\" [schema]",
        "#1: error: DataProduct gendarmerie/crowd-density: spec.inputs[0]: spec.inputs[] must set exactly one of dataSource or dataProduct [cel]",
        "DataProduct gendarmerie/crowd-density: spec.outputPorts[].port must be unique [cel]",
        "#2: error: AccessPolicy gendarmerie/crowd-density-everyone: spec.expiresAt: \"next tuesday\" is not a \"date-time\" [schema]",
        "AccessPolicy gendarmerie/crowd-density-everyone: spec.purpose: \"short\" is shorter than 10 characters [schema]",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(text.ends_with("3 object(s) checked: 7 error(s), 0 warning(s)\n"), "{text}");
}

#[test]
fn validate_reports_every_semantic_rule_as_json() {
    let out = drmesh(&["validate", "-f", path(&fixture("bad-meaning.yaml")), "--now", NOW, "-o", "json"]);
    assert_eq!(code(&out), 1);
    let report: Value = serde_json::from_str(&stdout(&out)).expect("json report");
    assert_eq!(report["valid"], false);
    let found: Vec<(String, String, String)> = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
            (s("rule"), d["object"]["name"].as_str().unwrap_or("").to_string(), s("field"))
        })
        .collect();
    let want = |rule: &str, object: &str, field: &str| (rule.to_string(), object.to_string(), field.to_string());
    assert_eq!(
        found,
        vec![
            want("SecretNotFound", "intervention-reports", "spec.credentialsSecretRef"),
            want("NamespaceClearanceTooLow", "victims-db", "spec.classification"),
            want("ClassificationViolation", "rescue-operations", "spec.inputs[1]"),
            want("InputNotReady", "rescue-operations", "spec.inputs[0]"),
            want("NamespaceClearanceTooLow", "casualties", "spec.classification"),
            want("InputNotGranted", "city-dashboard", "spec.inputs[0]"),
            want("ClearanceTooLow", "rescue-operations-mairie", "spec.subjects[1]"),
            want("SubjectNotDeclared", "rescue-operations-mairie", "spec.subjects[0]"),
            want("Expired", "old-grant", "spec.expiresAt"),
            want("DataProductNotFound", "no-such-product", "spec.dataProduct"),
            want("PortNotFound", "wrong-port", "spec.ports"),
            want("MissingPurpose", "need-to-know", "spec.purpose"),
        ]
    );
    assert_eq!((report["errors"].as_u64(), report["warnings"].as_u64()), (Some(10), Some(2)));
    // Before the old grant's expiry, it is not reported.
    let before = drmesh(&["validate", "-f", path(&fixture("bad-meaning.yaml")), "--now", "2024-01-01T00:00:00Z"]);
    assert!(!stdout(&before).contains("[Expired]"));
}

#[test]
fn validate_writes_junit_for_ci() {
    let out = drmesh(&[
        "validate",
        "-f",
        path(&fixture("bad-meaning.yaml")),
        "-f",
        path(&fixture("garbled.yaml")),
        "--now",
        NOW,
        "-o",
        "junit",
    ]);
    assert_eq!(code(&out), 1);
    let xml = stdout(&out);
    // 14 + 1 objects, and the unreadable document of garbled.yaml.
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"drmesh validate\" tests=\"16\" failures=\"11\""), "{xml}");
    assert_eq!(xml.matches("<testsuite ").count(), 2, "one suite per file");
    assert_eq!(xml.matches("<failure ").count(), 11);
    assert!(xml.contains("name=\"document 1\">"), "{xml}");
    assert!(xml.contains("<testcase classname=\"") && xml.contains("name=\"AccessPolicy sdis/old-grant\">"));
    assert!(xml.trim_end().ends_with("</testsuites>"));
    // --strict: the warnings fail too.
    let strict =
        drmesh(&["validate", "-f", path(&fixture("bad-meaning.yaml")), "--now", NOW, "-o", "junit", "--strict"]);
    assert_eq!(stdout(&strict).matches("<failure ").count(), 12);
}

#[test]
fn validate_exit_codes_distinguish_bad_manifests_from_unreadable_input() {
    let garbled = drmesh(&["validate", "-f", path(&fixture("garbled.yaml"))]);
    assert_eq!(code(&garbled), 1);
    assert!(
        stdout(&garbled).contains("#1: error: not valid YAML: ")
            && stdout(&garbled).contains("did not find expected ',' or '}' at line 8"),
        "{}",
        stdout(&garbled)
    );
    let missing = drmesh(&["validate", "-f", "tests/fixtures/cli/no-such-file.yaml"]);
    assert_eq!(code(&missing), 2);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read tests/fixtures/cli/no-such-file.yaml"));
    assert_eq!(code(&drmesh(&["validate"])), 2, "-f is required");
    assert_eq!(code(&drmesh(&["validate", "-f", path(&samples()), "--now", "soon"])), 2);
    assert_eq!(code(&drmesh(&["validate", "-f", path(&samples()), "--clearance", "cnc"])), 2);
}

#[test]
fn validate_checks_all_manifests_together() {
    // The cnc domain alone: its inputs live in domains that are not among the inputs.
    let alone = drmesh(&["validate", "-f", "config/samples/cnc.yaml", "--now", NOW]);
    assert_eq!(code(&alone), 0, "{}", stdout(&alone));
    assert_eq!(
        stdout(&alone).matches("warning: DataProduct cnc/situation-picture: spec.inputs[").count(),
        5,
        "{}",
        stdout(&alone)
    );
    assert_eq!(code(&drmesh(&["validate", "-f", "config/samples/cnc.yaml", "--now", NOW, "--strict"])), 1);
    // The same object twice: kubectl would keep the last one.
    let twice = drmesh(&["validate", "-f", path(&samples()), "-f", "config/samples/police.yaml", "--now", NOW]);
    assert_eq!(code(&twice), 1);
    assert!(
        stdout(&twice)
            .contains("error: DataSource police/incident-db: DataSource police/incident-db is also declared in"),
        "{}",
        stdout(&twice)
    );
}

#[test]
fn validate_reads_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(["validate", "-f", "-", "--now", NOW])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let text = std::fs::read_to_string(fixture("bad-shape.yaml")).expect("fixture");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("<stdin>#0: error: DataSource gendarmerie/crowd-sensors: spec.endpoint.port"));
}

#[test]
fn render_prints_every_child_in_a_stable_order() {
    let out = drmesh(&["render", "-f", path(&samples()), "--now", NOW]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert_eq!(text, stdout(&drmesh(&["render", "-f", path(&samples()), "--now", NOW])), "stable");
    let docs: Vec<Value> = drmesh::yaml::documents(&text).map(|d| d.expect("yaml")).collect();
    assert_eq!(docs.len(), 6 * 6 + 5 + 5 * 3 + 7 * 2 + 6);
    for doc in &docs {
        for field in [
            "/apiVersion",
            "/kind",
            "/metadata/name",
            "/metadata/namespace",
            "/metadata/labels/app.kubernetes.io~1managed-by",
        ] {
            assert!(doc.pointer(field).is_some(), "{field} missing in {doc}");
        }
    }
    let first: Vec<(&str, &str)> = docs[..4]
        .iter()
        .map(|d| (d["kind"].as_str().unwrap_or(""), d["metadata"]["name"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        first,
        [
            ("NetworkPolicy", "situation-picture-isolation"),
            ("ServiceAccount", "situation-picture"),
            ("Service", "situation-picture"),
            ("Deployment", "situation-picture")
        ]
    );
    let json = drmesh(&["render", "-f", path(&samples()), "--now", NOW, "-o", "json"]);
    let list: Value = serde_json::from_str(&stdout(&json)).expect("json list");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(docs.len()));
    // Manifests the API server would refuse are not rendered.
    let bad = drmesh(&["render", "-f", path(&fixture("bad-shape.yaml"))]);
    assert_eq!((code(&bad), bad.stdout.is_empty()), (1, true));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("spec.endpoint.port"));
}

/// A copy of the samples with `edit` applied to each file's text.
fn edited_samples(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(samples()).expect("samples") {
        let file = entry.expect("entry").path();
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let text = std::fs::read_to_string(&file).expect("sample");
        std::fs::write(dir.path().join(&name), edit(&name, text)).expect("write");
    }
    dir
}

#[test]
fn diff_lists_widened_access_first() {
    let changed = edited_samples(|name, text| match name {
        "transport.yaml" => text
            .replace("name: transport-analysts", "name: transport-analysts\n    - kind: User\n      name: eve")
            .replace("  ports: [http]\n  subjects:", "  subjects:"),
        "police.yaml" => text.replace("expiresAt: \"2027-12-31T23:59:59Z\"", "expiresAt: \"2028-03-31T23:59:59Z\""),
        "gendarmerie.yaml" => text
            .replace("    - kind: Group\n      name: cnc-officers\n    - kind: DataProduct", "    - kind: DataProduct"),
        _ => text,
    });
    let out = drmesh(&["diff", "-f", path(changed.path()), "--against", path(&samples()), "--now", NOW]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    assert!(text.starts_with("ACCESS WIDENED (review these first) (4)\n"), "{text}");
    for expected in [
        "  + User:eve -> DataProduct transport/transit-disruptions: new access: api+proxy on 8080/http,9090/grpc with no expiry (via AccessPolicy transport/transit-disruptions-analysts)",
        "  + Group:transport-analysts -> DataProduct transport/transit-disruptions: new ports: 9090/grpc",
        // A product subject needs no approval: its reach grows with the expiry...
        "  + DataProduct:cnc/situation-picture -> DataProduct police/incident-feed: longer expiry: 2027-12-31T23:59:59Z -> 2028-03-31T23:59:59Z",
        // ...while the edit voids the approvals the people subjects rely on (two-person rule).
        "APPROVALS VOIDED (the grant is revoked until re-approved) (1)\n  ! AccessPolicy police/incident-feed-cnc: the edit changes the signed spec",
        "the approvals of example-approver-1, example-approver-2 no longer count",
        "ACCESS NARROWED (2)\n  - Group:cnc-officers -> DataProduct gendarmerie/crowd-density: access removed",
        "  - Group:cnc-officers -> DataProduct police/incident-feed: access removed",
        "  ~ AccessPolicy transport/transit-disruptions-analysts: changed: spec.ports, spec.subjects",
        "  ~ RoleBinding transport/drmesh-grant-transit-disruptions-analysts: changed: subjects",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let widened = text.find("ACCESS WIDENED").unwrap_or(usize::MAX);
    assert!(widened < text.find("ACCESS NARROWED").unwrap_or(0));
    let gate = drmesh(&[
        "diff",
        "-f",
        path(changed.path()),
        "--against",
        path(&samples()),
        "--now",
        NOW,
        "--fail-on-widening",
        "-o",
        "json",
    ]);
    assert_eq!(code(&gate), 3);
    let json: Value = serde_json::from_str(&stdout(&gate)).expect("json");
    assert_eq!(json["widened"].as_array().map(Vec::len), Some(4));
    assert_eq!(json["approvals_voided"].as_array().map(Vec::len), Some(1));
    let same = drmesh(&["diff", "-f", path(&samples()), "--against", path(&samples()), "--fail-on-widening"]);
    assert_eq!((code(&same), stdout(&same)), (0, "no change\n".to_string()));
}

#[test]
fn diff_refuses_declassification() {
    let lowered = edited_samples(|name, text| {
        if name == "police.yaml" {
            text.replacen(
                "  classification: Restricted\n  type: Postgres",
                "  classification: Internal\n  type: Postgres",
                1,
            )
        } else {
            text
        }
    });
    let out = drmesh(&["diff", "-f", path(lowered.path()), "--against", path(&samples()), "--now", NOW]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(text.contains("+ DataSource police/incident-db: classification lowered Restricted -> Internal"), "{text}");
    assert!(
        text.contains("! DataSource police/incident-db: spec.classification: spec.classification cannot be lowered"),
        "{text}"
    );
}

#[test]
fn graph_draws_the_mesh_in_three_formats() {
    let mermaid = drmesh(&["graph", "-f", path(&samples()), "--now", NOW]);
    assert_eq!(code(&mermaid), 0);
    let text = stdout(&mermaid);
    assert!(text.starts_with("flowchart LR\n"));
    assert_eq!(text.matches("  subgraph ").count(), 6);
    let dot = stdout(&drmesh(&["graph", "-f", path(&samples()), "--format", "dot"]));
    assert!(dot.starts_with("digraph drmesh {") && dot.matches("subgraph \"cluster_").count() == 6);
    let svg = stdout(&drmesh(&["graph", "-f", path(&samples()), "--format", "svg"]));
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.ends_with("</svg>\n"));
    assert!(svg.contains(">situation-picture</text>") && svg.contains("fill=\"#ffebee\""));
}

#[test]
fn the_readme_shows_the_generated_reference_mesh() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    // A fixed instant: the samples' grants end on 2027-12-31 (the picture would turn red after it).
    let generated = stdout(&drmesh(&["graph", "-f", "config/samples", "--format", "mermaid", "--now", NOW]));
    let block = format!("```mermaid\n{generated}```");
    assert!(readme.contains("## The reference mesh"), "README lacks the heading");
    assert!(
        readme.contains(&block),
        "README's mermaid block is stale: regenerate it with `drmesh graph -f config/samples --format mermaid`"
    );
}

/// `drmesh access-review` with `args`: its output, after checking that it exits 0.
fn access_review(args: &[&str]) -> String {
    let samples = samples();
    let mut all = vec!["access-review", "-f", path(&samples)];
    all.extend_from_slice(args);
    let out = drmesh(&all);
    assert_eq!(code(&out), 0, "{all:?}: {}", String::from_utf8_lossy(&out.stderr));
    stdout(&out)
}

#[test]
fn access_review_says_who_can_access_what() {
    let table = access_review(&["--now", NOW]);
    let header = table.lines().next().unwrap_or("");
    for column in [
        "OBJECT",
        "CLASSIFICATION",
        "SUBJECT",
        "ACCESS",
        "PORTS",
        "VIA",
        "PURPOSE",
        "CLEARANCE",
        "APPROVED BY",
        "STARTS",
        "REASSESS BY",
        "UNTIL",
        "STATUS",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert!(table.lines().any(|l| l.starts_with("DataProduct police/incident-feed")
        && l.contains("Group:cnc-officers")
        && l.contains("2027-12-31T23:59:59Z")));
    let csv = access_review(&["--now", NOW, "-o", "csv"]);
    assert!(csv.contains(
        "DataProduct,police,incident-feed,Restricted,Group:cnc-officers,api+proxy,8080/http,AccessPolicy police/incident-feed-cnc,Build the national situation picture of the command centre during the Games.,Restricted until 2027-12-31T23:59:59Z,example-approver-1 example-approver-2,,2027-09-30T00:00:00Z,2027-12-31T23:59:59Z,Granted\r\n"
    ), "{csv}");
    // Owners of a Restricted product see its objects, not its data; every row says which
    // clearance it rests on (a person's own, or a workload's domain).
    assert!(
        csv.contains(
            "DataProduct,police,incident-feed,Restricted,Group:police-data-owners,api,,owner,,none,,,,,Granted\r\n"
        ),
        "{csv}"
    );
    assert!(csv.contains("DataProduct:cnc/situation-picture,network,8080/http,AccessPolicy police/incident-feed-cnc,Build the national situation picture of the command centre during the Games.,domain cnc: Restricted,"), "{csv}");
    let json: Value =
        serde_json::from_str(&access_review(&["--now", "2028-01-01T00:00:00Z", "-o", "json"])).expect("json");
    let rows = json.as_array().expect("rows");
    assert!(rows.iter().any(|r| r["status"] == "Expired" && r["subject"] == "Group:cnc-officers"));
    let granted = access_review(&["--now", "2028-01-01T00:00:00Z", "-o", "json", "--granted-only"]);
    assert!(!granted.contains("\"Expired\""));
}

#[cfg(unix)]
#[test]
fn works_as_a_kubectl_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("kubectl-drmesh");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_drmesh"), &plugin).expect("symlink");
    let help = Command::new(&plugin).arg("--help").output().expect("plugin runs");
    assert_eq!(code(&help), 0);
    assert!(stdout(&help).contains("Usage: kubectl drmesh [OPTIONS] <COMMAND>"), "{}", stdout(&help));
    let out = Command::new(&plugin)
        .args(["validate", "-f", path(&samples()), "-f", path(&credentials()), "--now", NOW])
        .output()
        .expect("plugin runs");
    assert_eq!((code(&out), stdout(&out)), (0, "33 object(s) checked: 0 error(s), 0 warning(s)\n".to_string()));
}

#[test]
fn shell_completions_cover_every_command_and_the_cluster_flags() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = drmesh(&["completion", shell]);
        assert_eq!(code(&out), 0, "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = stdout(&out);
        for word in ["access-review", "validate", "kubeconfig", "context", "granted-only"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = drmesh(&["completion", "tcsh"]);
    assert_eq!(code(&out), 2, "an unknown shell is a usage error");
}

#[test]
fn kubeconfig_and_context_choose_the_cluster_and_fail_loudly() {
    // A kubeconfig that does not exist is an error naming it (exit 2), never a fallback to
    // $KUBECONFIG or ~/.kube/config: the flags are global, before or after the command.
    for args in [
        &["--kubeconfig", "/nonexistent/kubeconfig", "access-review", "--cluster"][..],
        &["access-review", "--cluster", "--kubeconfig", "/nonexistent/kubeconfig"][..],
    ] {
        let out = drmesh(args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kubeconfig"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Offline commands do not read a kubeconfig at all.
    let out = drmesh(&["--kubeconfig", "/nonexistent/kubeconfig", "validate", "-f", path(&samples()), "--now", NOW]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
}

/// The two-person rule offline: an edit of a signed grant fails `validate` (exit 1) naming
/// the approvers who have not signed the new spec; `drmesh approve` by both gives the
/// entries that make it valid again; a signature by a key the MeshPolicy does not trust
/// counts for nothing.
#[test]
fn approvals_are_checked_offline_and_made_with_drmesh_approve() {
    let edited = edited_samples(|name, text| match name {
        "police.yaml" => text.replace(
            "purpose: Build the national situation picture of the command centre during the Games.",
            "purpose: Build the national situation picture of the command centre, and keep a copy.",
        ),
        _ => text,
    });
    let out = drmesh(&["validate", "-f", path(edited.path()), "--now", NOW]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("AccessPolicy police/incident-feed-cnc") && text.contains("[ApprovalMissing]"), "{text}");
    assert!(text.contains("approvers who have not signed this spec: example-approver-1, example-approver-2"), "{text}");

    // Re-approval: strip the void approvals, sign with both EXAMPLE keys, validate again.
    let police = edited.path().join("police.yaml");
    let docs: Vec<String> = std::fs::read_to_string(&police)
        .expect("police.yaml")
        .split("\n---\n")
        .map(|d| match d.find("\n  approvals:\n") {
            Some(at) if d.contains("name: incident-feed-cnc") => d[..at].to_string(),
            _ => d.to_string(),
        })
        .collect();
    std::fs::write(&police, docs.join("\n---\n")).expect("write");
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/example-approvers");
    let sign = |n: u8, name: &str| {
        let key = keys.join(format!("example-approver-{n}"));
        let out = drmesh(&["approve", "-f", path(&police), "--key", path(&key), "--approver", name]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let text = stdout(&out);
        // The entries of the grant to the officers, as printed.
        let start = text.find("# AccessPolicy police/incident-feed-cnc").expect("the grant is signed");
        let block = &text[start..];
        let end = block[1..].find("# AccessPolicy").map_or(block.len(), |e| e + 1);
        block[..end].lines().skip(1).map(|l| format!("  {l}\n")).collect::<String>()
    };
    let with = |entries: &str| {
        let mut docs = docs.clone();
        for d in docs.iter_mut().filter(|d| d.contains("name: incident-feed-cnc")) {
            d.push_str(&format!("\n  approvals:\n{entries}"));
        }
        std::fs::write(&police, docs.join("\n---\n")).expect("write");
        drmesh(&["validate", "-f", path(edited.path()), "--now", NOW])
    };
    let forged = sign(3, "example-approver-2");
    let out = with(&(sign(1, "example-approver-1") + &forged));
    assert_eq!(code(&out), 1, "a key the MeshPolicy does not trust: {}", stdout(&out));
    assert!(stdout(&out).contains("example-approver-2: the signature does not verify"), "{}", stdout(&out));
    let out = with(&(sign(1, "example-approver-1") + &sign(2, "example-approver-2")));
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    // The digest alone, for ssh-keygen users.
    let digests = stdout(&drmesh(&["approve", "-f", path(&police), "--digest"]));
    assert!(digests.lines().any(|l| l.starts_with("sha256:") && l.ends_with("AccessPolicy police/incident-feed-cnc")));
    assert_eq!(code(&drmesh(&["approve", "-f", path(&police)])), 2, "--key and --approver, or --digest");
}

/// A Restricted grant scheduled to start later (`startsAt`), with the security officers'
/// manifests: the people's Clearance and a MeshPolicy trusting the EXAMPLE approvers 1
/// and 2, allowing Restricted grants of 90 days at most.
fn scheduled_grant(dir: &Path, cleared_until: &str, expires: &str, approvals: &str) -> PathBuf {
    let keys = root().join("tests/fixtures/example-approvers");
    let public = |n: u8| {
        std::fs::read_to_string(keys.join(format!("example-approver-{n}.pub"))).expect("key").trim().to_string()
    };
    let officers = format!(
        r#"apiVersion: drmesh.io/v1alpha1
kind: MeshPolicy
metadata: {{name: default}}
spec:
  maxGrantDuration: {{Restricted: 90d}}
  approvals:
    required: 2
    approvers:
      - {{name: example-approver-1, publicKey: "{}"}}
      - {{name: example-approver-2, publicKey: "{}"}}
---
apiVersion: drmesh.io/v1alpha1
kind: Clearance
metadata: {{name: night-shift}}
spec:
  subject: {{kind: Group, name: night-shift}}
  level: Restricted
  expiresAt: "{cleared_until}"
  reason: "Habilitation DR of the night shift, decision 2026-020"
"#,
        public(1),
        public(2)
    );
    std::fs::write(dir.join("officers.yaml"), officers).expect("write");
    let domain = r#"apiVersion: v1
kind: Namespace
metadata: {name: police, labels: {drmesh.io/clearance: Restricted}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {name: feed, namespace: police}
spec:
  classification: Restricted
  runtime: {image: registry.example/feed:1.0}
  outputPorts: [{name: http, port: 8080, protocol: HTTP}]
"#;
    std::fs::write(dir.join("domain.yaml"), domain).expect("write");
    let grant = dir.join("grant.yaml");
    let text = format!(
        r#"apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: night-shift, namespace: police}}
spec:
  dataProduct: feed
  subjects: [{{kind: Group, name: night-shift}}]
  purpose: The night shift of the command centre during the Games.
  startsAt: "2026-07-01T00:00:00Z"
  expiresAt: "{expires}"
"#
    );
    std::fs::write(&grant, &text).expect("write");
    if !approvals.is_empty() {
        std::fs::write(&grant, format!("{text}  approvals:\n{approvals}")).expect("write");
    }
    grant
}

/// `spec.approvals` entries by the EXAMPLE approvers 1 and 2 over the grant in `file`,
/// as `drmesh approve` prints them, indented under `spec`.
fn approve_by_examples(file: &Path) -> String {
    let keys = root().join("tests/fixtures/example-approvers");
    [1, 2]
        .iter()
        .map(|n| {
            let key = keys.join(format!("example-approver-{n}"));
            let approver = format!("example-approver-{n}");
            let out = drmesh(&["approve", "-f", path(file), "--key", path(&key), "--approver", &approver]);
            assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
            stdout(&out).lines().filter(|l| !l.starts_with('#')).map(|l| format!("  {l}\n")).collect::<String>()
        })
        .collect()
}

/// `drmesh validate` before a grant's start: a scheduled grant that is valid as written
/// is no error (a `NotYetValid` warning, exit 0), but everything that would refuse it at
/// its start fails CI now (exit 1): its missing approvers, named; a length over the
/// MeshPolicy's limit; a clearance that will have ended by then.
#[test]
fn validate_checks_a_scheduled_grant_before_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let validate = |now: &str| drmesh(&["validate", "-f", path(dir.path()), "--now", now]);
    // Unsigned: fails, naming both approvers; waiting for the start does not hide it.
    scheduled_grant(dir.path(), "2027-01-01T00:00:00Z", "2026-09-01T00:00:00Z", "");
    let out = validate(NOW);
    let text = stdout(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("AccessPolicy police/night-shift") && text.contains("[ApprovalMissing]"), "{text}");
    assert!(text.contains("approvers who have not signed this spec: example-approver-1, example-approver-2"), "{text}");
    assert!(!text.contains("[NotYetValid]"), "{text}");

    // Signed by both: valid, it waits for its start (a warning, exit 0); after it, nothing to say.
    let grant = scheduled_grant(dir.path(), "2027-01-01T00:00:00Z", "2026-09-01T00:00:00Z", "");
    let signed = approve_by_examples(&grant);
    scheduled_grant(dir.path(), "2027-01-01T00:00:00Z", "2026-09-01T00:00:00Z", &signed);
    let out = validate(NOW);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("[NotYetValid]") && text.contains("the grant starts at 2026-07-01T00:00:00Z"), "{text}");
    assert!(text.ends_with("0 error(s), 1 warning(s)\n"), "{text}");
    let out = validate("2026-07-02T00:00:00Z");
    assert_eq!((code(&out), stdout(&out).ends_with("0 error(s), 0 warning(s)\n")), (0, true), "{}", stdout(&out));
    // --strict makes the warning fail, as for any warning.
    let out = drmesh(&["validate", "-f", path(dir.path()), "--now", NOW, "--strict"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));

    // Longer than the MeshPolicy's 90 days, signed: DurationTooLong now, not NotYetValid.
    let grant = scheduled_grant(dir.path(), "2027-01-01T00:00:00Z", "2026-12-01T00:00:00Z", "");
    let signed = approve_by_examples(&grant);
    scheduled_grant(dir.path(), "2027-01-01T00:00:00Z", "2026-12-01T00:00:00Z", &signed);
    let out = validate(NOW);
    let text = stdout(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("[DurationTooLong]") && text.contains("90d"), "{text}");
    assert!(!text.contains("[NotYetValid]"), "{text}");

    // Signed, but the group's clearance ends before the start: SubjectNotCleared now.
    let grant = scheduled_grant(dir.path(), "2026-06-15T00:00:00Z", "2026-09-01T00:00:00Z", "");
    let signed = approve_by_examples(&grant);
    scheduled_grant(dir.path(), "2026-06-15T00:00:00Z", "2026-09-01T00:00:00Z", &signed);
    let out = validate(NOW);
    let text = stdout(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("[SubjectNotCleared]") && text.contains("at the grant's start"), "{text}");

    // Without the officers' manifests, the people cannot be settled here: warnings only.
    scheduled_grant(dir.path(), "2027-01-01T00:00:00Z", "2026-09-01T00:00:00Z", "");
    std::fs::remove_file(dir.path().join("officers.yaml")).expect("remove");
    let out = validate(NOW);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("no MeshPolicy among the inputs: include it to check the approvals"), "{text}");
    assert!(text.contains("no Clearance manifest among the inputs"), "{text}");
}

/// An executable named `name` on the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Runs `program` with `args`, `input` on its stdin.
fn run_with_input(program: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input).expect("write");
    child.wait_with_output().expect("wait")
}

/// Approvals are plain SSH signatures (namespace `drmesh.io/approval`) over the digest
/// `drmesh approve --digest` prints, as docs/cli.md says: OpenSSH's `ssh-keygen -Y verify`
/// accepts the ones `drmesh approve` made (the reference mesh's), and drmesh accepts one
/// made with `ssh-keygen -Y sign` (a key kept in an agent or a token), but not over
/// another text nor in another namespace. Skipped, saying so, without ssh-keygen.
#[test]
fn approvals_interoperate_with_ssh_keygen() {
    let Some(keygen) = on_path("ssh-keygen") else {
        eprintln!(
            "SKIPPED approvals_interoperate_with_ssh_keygen: no ssh-keygen on the PATH (install OpenSSH to run it)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = root().join("tests/fixtures/example-approvers");
    let police = std::fs::read_to_string(samples().join("police.yaml")).expect("police.yaml");
    let docs: Vec<String> = police.split("\n---\n").map(String::from).collect();
    let at = docs.iter().position(|d| d.contains("name: incident-feed-cnc")).expect("the signed grant");
    let grant: drmesh::api::AccessPolicy = drmesh::yaml::from_str(&docs[at]).expect("an AccessPolicy");
    assert_eq!(grant.spec.approvals.len(), 2, "the sample carries two approvals");
    let digests = stdout(&drmesh(&["approve", "-f", path(&samples().join("police.yaml")), "--digest"]));
    let digest = digests
        .lines()
        .find(|l| l.ends_with("AccessPolicy police/incident-feed-cnc"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the grant's digest")
        .to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");

    // ssh-keygen verifies what drmesh signed.
    let allowed = dir.path().join("allowed_signers");
    let signers: String = [1, 2]
        .iter()
        .map(|n| {
            let key = std::fs::read_to_string(keys.join(format!("example-approver-{n}.pub"))).expect("key");
            format!("example-approver-{n} {}\n", key.trim())
        })
        .collect();
    std::fs::write(&allowed, signers).expect("write");
    for approval in &grant.spec.approvals {
        let signature = dir.path().join(format!("{}.sig", approval.approver));
        std::fs::write(&signature, &approval.signature).expect("write");
        let verify = |message: &str| {
            let args =
                ["-Y", "verify", "-f", path(&allowed), "-I", &approval.approver, "-n", "drmesh.io/approval", "-s"];
            let mut args = args.to_vec();
            args.push(path(&signature));
            run_with_input(&keygen, &args, message.as_bytes())
        };
        let good = verify(&digest);
        assert!(good.status.success(), "{}: {}", approval.approver, String::from_utf8_lossy(&good.stderr));
        let other = format!("{}0", &digest[..digest.len() - 1]);
        assert!(
            !verify(&other).status.success(),
            "{}: a signature of another digest must not verify",
            approval.approver
        );
    }

    // drmesh accepts what ssh-keygen signed (the key file must be private to its owner).
    let key = dir.path().join("example-approver-2");
    std::fs::copy(keys.join("example-approver-2"), &key).expect("copy");
    #[cfg(unix)]
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let sign = |namespace: &str, message: &str| {
        let out = run_with_input(&keygen, &["-Y", "sign", "-n", namespace, "-f", path(&key)], message.as_bytes());
        assert!(out.status.success(), "ssh-keygen -Y sign: {}", String::from_utf8_lossy(&out.stderr));
        stdout(&out)
    };
    let validate_with = |signature: String| {
        let mut signed = grant.clone();
        for approval in signed.spec.approvals.iter_mut().filter(|a| a.approver == "example-approver-2") {
            approval.signature = signature.clone();
        }
        let json = serde_json::to_string(&signed).expect("json");
        let edited = edited_samples(|name, text| match name {
            "police.yaml" => {
                let mut docs: Vec<String> = text.split("\n---\n").map(String::from).collect();
                docs[at] = json.clone();
                docs.join("\n---\n")
            }
            _ => text,
        });
        drmesh(&["validate", "-f", path(edited.path()), "--now", NOW])
    };
    let out = validate_with(sign("drmesh.io/approval", &digest));
    assert_eq!(code(&out), 0, "an ssh-keygen signature counts: {}", stdout(&out));
    for (namespace, message) in [("drmesh.io/approval", "sha256:0000"), ("git", digest.as_str())] {
        let out = validate_with(sign(namespace, message));
        assert_eq!(code(&out), 1, "{namespace} {message}: {}", stdout(&out));
        assert!(stdout(&out).contains("example-approver-2: the signature does not verify"), "{}", stdout(&out));
    }
}

#[test]
fn audit_verify_checks_every_replicas_log_as_one_chain_and_names_the_tampering() {
    use drmesh::audit::{Chain, Decision, Event, ObjectRef};
    // Records signed with an example key (its .pub stands for the operator's audit key).
    let keys = root().join("tests/fixtures/example-approvers");
    let pem = std::fs::read_to_string(keys.join("example-approver-1")).expect("key");
    let key = ssh_key::PrivateKey::from_openssh(pem.trim()).expect("an OpenSSH key");
    let mut chain = Chain::default();
    let lines: Vec<String> = (0..6)
        .map(|n| {
            let event = Event {
                time: format!("2026-12-01T00:00:0{n}Z"),
                actor: "drmesh".into(),
                decision: Decision::Revoked,
                reason: "Expired".into(),
                message: format!("decision {n}"),
                product: ObjectRef { namespace: "police".into(), name: "incident-feed".into() },
                classification: "Restricted".into(),
                subjects: vec!["Group:cnc-officers".into()],
                purpose: None,
                expires_at: None,
                policy: None,
                ports: vec![],
                while_no_operator_led: None,
            };
            serde_json::to_string(&chain.append_signed(event, Some(&key)).expect("sign")).expect("json") + "\n"
        })
        .collect();
    let head = chain.head().expect("a head").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("replica-a.log"), dir.path().join("replica-b.log"));
    std::fs::write(&a, lines[..3].concat()).expect("write");
    std::fs::write(&b, lines[3..].concat()).expect("write");
    let public = keys.join("example-approver-1.pub");

    // Intact: replica A's log on stdin, B's as a file.
    let mut child = Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(["audit", "verify", path(&b), "-", "--key", path(&public), "--head", &head])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), lines[..3].concat().as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).starts_with("audit log intact: 6 records\n"), "{}", stdout(&out));
    assert!(stdout(&out).contains("6 signed, 6 with a valid signature by the key"), "{}", stdout(&out));
    let out = drmesh(&["audit", "head", path(&a), path(&b)]);
    assert_eq!((code(&out), stdout(&out)), (0, format!("{head}\n")));

    // B's first record removed: named, exit 3; without --head the report says what it missed.
    std::fs::write(&b, lines[4..].concat()).expect("write");
    let out = drmesh(&["audit", "verify", path(&a), path(&b), "--key", path(&public), "--head", &head]);
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{}:1: removed: 1 record(s) removed before this one: record 3", path(&b))),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("the audit log does not verify: 1 finding(s)"));
    let out = drmesh(&["audit", "verify", path(&a)]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("signatures not checked (no --key)"), "{}", stdout(&out));
    assert!(stdout(&out).contains("a truncated end is not detected"), "{}", stdout(&out));
    // The same log, its end cut, against the head anchor.
    let out = drmesh(&["audit", "verify", path(&a), "--head", &head]);
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    assert!(stdout(&out).contains("truncated-end: the chain stops at record 2, the head anchor is record 5"));

    // access-review --at checks the chain against the same anchors before it answers.
    let review = |extra: &[&str]| {
        let mut args = vec!["access-review", "--at", "2026-12-01T00:00:09Z", "--audit-log", path(&a)];
        args.extend(extra);
        drmesh(&args)
    };
    assert_eq!(code(&review(&["--audit-key", path(&public)])), 0);
    let other = keys.join("example-approver-2.pub");
    let out = review(&["--audit-key", path(&other)]);
    assert_eq!(code(&out), 3, "signed by another key: {}", String::from_utf8_lossy(&out.stderr));
    let out = review(&["--audit-head", &head]);
    assert_eq!(code(&out), 3, "cut end: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(code(&drmesh(&["access-review", "-f", "x", "--audit-key", path(&public)])), 2, "only with --audit-log");
}

/// docs/audit.md's filter, run as documented (`grep -E`), keeps exactly the audit records
/// of a pod log that mixes them with the operator's text and JSON logs; what it keeps
/// verifies, what it was given does not.
#[test]
fn the_documented_filter_extracts_the_audit_records_from_a_mixed_pod_log() {
    use drmesh::audit::{Chain, Decision, Event, ObjectRef};
    let doc = std::fs::read_to_string(root().join("docs/audit.md")).expect("docs/audit.md");
    let line = doc.lines().find(|l| l.contains("| grep -E '")).expect("the filter in docs/audit.md");
    let pattern = line.split("grep -E '").nth(1).and_then(|rest| rest.split('\'').next()).expect("a quoted pattern");
    let mut chain = Chain::default();
    let records: Vec<String> = (0..3)
        .map(|n| {
            let event = Event {
                time: format!("2026-12-01T00:00:0{n}Z"),
                actor: "drmesh".into(),
                decision: Decision::Granted,
                reason: "Granted".into(),
                message: format!("decision {n}: \"quoted\", {{\"seq\":{n}}}"),
                product: ObjectRef { namespace: "police".into(), name: "incident-feed".into() },
                classification: "Restricted".into(),
                subjects: vec!["Group:cnc-officers".into()],
                purpose: Some("situation picture".into()),
                expires_at: None,
                policy: None,
                ports: vec!["8080/http".into()],
                while_no_operator_led: None,
            };
            serde_json::to_string(&chain.append(event)).expect("json")
        })
        .collect();
    let head = chain.head().expect("a head").to_string();
    // What `kubectl logs` prints: text and JSON tracing lines (one quoting a record) around
    // the records.
    let quoted = serde_json::json!({"timestamp": "2026-12-01T00:00:00.5Z", "level": "ERROR",
        "message": format!("audit records not written: {}", records[1]), "target": "drmesh_operator::audit_sink"});
    let mixed = [
        "2026-12-01T00:00:00.000000Z  INFO drmesh_operator::run: serving /healthz, /readyz, /metrics addr=0.0.0.0:8080",
        &records[0],
        r#"{"timestamp":"2026-12-01T00:00:00.1Z","level":"INFO","message":"audit chain taken over","head":"0:ab","seq":3}"#,
        &quoted.to_string(),
        &records[1],
        "{\"seq\":4} not a record",
        &records[2],
        "2026-12-01T00:00:03.000000Z  WARN drmesh_operator::audit_sink: cannot rotate the audit log",
    ]
    .join("\n")
        + "\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let (pod_log, extracted) = (dir.path().join("pod.log"), dir.path().join("audit.log"));
    std::fs::write(&pod_log, &mixed).expect("write");
    let out = drmesh(&["audit", "verify", path(&pod_log), "--head", &head]);
    assert_eq!(code(&out), 3, "the pod log as it is does not verify: {}", stdout(&out));
    let grep = Command::new("grep").args(["-E", pattern, path(&pod_log)]).output().expect("grep runs");
    assert_eq!(String::from_utf8_lossy(&grep.stdout), records.join("\n") + "\n", "exactly the records, unchanged");
    std::fs::write(&extracted, &grep.stdout).expect("write");
    let out = drmesh(&["audit", "verify", path(&extracted), "--head", &head]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).starts_with("audit log intact: 3 records\n"), "{}", stdout(&out));
}
