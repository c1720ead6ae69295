//! GitOps health: the Argo CD Lua health check (run with a real Lua interpreter) and
//! Flux's kstatus give the fixtures in config/gitops/testdata/health.yaml their status.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::{ok, repo, tool, with_stdin};

/// A Lua table constructor for a JSON value.
fn lua_literal(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\{}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            format!(
                "{{{}}}",
                map.iter()
                    .map(|(k, v)| format!("[{}] = {}", lua_literal(&json!(k)), lua_literal(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// Runs an Argo CD health script on `object` with Lua 5.4: (status, message).
fn argocd_health(lua: &Path, script: &Path, object: &Value) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runner = dir.path().join("run.lua");
    let body = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(hs.status, \"\\t\", hs.message or \"\", \"\\n\")\n",
        lua_literal(object),
        lua_literal(&json!(script.to_string_lossy()))
    );
    std::fs::write(&runner, body).expect("write runner");
    let out = ok(&format!("lua {}", script.display()), Command::new(lua).arg(&runner).output().expect("run lua"));
    let (status, message) = out.trim_end().split_once('\t').unwrap_or((out.trim_end(), ""));
    (status.to_string(), message.to_string())
}

#[derive(serde::Deserialize)]
struct HealthCase {
    name: String,
    argocd: String,
    kstatus: String,
    object: Value,
}

fn health_cases() -> Vec<HealthCase> {
    let text = std::fs::read_to_string(repo().join("config/gitops/testdata/health.yaml")).expect("health fixtures");
    let cases: Vec<HealthCase> = drmesh::yaml::from_str(&text).expect("health fixtures parse");
    for status in ["Healthy", "Progressing", "Degraded"] {
        assert!(cases.iter().any(|c| c.argocd == status), "no fixture is {status}");
    }
    cases
}

#[test]
fn the_argo_cd_health_check_gives_each_sample_its_status() {
    let lua = PathBuf::from(
        ok(
            "tools.sh lua",
            Command::new(repo().join("tests/e2e/packaging/tools.sh")).arg("lua").output().expect("tools.sh"),
        )
        .trim(),
    );
    let gitops = repo().join("config/gitops/argocd");
    let cm: Value = drmesh::yaml::from_str(&std::fs::read_to_string(gitops.join("argocd-cm.yaml")).expect("argocd-cm"))
        .expect("argocd-cm parses");
    let mut failures = Vec::new();
    let cases = health_cases();
    for kind in ["DataSource", "DataProduct", "AccessPolicy"] {
        let script = gitops.join(format!("resource_customizations/drmesh.io/{kind}/health.lua"));
        let text = std::fs::read_to_string(&script).expect("health.lua");
        // The argocd-cm snippet carries the very same script.
        let key = format!("resource.customizations.health.drmesh.io_{kind}");
        assert_eq!(
            cm["data"][&key].as_str().map(str::trim),
            Some(text.trim()),
            "{key} in argocd-cm.yaml differs from {}",
            script.display()
        );
        for case in cases.iter().filter(|c| c.object["kind"] == kind) {
            let (status, message) = argocd_health(&lua, &script, &case.object);
            if status != case.argocd || message.is_empty() {
                failures.push(format!("{}: {status} ({message}), expected {}", case.name, case.argocd));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// kstatus (Flux's library) on objects: (kind/name, status) in input order.
pub fn kstatus(objects: &[Value]) -> Vec<(String, String)> {
    let input: String = objects.iter().map(|o| format!("{o}\n")).collect();
    let out = ok("kstatus", with_stdin(Command::new(tool("kstatus")).arg("-json"), &input));
    out.lines()
        .map(|l| {
            let r: Value = serde_json::from_str(l).expect("kstatus json");
            (
                format!("{}/{}", r["kind"].as_str().unwrap_or_default(), r["name"].as_str().unwrap_or_default()),
                r["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn kstatus_agrees_with_the_conditions_drmesh_writes() {
    let cases = health_cases();
    let objects: Vec<Value> = cases.iter().map(|c| c.object.clone()).collect();
    let computed = kstatus(&objects);
    assert_eq!(computed.len(), cases.len());
    let failures: Vec<String> = cases
        .iter()
        .zip(&computed)
        .filter(|(case, (_, status))| *status != case.kstatus)
        .map(|(case, (_, status))| format!("{}: kstatus {status}, expected {}", case.name, case.kstatus))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Where the operator's conditions are complete, Argo CD and Flux agree.
    for case in cases.iter().filter(|c| c.object.pointer("/status").is_some()) {
        let expected = match case.argocd.as_str() {
            "Healthy" => "Current",
            "Degraded" => "Failed",
            _ => "InProgress",
        };
        assert_eq!(case.kstatus, expected, "{}: Argo CD and Flux disagree", case.name);
    }
}
