//! The docs name only what exists: status reasons (and the CLI's diagnostics), `drmesh`
//! flags and their values (checked against the built binary's `--help`), make targets,
//! links (inside the repository, or to public upstream pages) and alert names. Each
//! check is also fed a planted mistake, so that it is known to fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The documentation a user reads: Markdown outside generated bench results, and the
/// chart's NOTES.txt.
fn docs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable dir").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && !["target", "results", "node_modules"].contains(&name.as_str()) {
                    walk(&path, out);
                }
            } else if name.ends_with(".md") || name == "NOTES.txt" {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root(), &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------- what exists

/// Reasons of status conditions, Events and audit records, and the CLI's diagnostics.
fn reasons() -> BTreeSet<String> {
    let all: BTreeSet<String> = drmesh::mesh::rules::Reason::ALL.iter().map(|r| r.to_string()).collect();
    all
}

/// CamelCase names the docs may use that are not reasons: Kubernetes and tool kinds and
/// terms. Rust types of drmesh are found in the sources, alerts in the chart.
const NOT_REASONS: &[&str] = &[
    // drmesh's kinds
    "DataSource",
    "DataProduct",
    "AccessPolicy",
    "Clearance",
    "MeshPolicy",
    // Kubernetes kinds, fields' values and admission plugins
    "ServiceAccount",
    "NetworkPolicy",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "CronJob",
    "ReplicationController",
    "EndpointSlice",
    "PodDisruptionBudget",
    "CustomResourceDefinition",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ClusterIP",
    "ContainerCreating",
    "RuntimeDefault",
    "PodNodeSelector",
    "PodTolerationRestriction",
    "OwnerReferencesPermissionEnforcement",
    // kube-rs types and watcher events
    "DeserializeGuard",
    "InitDone",
    "PartialObjectMeta",
    // prometheus-operator, Flux and Argo CD kinds
    "PrometheusRule",
    "ServiceMonitor",
    "GitRepository",
    "Kustomization",
    "HelmRelease",
    "HelmRepository",
    "OCIRepository",
    "HelmChart",
    // Flux's reasons of a Kustomization's Ready condition (docs/gitops.md)
    "ReconciliationFailed",
    "HealthCheckFailed",
];

/// Flags of other programs that docs name on their own (in a code span without the
/// program's name): the program is said in the prose around them.
const OTHER_FLAGS: &[&str] = &[
    "--use-service-account-credentials", // kube-controller-manager
    "--authorization-mode",              // kube-apiserver
    "--audit-policy-file",               // kube-apiserver
    "--advertise-address",               // kube-apiserver
    "--unsafe-no-fsync",                 // etcd
    "--skip-download",                   // checkov
    "--run-router",                      // kube-router
    "--run-firewall",                    // kube-router
    "--run-service-proxy",               // kube-router
    "--no-default-features",             // cargo
    "--requeue-dependency",              // Flux's kustomize-controller
];

/// Public upstream sites a doc may link to (nothing else leaves the repository).
const UPSTREAM_HOSTS: &[&str] = &[
    "kubernetes.io",
    "github.com/kubernetes",
    "github.com/kubernetes-sigs",
    "github.com/fluxcd",
    "fluxcd.io",
    "argo-cd.readthedocs.io",
    "helm.sh",
    "prometheus.io",
    "docs.rs",
    "crates.io",
    "owasp.org",
    "cheatsheetseries.owasp.org",
    "github.com/kube-rs",
    "kube.rs",
    "github.com/cloudnativelabs/kube-router",
    "krew.sigs.k8s.io",
    "cyclonedx.org",
];

/// Type, trait and alias names defined in drmesh's sources (docs/architecture.md names them).
fn rust_types() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != "target" {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for keyword in ["struct ", "enum ", "trait ", "type "] {
                    for (i, _) in text.match_indices(keyword) {
                        let name: String =
                            text[i + keyword.len()..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                        if !name.is_empty() {
                            out.insert(name);
                        }
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    // src/ today; crates/ once the workspace is split.
    walk(&root().join("src"), &mut out);
    walk(&root().join("crates"), &mut out);
    out
}

/// Alert names in the chart's PrometheusRule.
fn alerts() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("charts/drmesh/templates/prometheusrule.yaml")).expect("rules");
    text.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).map(|a| a.trim().to_string()).collect()
}

/// Targets of the Makefile.
fn make_targets() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("Makefile")).expect("Makefile");
    text.lines()
        .filter(|l| !l.starts_with(['\t', '#', ' ', '.']))
        .filter_map(|l| l.split_once(':'))
        .filter(|(_, rest)| !rest.starts_with('='))
        .flat_map(|(targets, _)| targets.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|t| !t.contains('$') && !t.contains('='))
        .collect()
}

