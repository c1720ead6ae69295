//! The CRDs' CEL rules, evaluated offline with kube-cel (`validate_cel`), on good and
//! bad fragments. The same rules run in the API server (tests/e2e/admission.rs).

use kube::core::cel::{ErrorKind, ValidationErrors};
use serde_json::{Value, json};

use super::*;

/// Asserts that validation failed because a rule evaluated to false (not because a rule
/// failed to compile or evaluate) and that a message names `field`.
#[track_caller]
fn assert_rejected(result: Result<(), ValidationErrors>, field: &str) {
    let errors = match result {
        Ok(()) => panic!("expected a failure naming {field:?}, got Ok"),
        Err(errors) => errors,
    };
    for error in errors.iter() {
        assert_eq!(error.kind, ErrorKind::ValidationFailure, "rule did not evaluate cleanly: {error}");
    }
    assert!(errors.iter().any(|e| e.message.contains(field)), "no message names {field:?}: {errors}");
}

#[track_caller]
fn assert_accepted(result: Result<(), ValidationErrors>) {
    if let Err(errors) = result {
        panic!("expected acceptance, got {errors}");
    }
}

fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    let value = json!({
        "apiVersion": API_VERSION, "kind": kind,
        "metadata": {"name": name, "namespace": "police"},
        "spec": spec,
    });
    serde_json::from_value(value).unwrap_or_else(|e| panic!("fixture {kind} {name}: {e}"))
}

fn product_spec() -> Value {
    json!({
        "classification": "Restricted",
        "inputs": [{"dataSource": "incident-db"}, {"dataProduct": {"namespace": "sante", "name": "hospital-capacity"}, "ports": ["http"]}],
        "runtime": {"image": "registry.example/drmesh/incident-feed:1.0"},
        "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}, {"name": "grpc", "port": 9090, "protocol": "GRPC"}],
    })
}

fn product_with(classification: &str) -> DataProduct {
    let mut spec = product_spec();
    spec["classification"] = json!(classification);
    object("DataProduct", "incident-feed", spec)
}

fn source_spec() -> Value {
    json!({
        "classification": "Restricted", "type": "Postgres",
        "endpoint": {"host": "incident-db.police.example", "cidr": "10.20.0.0/24", "port": 5432},
        "credentialsSecretRef": {"name": "incident-db-credentials"},
    })
}

fn policy(data_product: &str, subjects: Value) -> AccessPolicy {
    object(
        "AccessPolicy",
        "grant",
        json!({"dataProduct": data_product, "subjects": subjects, "purpose": "national situation picture", "expiresAt": "2027-12-31T23:59:59Z"}),
    )
}

#[test]
fn good_objects_pass_every_rule() {
    assert_accepted(product_with("Restricted").validate_cel());
    assert_accepted(object::<DataSource>("DataSource", "incident-db", source_spec()).validate_cel());
    let subjects = json!([
        {"kind": "Group", "name": "cnc-officers"},
        {"kind": "User", "name": "alice@example.org"},
        {"kind": "ServiceAccount", "namespace": "cnc", "name": "briefing.bot"},
        {"kind": "DataProduct", "namespace": "cnc", "name": "situation-picture"},
        {"kind": "Namespace", "name": "transport", "podSelector": {"matchLabels": {"app": "dashboard"}}},
    ]);
    assert_accepted(policy("incident-feed", subjects).validate_cel());
}

#[test]
fn an_input_names_exactly_one_thing() {
    let both = json!({"dataSource": "incident-db", "dataProduct": {"namespace": "sante", "name": "hospital-capacity"}});
    assert_rejected(DataProductInput::validate_cel(&both, None), "spec.inputs[] must set exactly one");
    assert_rejected(DataProductInput::validate_cel(&json!({}), None), "spec.inputs[] must set exactly one");
    let ports_on_source = json!({"dataSource": "incident-db", "ports": ["http"]});
    assert_rejected(DataProductInput::validate_cel(&ports_on_source, None), "spec.inputs[].ports");
    assert_accepted(DataProductInput::validate_cel(&json!({"dataSource": "incident-db"}), None));

    // The same rule reached through the whole object.
    let mut spec = product_spec();
    spec["inputs"] = json!([{}]);
    assert_rejected(object::<DataProduct>("DataProduct", "p", spec).validate_cel(), "spec.inputs[]");
}

