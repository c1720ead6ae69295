//! What the API server would refuse at admission, checked offline: object names, the
//! CRDs' OpenAPI schema (types, enums, bounds, patterns, required and unknown fields,
//! date-times) with `jsonschema`, then their CEL rules with kube's CEL evaluator.
//!
//! As in the API server, CEL rules run only on objects that pass the schema: a rule
//! evaluated on ill-typed data would only add noise.

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use kube::core::cel::{CompiledSchema, ErrorKind, Validator as CelValidator, compile_schema};
use serde_json::{Value, json};

use crate::api;

/// A rule the object breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The field, as the API server names it (`spec.outputPorts[0].port`); empty for the object.
    pub field: String,
    /// `metadata`, `schema` or `cel`.
    pub rule: &'static str,
    pub message: String,
}

impl Violation {
    fn new(field: impl Into<String>, rule: &'static str, message: impl Into<String>) -> Self {
        Self { field: field.into(), rule, message: message.into() }
    }
}

/// The schema could not be prepared (a bug in the generated CRDs, not in the input).
#[derive(Debug, thiserror::Error)]
#[error("the CRD schema of {kind} cannot be compiled: {message}")]
pub struct SchemaError {
    pub kind: String,
    pub message: String,
}

struct KindRules {
    kind: String,
    schema: jsonschema::Validator,
    cel: CompiledSchema,
}

/// The admission checks of the three drmesh kinds, compiled once.
pub struct Admission {
    kinds: Vec<KindRules>,
    cel: CelValidator,
}

/// Top-level fields of a custom resource.
const TOP_LEVEL: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

impl Admission {
    pub fn new() -> Result<Self, SchemaError> {
        let mut kinds = Vec::new();
        for crd in api::crds() {
            let kind = crd.spec.names.kind.clone();
            let schema = crd
                .spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .map(serde_json::to_value)
                .transpose()
                .map_err(|e| SchemaError { kind: kind.clone(), message: e.to_string() })?
                .ok_or_else(|| SchemaError { kind: kind.clone(), message: "no openAPIV3Schema".into() })?;
            let mut structural = schema.clone();
            as_json_schema(&mut structural, true);
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&structural)
                .map_err(|e| SchemaError { kind: kind.clone(), message: e.to_string() })?;
            kinds.push(KindRules { kind, schema: validator, cel: compile_schema(&schema) });
        }
        Ok(Self { kinds, cel: CelValidator::new() })
    }

    /// Whether `kind` is a drmesh kind this checks.
    pub fn knows(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| k.kind == kind)
    }

    /// Everything the API server would refuse when creating `object` (empty: accepted).
    pub fn check(&self, kind: &str, object: &Value) -> Vec<Violation> {
        let Some(rules) = self.kinds.iter().find(|k| k.kind == kind) else {
            return vec![Violation::new("kind", "schema", format!("unknown drmesh kind {kind:?}"))];
        };
        let mut violations = metadata(object);
        if let Some(map) = object.as_object() {
            for key in map.keys().filter(|k| !TOP_LEVEL.contains(&k.as_str())) {
                violations.push(Violation::new(key.clone(), "schema", format!("unknown field {key:?}")));
            }
        }
        let schema_errors = rules.schema.iter_errors(object).map(|e| {
            let mut field = k8s_path(e.instance_path().segments());
            let message = match e.kind() {
                ValidationErrorKind::Required { property } => {
                    let property = property.as_str().map(str::to_string).unwrap_or_else(|| property.to_string());
                    field = join(&field, &property);
                    "Required value".to_string()
                }
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let names: Vec<String> = unexpected.iter().map(|u| format!("{u:?}")).collect();
                    format!("unknown field(s) {}", names.join(", "))
                }
                _ => e.to_string(),
            };
            Violation::new(field, "schema", message)
        });
        violations.extend(schema_errors);
        if violations.is_empty() {
            violations.extend(self.cel_errors(rules, object, None));
        }
        violations
    }

    /// The transition rules (those using `oldSelf`) that updating `old` to `new` breaks.
    pub fn check_update(&self, kind: &str, new: &Value, old: &Value) -> Vec<Violation> {
        let Some(rules) = self.kinds.iter().find(|k| k.kind == kind) else {
            return vec![];
        };
        self.cel_errors(rules, new, Some(old))
            .into_iter()
            .filter(|v| v.message.contains("oldSelf") || v.rule == "cel-transition")
            .collect()
    }

    fn cel_errors(&self, rules: &KindRules, object: &Value, old: Option<&Value>) -> Vec<Violation> {
        match self.cel.validate_compiled(&rules.cel, object, old) {
            Ok(()) => vec![],
            Err(errors) => errors
                .iter()
                .map(|e| {
                    let transition = e.rule.contains("oldSelf");
                    let rule = if transition { "cel-transition" } else { "cel" };
                    let message = match e.kind {
                        ErrorKind::ValidationFailure => e.message.clone(),
                        _ => format!("rule {:?} cannot be evaluated offline: {}", e.rule, e.message),
                    };
                    Violation::new(e.field_path.clone(), rule, message)
                })
                .collect(),
        }
    }
}