/// A subcommand's options, from `drmesh SUB --help`: flag -> possible values (empty when
/// any value goes).
type Options = BTreeMap<String, BTreeSet<String>>;

fn help(path: &[&str]) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_drmesh")).args(path).arg("--help").output().expect("drmesh runs");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn parse_options(help: &str) -> Options {
    let mut options = Options::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let starts_option = trimmed.starts_with("--") || (trimmed.starts_with('-') && trimmed.get(2..4) == Some(", "));
        if starts_option {
            let at = trimmed.find("--").expect("a long flag");
            let flag: String = trimmed[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            options.entry(flag.clone()).or_default();
            current = Some(flag);
        }
        if let (Some(flag), Some(i)) = (&current, line.find("[possible values: ")) {
            let values = &line[i + "[possible values: ".len()..];
            let values = values.split(']').next().unwrap_or("");
            options.get_mut(flag).expect("seen").extend(values.split(", ").map(|v| v.trim().to_string()));
        }
    }
    options
}

/// Every subcommand path of the binary (`run`, `audit verify`, ...) with its options.
fn cli() -> BTreeMap<Vec<String>, Options> {
    fn commands(help: &str) -> Vec<String> {
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .filter(|c| c != "help")
            .collect()
    }
    let mut out = BTreeMap::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let Some(text) = help(&args) else { continue };
        for sub in commands(&text) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
        out.insert(path, parse_options(&text));
    }
    out
}

struct Known {
    reasons: BTreeSet<String>,
    names: BTreeSet<String>,
    alerts: BTreeSet<String>,
    targets: BTreeSet<String>,
    cli: BTreeMap<Vec<String>, Options>,
}

impl Known {
    fn load() -> Self {
        let mut names: BTreeSet<String> = NOT_REASONS.iter().map(|n| n.to_string()).collect();
        names.extend(rust_types());
        // The statuses `access-review` prints besides the reasons.
        names.extend([drmesh::cli::access_review::GRANTED, drmesh::cli::access_review::UNCONFIRMED].map(String::from));
        Self { reasons: reasons(), names, alerts: alerts(), targets: make_targets(), cli: cli() }
    }

    fn all_flags(&self) -> BTreeSet<&str> {
        self.cli.values().flat_map(|o| o.keys().map(String::as_str)).collect()
    }
}

// ---------------------------------------------------------------- the checks

/// Code: inline spans and the lines of fenced or indented blocks, with their line number
/// and whether it is an inline span.
fn code(text: &str) -> Vec<(usize, String, bool)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || line.starts_with("    ") {
            out.push((n, line.trim().to_string(), false));
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let Some(span) = parts.next() {
            out.push((n, span.to_string(), true));
            parts.next();
        }
    }
    out
}