#[test]
fn output_port_names_and_numbers_are_unique() {
    let mut spec = product_spec();
    spec["outputPorts"] =
        json!([{"name": "http", "port": 8080, "protocol": "HTTP"}, {"name": "http", "port": 8081, "protocol": "HTTP"}]);
    assert_rejected(object::<DataProduct>("DataProduct", "p", spec.clone()).validate_cel(), "spec.outputPorts[].name");
    spec["outputPorts"] =
        json!([{"name": "http", "port": 8080, "protocol": "HTTP"}, {"name": "api", "port": 8080, "protocol": "HTTP"}]);
    assert_rejected(object::<DataProduct>("DataProduct", "p", spec).validate_cel(), "spec.outputPorts[].port");
}

#[test]
fn product_names_are_dns1035_labels() {
    // Valid object names for the API server, but not as a Service name.
    assert_rejected(object::<DataProduct>("DataProduct", "1feed", product_spec()).validate_cel(), "metadata.name");
    assert_rejected(object::<DataProduct>("DataProduct", "feed.v2", product_spec()).validate_cel(), "metadata.name");
    let long = "f".repeat(64);
    assert_rejected(object::<DataProduct>("DataProduct", &long, product_spec()).validate_cel(), "metadata.name");
}

#[test]
fn classification_can_be_raised_but_never_lowered() {
    let ladder = ["Public", "Internal", "Restricted"];
    for (i, old) in ladder.iter().enumerate() {
        for (j, new) in ladder.iter().enumerate() {
            let result = product_with(new).validate_cel_update(&product_with(old));
            if j < i {
                assert_rejected(result, "spec.classification cannot be lowered");
            } else {
                assert_accepted(result);
            }
        }
    }
    let mut lowered = source_spec();
    lowered["classification"] = json!("Public");
    let old: DataSource = object("DataSource", "s", source_spec());
    let new: DataSource = object("DataSource", "s", lowered);
    assert_rejected(new.validate_cel_update(&old), "spec.classification cannot be lowered");
    assert_accepted(old.validate_cel_update(&new));
}

#[test]
fn an_endpoint_needs_a_host_or_a_cidr_and_both_are_checked() {
    assert_rejected(Endpoint::validate_cel(&json!({"port": 5432}), None), "spec.endpoint must set host");
    assert_accepted(Endpoint::validate_cel(&json!({"cidr": "10.0.0.0/8", "port": 5432}), None));
    assert_accepted(Endpoint::validate_cel(&json!({"host": "10.0.0.7", "port": 5432}), None));
    assert_accepted(Endpoint::validate_cel(&json!({"host": "2001:db8::7", "port": 5432}), None));
    assert_rejected(Endpoint::validate_cel(&json!({"host": "Bad_Host", "port": 1}), None), "spec.endpoint.host");
    assert_rejected(Endpoint::validate_cel(&json!({"cidr": "10.0.0.0/33", "port": 1}), None), "spec.endpoint.cidr");
    assert_rejected(Endpoint::validate_cel(&json!({"cidr": "10.0.0.1", "port": 1}), None), "spec.endpoint.cidr");
}

#[test]
fn subjects_carry_the_fields_their_kind_needs() {
    let check = |subject: Value| Subject::validate_cel(&subject, None);
    assert_rejected(check(json!({"kind": "Group"})), "spec.subjects[].name is required");
    assert_rejected(check(json!({"kind": "ServiceAccount", "name": "bot"})), "spec.subjects[].namespace");
    assert_rejected(check(json!({"kind": "DataProduct", "name": "situation-picture"})), "spec.subjects[].namespace");
    assert_rejected(check(json!({"kind": "User", "namespace": "cnc", "name": "alice"})), "spec.subjects[].namespace");
    assert_rejected(
        check(json!({"kind": "Namespace", "namespace": "cnc", "name": "cnc"})),
        "spec.subjects[].namespace",
    );
    assert_rejected(
        check(json!({"kind": "Group", "name": "cnc-officers", "podSelector": {"matchLabels": {"a": "b"}}})),
        "spec.subjects[].podSelector",
    );
    assert_rejected(check(json!({"kind": "Namespace", "name": "Not_A_Namespace"})), "spec.subjects[].name");
    assert_rejected(
        check(json!({"kind": "DataProduct", "namespace": "cnc", "name": "9picture"})),
        "spec.subjects[].name",
    );
    assert_rejected(
        check(json!({"kind": "ServiceAccount", "namespace": "cnc", "name": "Bot"})),
        "spec.subjects[].name",
    );
    assert_rejected(check(json!({"kind": "Group", "name": "system:authenticated"})), "spec.subjects[].name");
    assert_rejected(check(json!({"kind": "User", "name": "system:admin"})), "spec.subjects[].name");
    assert_accepted(check(json!({"kind": "Namespace", "name": "transport"})));
}