fn join(path: &str, property: &str) -> String {
    if path.is_empty() { property.to_string() } else { format!("{path}.{property}") }
}

/// `/spec/outputPorts/0/port` -> `spec.outputPorts[0].port`.
fn k8s_path<'a>(segments: impl Iterator<Item = LocationSegment<'a>>) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            LocationSegment::Property(p) => out = join(&out, &p),
            LocationSegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Turns a CRD's structural schema into plain JSON Schema with the API server's meaning:
/// `nullable` admits null, int-or-string admits both, and objects with declared
/// properties refuse unknown fields (kubectl's default strict field validation). The
/// root is left open: apiVersion, kind and metadata are not in the CRD schema.
fn as_json_schema(schema: &mut Value, root: bool) {
    let Value::Object(map) = schema else { return };
    if map.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = map.get("type").cloned() {
            map.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(values)) = map.get_mut("enum") {
            values.push(Value::Null);
        }
    }
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) && !map.contains_key("type") {
        map.insert("type".into(), json!(["integer", "string"]));
    }
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !root && !preserve && map.contains_key("properties") && !map.contains_key("additionalProperties") {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(|p| as_json_schema(p, false));
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = map.get_mut(key) {
            as_json_schema(sub, false);
        }
    }
}

/// Whether `s` is a DNS-1123 label: lowercase alphanumerics and '-', alphanumeric at both
/// ends, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| ok(c) || c == '-')
        && s.chars().next().is_some_and(ok)
        && s.chars().last().is_some_and(ok)
}