/// Inline code spans only (backticked), with their line number and whether they sit in
/// the column of a table whose header is `reason`.
fn spans(text: &str) -> Vec<(usize, String, bool)> {
    let mut out = Vec::new();
    let mut reason_column: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let cells: Vec<&str> = if line.starts_with('|') { line.split('|').collect() } else { vec![] };
        if cells.is_empty() {
            reason_column = None;
        } else if cells.iter().any(|c| c.trim().eq_ignore_ascii_case("reason")) {
            reason_column = cells.iter().position(|c| c.trim().eq_ignore_ascii_case("reason"));
            continue;
        }
        for (i, cell) in if cells.is_empty() { vec![line] } else { cells.clone() }.into_iter().enumerate() {
            let in_reason_column = !cells.is_empty() && reason_column == Some(i);
            let mut parts = cell.split('`');
            parts.next();
            while let Some(span) = parts.next() {
                out.push((n + 1, span.to_string(), in_reason_column));
                parts.next();
            }
        }
    }
    out
}

/// `SecretNotFound`-like: two or more capitalised words run together.
fn camel_case(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && word.chars().all(|c| c.is_ascii_alphanumeric())
        && word.chars().skip(1).any(|c| c.is_ascii_uppercase())
        && word.chars().any(|c| c.is_ascii_lowercase())
}

fn check_reasons(text: &str, known: &Known) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, span, in_reason_column) in spans(text) {
        let word = span.trim();
        if word.starts_with("Drmesh") && camel_case(word) {
            if !known.alerts.contains(word) {
                problems.push(format!("line {n}: alert `{word}` is not in the chart's PrometheusRule"));
            }
            continue;
        }
        let is_reason = known.reasons.contains(word);
        if in_reason_column && word.chars().all(|c| c.is_ascii_alphanumeric()) && !word.is_empty() {
            if !is_reason {
                problems.push(format!("line {n}: `{word}` in a reason column is not a reason (reason::ALL)"));
            }
        } else if camel_case(word) && !is_reason && !known.names.contains(word) {
            problems.push(format!(
                "line {n}: `{word}` is neither a reason (reason::ALL), a Rust type of drmesh, nor a known name (tests/docs.rs NOT_REASONS)"
            ));
        }
    }
    problems
}

/// Splits a shell line into commands (at pipes, `&&`, `;`, `$(`, ` / ` between two
/// commands in prose) and words.
fn commands(line: &str) -> Vec<Vec<String>> {
    let line = line.strip_prefix("$ ").unwrap_or(line);
    let line = line.split(" #").next().unwrap_or(line);
    let mut out = Vec::new();
    let pieces = line
        .split(['|', ';', ')'])
        .flat_map(|c| c.split("&&"))
        .flat_map(|c| c.split("$("))
        .flat_map(|c| c.split(" / "));
    for command in pieces {
        let words: Vec<String> = command
            .split_whitespace()
            .map(|w| w.trim_end_matches('\\').trim_matches(|c| c == '"' || c == '\'').to_string())
            .filter(|w| !w.is_empty())
            .collect();
        // Skip VAR=value prefixes.
        let words: Vec<String> = words.into_iter().skip_while(|w| w.contains('=') && !w.starts_with('-')).collect();
        if !words.is_empty() {
            out.push(words);
        }
    }
    out
}