#[test]
fn subjects_are_unique() {
    let twice = json!([{"kind": "Group", "name": "cnc-officers"}, {"kind": "Group", "name": "cnc-officers"}]);
    assert_rejected(policy("incident-feed", twice).validate_cel(), "spec.subjects must not name the same subject");
    let distinct = json!([{"kind": "Group", "name": "cnc-officers"}, {"kind": "User", "name": "cnc-officers"}]);
    assert_accepted(policy("incident-feed", distinct).validate_cel());
    let product = |ns: &str| json!({"kind": "DataProduct", "namespace": ns, "name": "situation-picture"});
    assert_accepted(policy("incident-feed", json!([product("cnc"), product("sdis")])).validate_cel());
    assert_rejected(policy("incident-feed", json!([product("cnc"), product("cnc")])).validate_cel(), "spec.subjects");
}

#[test]
fn a_grant_cannot_be_moved_to_another_product() {
    let subjects = json!([{"kind": "Group", "name": "cnc-officers"}]);
    let old = policy("incident-feed", subjects.clone());
    let moved = policy("crowd-density", subjects.clone());
    assert_rejected(moved.validate_cel_update(&old), "spec.dataProduct is immutable");
    let mut extended = old.clone();
    extended.spec.subjects.push(Subject::named(SubjectKind::Group, "cnc-analysts"));
    assert_accepted(extended.validate_cel_update(&old));
}

#[test]
fn crds_have_the_agreed_names_and_columns() {
    let crds = crds();
    let names: Vec<&str> = crds.iter().map(|c| c.metadata.name.as_deref().unwrap_or("")).collect();
    assert_eq!(
        names,
        [
            "datasources.drmesh.io",
            "dataproducts.drmesh.io",
            "accesspolicies.drmesh.io",
            "clearances.drmesh.io",
            "meshpolicies.drmesh.io"
        ]
    );
    // The security officers' kinds: cluster-scoped, no status written by the operator.
    for (crd, short) in crds[3..].iter().zip(["clr", ""]) {
        assert_eq!((crd.spec.group.as_str(), crd.spec.scope.as_str()), (GROUP, "Cluster"));
        let short_names = crd.spec.names.short_names.clone().unwrap_or_default();
        assert_eq!(short_names.first().map(String::as_str).unwrap_or(""), short);
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["drmesh".to_string()][..]));
    }
    for (crd, short) in crds.iter().zip(["ds", "dp", "ap"]) {
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        let short_names = crd.spec.names.short_names.clone().unwrap_or_default();
        assert_eq!(short_names.first().map(String::as_str), Some(short));
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["drmesh".to_string()][..]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, VERSION);
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert!(columns.contains(&"Ready") && columns.last() == Some(&"Age"), "{columns:?}");
        assert!(columns.contains(&"Reason") && columns.contains(&"Message"), "{columns:?}");
    }
    let yaml = crds_yaml();
    assert_eq!(yaml.matches("\n---\n").count() + usize::from(yaml.starts_with("---")), 5);
}

#[test]
fn every_rule_message_names_a_field() {
    // Walks the generated schemas: each x-kubernetes-validations message starts with a
    // field path, so the API server's answer always tells the user what to fix.
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                    found.extend(rules.iter().map(|r| r["message"].as_str().unwrap_or("").to_string()));
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut messages = Vec::new();
    for crd in crds() {
        walk(&serde_json::to_value(&crd.spec.versions[0].schema).unwrap_or_default(), &mut messages);
    }
    assert!(messages.len() >= 15, "{messages:?}");
    for message in messages {
        assert!(
            message.starts_with("spec.") || message.starts_with("metadata."),
            "message does not name a field: {message:?}"
        );
    }
}