/// Whether `s` is a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Name and namespace, as the API server checks them for every custom resource.
fn metadata(object: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    match object.pointer("/metadata") {
        Some(Value::Object(_)) => {}
        Some(_) => {
            return vec![Violation::new("metadata", "metadata", "metadata must be an object")];
        }
        None => {
            return vec![Violation::new("metadata.name", "metadata", "Required value: name is required")];
        }
    }
    match object.pointer("/metadata/name") {
        None | Some(Value::Null) => out.push(Violation::new("metadata.name", "metadata", "Required value: name is required")),
        Some(Value::String(name)) if is_dns_subdomain(name) => {}
        Some(name) => out.push(Violation::new(
            "metadata.name",
            "metadata",
            format!("Invalid value {name}: a lowercase RFC 1123 subdomain must consist of lowercase alphanumerics, '-' or '.'"),
        )),
    }
    match object.pointer("/metadata/namespace") {
        None | Some(Value::Null) => {}
        Some(Value::String(ns)) if is_dns_label(ns) => {}
        Some(ns) => out.push(Violation::new(
            "metadata.namespace",
            "metadata",
            format!("Invalid value {ns}: a namespace must be a lowercase RFC 1123 label"),
        )),
    }
    if let Some(labels) = object.pointer("/metadata/labels") {
        let strings = labels.as_object().is_some_and(|m| m.values().all(Value::is_string));
        if !strings {
            out.push(Violation::new("metadata.labels", "metadata", "labels must be a map of strings"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Value {
        json!({
            "apiVersion": "drmesh.io/v1alpha1", "kind": "DataSource",
            "metadata": {"name": "incident-db", "namespace": "police"},
            "spec": {
                "classification": "Restricted", "type": "Postgres",
                "endpoint": {"host": "incident-db.police.example", "cidr": "10.20.1.0/24", "port": 5432},
                "credentialsSecretRef": {"name": "incident-db-credentials"},
            }
        })
    }

    fn fields(violations: &[Violation]) -> Vec<(&str, &str)> {
        violations.iter().map(|v| (v.field.as_str(), v.rule)).collect()
    }

    #[test]
    fn accepts_a_valid_source() {
        let admission = Admission::new().expect("schemas compile");
        assert_eq!(admission.check("DataSource", &source()), vec![]);
    }

    #[test]
    fn names_the_field_of_schema_errors() {
        let admission = Admission::new().expect("schemas compile");
        let mut bad = source();
        bad["spec"]["endpoint"]["port"] = json!(70000);
        bad["spec"]["type"] = json!("Mongo");
        bad["spec"]["colour"] = json!("blue");
        bad["spec"].as_object_mut().map(|s| s.remove("credentialsSecretRef"));
        let violations = admission.check("DataSource", &bad);
        let mut got = fields(&violations);
        got.sort();
        assert_eq!(
            got,
            [
                ("spec", "schema"),
                ("spec.credentialsSecretRef", "schema"),
                ("spec.endpoint.port", "schema"),
                ("spec.type", "schema")
            ],
            "{violations:?}"
        );
        assert!(violations.iter().any(|v| v.message == "Required value"));
        assert!(violations.iter().any(|v| v.message.contains("\"colour\"")));
    }

    #[test]
    fn runs_cel_rules_once_the_schema_passes() {
        let admission = Admission::new().expect("schemas compile");
        let mut bad = source();
        bad["spec"]["endpoint"] = json!({"port": 5432});
        let violations = admission.check("DataSource", &bad);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].rule, "cel");
        assert!(violations[0].message.contains("must set host, cidr, or both"), "{violations:?}");
    }

    #[test]
    fn nullable_fields_accept_null_and_dates_are_checked() {
        let admission = Admission::new().expect("schemas compile");
        let mut ok = source();
        ok["spec"]["description"] = Value::Null;
        assert_eq!(admission.check("DataSource", &ok), vec![]);
        let policy = json!({
            "apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": "g", "namespace": "police"},
            "spec": {"dataProduct": "feed", "subjects": [{"kind": "Group", "name": "cnc"}], "expiresAt": "next tuesday"}
        });
        assert_eq!(fields(&admission.check("AccessPolicy", &policy)), [("spec.expiresAt", "schema")]);
    }

    #[test]
    fn transition_rules_forbid_declassification() {
        let admission = Admission::new().expect("schemas compile");
        let mut lowered = source();
        lowered["spec"]["classification"] = json!("Internal");
        let violations = admission.check_update("DataSource", &lowered, &source());
        assert_eq!(fields(&violations), [("spec.classification", "cel-transition")]);
        assert_eq!(admission.check_update("DataSource", &source(), &lowered), vec![]);
    }

    #[test]
    fn checks_names_like_the_api_server() {
        let admission = Admission::new().expect("schemas compile");
        let mut bad = source();
        bad["metadata"] = json!({"name": "Incident_DB", "namespace": "Police"});
        assert_eq!(
            fields(&admission.check("DataSource", &bad)),
            [("metadata.name", "metadata"), ("metadata.namespace", "metadata")]
        );
        assert!(is_dns_subdomain("a.b-c") && !is_dns_subdomain("a..b") && !is_dns_label("-a") && !is_dns_label(""));
    }
}