fn check_flags(text: &str, known: &Known) -> Vec<String> {
    let mut problems = Vec::new();
    let every_flag = known.all_flags();
    for (n, line, inline) in code(text) {
        // A span that is a flag alone (`--leader-election`, `--output json`): one of drmesh's.
        if inline && line.starts_with("--") && line.chars().nth(2).is_some_and(|c| c.is_ascii_lowercase()) {
            let flag: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            if !every_flag.contains(flag.as_str()) && !OTHER_FLAGS.contains(&flag.as_str()) {
                problems.push(format!("line {n}: `{flag}` is not a flag of any drmesh command"));
            }
        }
        // An inline span is a command only when it reads as one (not prose quoted from a message).
        let command_like = !inline || line.starts_with("drmesh ") || line.contains("| drmesh ");
        for words in commands(&line).into_iter().filter(|_| command_like) {
            let Some(at) = words.iter().position(|w| w == "drmesh" || w.ends_with("/drmesh")) else { continue };
            if at != 0 {
                continue;
            }
            // The longest subcommand path the binary has.
            let mut path: Vec<String> = vec![];
            for word in &words[1..] {
                let mut next = path.clone();
                next.push(word.clone());
                if known.cli.contains_key(&next) {
                    path = next;
                } else {
                    break;
                }
            }
            if path.is_empty() {
                if let Some(word) = words.get(1).filter(|w| !w.starts_with('-') && !w.contains(['<', '.', '/', '$'])) {
                    problems.push(format!("line {n}: `drmesh {word}` is not a drmesh command"));
                }
                continue;
            }
            let options = &known.cli[&path];
            let rest = &words[1 + path.len()..];
            for (i, word) in rest.iter().enumerate() {
                if !word.starts_with("--") || word == "--" {
                    continue;
                }
                let (flag, inline_value) = match word.split_once('=') {
                    Some((f, v)) => (f.to_string(), Some(v.to_string())),
                    None => (word.clone(), None),
                };
                let flag: String = flag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                let Some(values) = options.get(&flag) else {
                    problems.push(format!("line {n}: `drmesh {} {flag}`: no such flag", path.join(" ")));
                    continue;
                };
                let value = inline_value.or_else(|| rest.get(i + 1).cloned());
                if let Some(value) = value.filter(|_| !values.is_empty()) {
                    // Placeholders (table|csv|json, FORMAT) are not values.
                    let placeholder = value.contains(['|', '[', '<', '$']) || value.chars().all(|c| !c.is_lowercase());
                    if !placeholder && !values.contains(&value) {
                        problems.push(format!(
                            "line {n}: `drmesh {} {flag} {value}`: not one of {values:?}",
                            path.join(" ")
                        ));
                    }
                }
            }
        }
    }
    problems
}

fn check_make_targets(text: &str, known: &Known) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, line, _) in code(text) {
        for words in commands(&line) {
            if words.first().map(String::as_str) != Some("make") {
                continue;
            }
            for word in words[1..].iter().take_while(|w| !w.starts_with('#')) {
                if word.starts_with('-') || word.contains('=') {
                    continue;
                }
                if !known.targets.contains(word) {
                    problems.push(format!("line {n}: `make {word}`: no such target in the Makefile"));
                }
            }
        }
    }
    problems
}

/// GitHub's anchor of a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if !fenced && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Markdown links `[text](target)` and autolinks `<https://...>`, outside code.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || line.starts_with("    ") {
            continue;
        }
        // Code spans are not links.
        let line: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        for (i, _) in line.match_indices("](") {
            if let Some(end) = line[i + 2..].find(')') {
                out.push((n + 1, line[i + 2..i + 2 + end].trim().to_string()));
            }
        }
        for (i, _) in line.match_indices("<http") {
            if let Some(end) = line[i + 1..].find('>') {
                out.push((n + 1, line[i + 1..i + 1 + end].to_string()));
            }
        }
    }
    out
}

/// `path` with its `.` and `..` taken away, without reading the file system.
fn lexically(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn check_links(doc: &Path, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let repo = root().canonicalize().expect("repo");
    for (n, target) in links(text) {
        if let Some(rest) = target.strip_prefix("https://").or_else(|| target.strip_prefix("http://")) {
            if !UPSTREAM_HOSTS.iter().any(|h| rest == *h || rest.starts_with(&format!("{h}/"))) {
                problems.push(format!("line {n}: {target} leaves the repository for a site not listed as upstream"));
            }
            continue;
        }
        if target.contains("://") || target.starts_with("mailto:") {
            problems.push(format!("line {n}: {target}: not a repository path"));
            continue;
        }
        let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
        let file = if path.is_empty() { doc.to_path_buf() } else { doc.parent().expect("dir").join(path) };
        // Outside the repository whether or not something exists there on this machine.
        if !lexically(&file).starts_with(lexically(root())) {
            problems.push(format!("line {n}: {target}: outside the repository"));
            continue;
        }
        let Ok(resolved) = file.canonicalize() else {
            problems.push(format!("line {n}: {target}: no such file"));
            continue;
        };
        if !resolved.starts_with(&repo) {
            problems.push(format!("line {n}: {target}: outside the repository"));
            continue;
        }
        if !anchor.is_empty() && resolved.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&resolved).unwrap_or_default();
            if !anchors(&text).contains(anchor) {
                problems.push(format!("line {n}: {target}: no heading with that anchor"));
            }
        }
    }
    problems
}

fn check(doc: &Path, text: &str, known: &Known) -> Vec<String> {
    let mut problems = check_reasons(text, known);
    problems.extend(check_flags(text, known));
    problems.extend(check_make_targets(text, known));
    problems.extend(check_links(doc, text));
    problems
}

// ---------------------------------------------------------------- tests

#[test]
fn the_docs_name_only_reasons_flags_targets_and_links_that_exist() {
    let known = Known::load();
    assert!(known.reasons.contains("SecretNotFound") && known.targets.contains("test"), "what exists was read");
    assert!(known.cli.contains_key(&vec!["audit".to_string(), "verify".to_string()]), "{:?}", known.cli.keys());
    let docs = docs();
    assert!(docs.len() >= 10, "{docs:?}");
    let mut problems = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("readable doc");
        let name = doc.strip_prefix(root()).expect("in repo").display().to_string();
        problems.extend(check(doc, &text, &known).into_iter().map(|p| format!("{name}: {p}")));
    }
    assert!(problems.is_empty(), "the docs name what does not exist:\n{}", problems.join("\n"));
}

/// One planted mistake of each kind, in a doc placed in docs/: each is reported.
#[test]
fn planted_mistakes_are_caught() {
    let known = Known::load();
    let doc = root().join("docs/planted.md");
    let planted = [
        ("the source turns `Ready=False`, `SecretMissing`", "`SecretMissing` is neither a reason"),
        ("| reason | what |\n|---|---|\n| `Refused` | no |", "`Refused` in a reason column is not a reason"),
        ("    drmesh validate -f config/samples --frobnicate", "`drmesh validate --frobnicate`: no such flag"),
        ("run `drmesh access-review --output xlsx`", "not one of"),
        ("    drmesh deploy -f x", "`drmesh deploy` is not a drmesh command"),
        ("set `--leader-elect` for two replicas", "`--leader-elect` is not a flag of any drmesh command"),
        ("    make deploy-all", "`make deploy-all`: no such target"),
        ("see [the product](../../elsewhere/docs/NOTES.md)", "outside the repository"),
        ("see [the guide](guide/accesspolicy.md#no-such-section)", "no heading with that anchor"),
        ("see [the guide](guide/missing.md)", "no such file"),
        ("see [our wiki](https://wiki.example.com/drmesh)", "not listed as upstream"),
        ("the alert `DrmeshOperatorGone` fires", "not in the chart's PrometheusRule"),
    ];
    for (text, expected) in planted {
        let problems = check(&doc, text, &known);
        assert!(problems.iter().any(|p| p.contains(expected)), "{text:?} not caught ({expected}): {problems:?}");
    }
    // The same lines, right, pass.
    let right = "`Ready=False`, `SecretNotFound`\n    drmesh validate -f config/samples --strict\n    make unit\n\
                 run `drmesh access-review --output csv`\nsee [the guide](guide/accesspolicy.md#events-and-audit-records)\n\
                 the alert `DrmeshNotLeading`, see <https://kubernetes.io/docs/concepts/services-networking/network-policies/>";
    let problems = check(&doc, right, &known);
    assert!(problems.is_empty(), "{problems:?}");
}

// ---------------------------------------------------------------- the chart's own docs

fn chart() -> PathBuf {
    root().join("charts/drmesh")
}

/// The CRDs the chart ships (`crds/`), by name.
fn chart_crds() -> BTreeSet<String> {
    let mut crds = BTreeSet::new();
    for entry in std::fs::read_dir(chart().join("crds")).expect("charts/drmesh/crds").flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("readable CRD file");
        for doc in drmesh::yaml::documents(&text) {
            let doc: serde_json::Value = doc.unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
            if doc["kind"] == "CustomResourceDefinition" {
                crds.insert(doc["metadata"]["name"].as_str().expect("a CRD's name").to_string());
            }
        }
    }
    crds
}

/// The ValidatingAdmissionPolicies the chart's template renders, by their name after the
/// release's (`managed-objects`, ...), in the template's order. (Rendered by helm, the same
/// list is checked by `packaging::policies::the_install_guide_lists_exactly_the_admission_policies_the_chart_renders`.)
fn chart_admission_policies() -> Vec<String> {
    let text =
        std::fs::read_to_string(chart().join("templates/admission-policies.yaml")).expect("the policies' template");
    let lines: Vec<&str> = text.lines().collect();
    let mut policies = Vec::new();
    for (i, _) in lines.iter().enumerate().filter(|(_, l)| l.trim_end() == "kind: ValidatingAdmissionPolicy") {
        let name = lines[i + 1..]
            .iter()
            .take(3)
            .find_map(|l| l.trim_start().strip_prefix("name: {{ $fullname }}-"))
            .unwrap_or_else(|| {
                panic!("the ValidatingAdmissionPolicy at line {} has no name after the release's", i + 1)
            });
        policies.push(name.trim_end().to_string());
    }
    policies
}

/// What the chart's README and NOTES.txt leave out of the CRDs the chart ships and the
/// admission policies it renders.
fn chart_doc_gaps(readme: &str, notes: &str, crds: &BTreeSet<String>, policies: &[String]) -> Vec<String> {
    let mut gaps = Vec::new();
    for crd in crds {
        if !readme.contains(&format!("`{crd}`")) {
            gaps.push(format!("the chart's README does not name the CRD `{crd}`"));
        }
        if !notes.contains(crd.as_str()) {
            gaps.push(format!("NOTES.txt does not name the CRD {crd}"));
        }
    }
    for policy in policies {
        if !readme.contains(&format!("| `RELEASE-{policy}` |")) {
            gaps.push(format!("the admission policy table of the chart's README has no row `RELEASE-{policy}`"));
        }
        if !notes.contains(&format!("}}}}-{policy}: ")) {
            gaps.push(format!("NOTES.txt does not list the admission policy RELEASE-{policy}"));
        }
    }
    gaps
}

/// The chart's README (`helm show readme`) and NOTES.txt (what `helm install` prints) name
/// every CRD the chart ships and every admission policy it renders; a planted omission of
/// each kind is caught.
#[test]
fn the_chart_readme_and_notes_name_every_crd_and_admission_policy_the_chart_ships() {
    let crds = chart_crds();
    assert!(crds.contains("accesspolicies.drmesh.io") && crds.contains("meshpolicies.drmesh.io"), "{crds:?}");
    let policies = chart_admission_policies();
    assert!(policies.contains(&"managed-objects".to_string()) && policies.len() >= 9, "{policies:?}");
    let readme = std::fs::read_to_string(chart().join("README.md")).expect("the chart's README");
    let notes = std::fs::read_to_string(chart().join("templates/NOTES.txt")).expect("NOTES.txt");
    let gaps = chart_doc_gaps(&readme, &notes, &crds, &policies);
    assert!(gaps.is_empty(), "the chart's docs are stale:\n{}", gaps.join("\n"));
    // A CRD left out of the README, a policy left out of NOTES.txt: both caught.
    let readme_without = readme.replace("`clearances.drmesh.io`", "clearances");
    let notes_without = notes.replace("-security-officers: ", "-officers: ");
    let gaps = chart_doc_gaps(&readme_without, &notes_without, &crds, &policies);
    assert!(gaps.iter().any(|g| g.contains("README does not name the CRD `clearances.drmesh.io`")), "{gaps:?}");
    assert!(gaps.iter().any(|g| g.contains("NOTES.txt does not list the admission policy RELEASE-security-officers")));
}
