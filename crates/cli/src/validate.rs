//! `drmesh validate`: admission (schema and CEL, from the loader) plus every semantic
//! rule of the controllers, decided by the pure core on the whole mesh at once.
//!
//! A problem that depends on something the manifests do not show (an input in a domain
//! none of the manifests belongs to, a Secret of a namespace whose Secrets are not among
//! them) is a warning: the cluster may have it. Everything else the operator would
//! report as not Ready is an error.

use crate::mesh::source::SecretState;
use jiff::Timestamp;
use kube::ResourceExt;

use super::report::{Diagnostic, ObjectId, Severity};
use super::snapshot::Mesh;
use crate::api::{AccessPolicy, DataProduct, DataSource};
use crate::mesh::MeshView;
use crate::mesh::rules::{self, InputKey, Reason, subject_namespace};
use crate::mesh::source as datasource;

/// Clearances and the MeshPolicy are the security officers' manifests: a domain's
/// repository may not hold them. Without them among the inputs, a grant's people cannot
/// be settled here: a warning, not an error.
fn unsettled_offline(mesh: &Mesh, reason: Reason, d: &mut Diagnostic) {
    if reason == Reason::SubjectNotCleared && mesh.snapshot.people.is_empty() {
        d.severity = Severity::Warning;
        d.message.push_str(
            " — no Clearance manifest among the inputs: include the security officers' clearances to check it",
        );
    }
    if reason == Reason::ApprovalMissing && mesh.snapshot.mesh_policy.is_none() {
        d.severity = Severity::Warning;
        d.message.push_str(" — no MeshPolicy among the inputs: include it to check the approvals");
    }
}

/// Every semantic problem of the mesh at `now`, in object order.
pub fn semantic(mesh: &Mesh, now: Timestamp) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let view = &mesh.snapshot;
    for source in view.sources.values() {
        check_source(mesh, source, &mut out);
    }
    for product in view.products.values() {
        check_product(mesh, product, now, &mut out);
    }
    for policy in view.policies.values() {
        check_policy(mesh, policy, now, &mut out);
    }
    out
}

fn id_of<K: kube::Resource<DynamicType = ()>>(object: &K) -> ObjectId {
    ObjectId::new(&K::kind(&()), &object.namespace().unwrap_or_default(), &object.name_any())
}

fn check_source(mesh: &Mesh, source: &DataSource, out: &mut Vec<Diagnostic>) {
    let id = id_of(source);
    let origin = mesh.origin(&id);
    let namespace = id.namespace.as_str();
    let secret = &source.spec.credentials_secret_ref.name;
    // Offline, a Secret is known missing only when the inputs carry that namespace's Secrets.
    let secret_state = match mesh.snapshot.secret_state(namespace, secret) {
        Some(state) if mesh.secret_namespaces.contains(namespace) => state,
        _ => SecretState::Released,
    };
    // The problem the source's Ready condition would carry, with its field.
    let clearance = mesh.snapshot.clearance(namespace);
    if let Some((problem, _)) = datasource::source_problem(source, secret_state, clearance) {
        out.push(Diagnostic::problem(Severity::Error, &origin, &problem).on(&id));
    }
}

fn check_product(mesh: &Mesh, product: &DataProduct, now: Timestamp, out: &mut Vec<Diagnostic>) {
    let id = id_of(product);
    let origin = mesh.origin(&id);
    let plan = rules::plan_product(&mesh.snapshot, product, now);
    if let Some(blocker) = &plan.blocker
        && blocker.reason == Reason::NamespaceClearanceTooLow
    {
        let mut d = Diagnostic::problem(Severity::Error, &origin, blocker).on(&id);
        if !mesh.declared_namespaces.contains(&id.namespace) {
            d.message.push_str(&format!(
                " — no Namespace manifest for {} among the inputs: include it or pass --clearance {}=LEVEL",
                id.namespace, id.namespace
            ));
        }
        out.push(d);
    }
    for input in &plan.inputs {
        let Err(problem) = &input.outcome else {
            continue;
        };
        let unseen = match &input.input {
            InputKey::Product(key) => {
                problem.reason == Reason::InputNotFound && !mesh.known_namespaces.contains(&key.namespace)
            }
            InputKey::Source(_) => false,
        };
        let (severity, message) = if unseen {
            let note = " (its domain is not among the inputs: not checked)";
            (Severity::Warning, format!("{}{note}", problem.message))
        } else if problem.reason == Reason::InputNotReady {
            // A consequence: the input's own diagnostic is the error to fix.
            (Severity::Warning, problem.message.clone())
        } else {
            (Severity::Error, problem.message.clone())
        };
        let mut d = Diagnostic::problem(severity, &origin, problem).on(&id);
        d.message = message;
        out.push(d);
    }
}

fn check_policy(mesh: &Mesh, policy: &AccessPolicy, now: Timestamp, out: &mut Vec<Diagnostic>) {
    let id = id_of(policy);
    let origin = mesh.origin(&id);
    let plan = rules::plan_grant(&mesh.snapshot, policy, now);
    // The reason of the whole grant; after it, only what the subjects add to it.
    let mut said = None;
    if let Some(problem) = &plan.problem {
        let mut d = Diagnostic::problem(Severity::Error, &origin, problem).on(&id);
        if problem.reason == Reason::Expired {
            d.message = format!("{} (expiry in the past at {now}): the grant grants nothing", problem.message);
        }
        // A grant scheduled to start later is valid: it waits. Whatever would refuse it at
        // its start (approvals, clearances) is reported below as after its start.
        if problem.reason == Reason::NotYetValid {
            d.severity = Severity::Warning;
        }
        unsettled_offline(mesh, problem.reason, &mut d);
        out.push(d);
        if !matches!(problem.reason, Reason::NotYetValid | Reason::ApprovalMissing) {
            return;
        }
        said = Some(problem.reason);
    }
    for (subject, problem) in &plan.denied {
        if problem.reason == Reason::NotYetValid || Some(problem.reason) == said {
            continue;
        }
        let mut d = Diagnostic::problem(Severity::Error, &origin, problem).on(&id);
        if let Some(ns) = subject_namespace(subject)
            && !mesh.declared_namespaces.contains(ns)
            && !mesh.snapshot.clearances.contains_key(ns)
        {
            d.severity = Severity::Warning;
            d.message.push_str(&format!(
                " — no Namespace manifest for {ns} among the inputs (taken as Public, fail closed): include it or pass --clearance {ns}=LEVEL"
            ));
        }
        unsettled_offline(mesh, problem.reason, &mut d);
        out.push(d);
    }
    // Grants to products that no manifest declares open a path to nothing (yet).
    for (index, subject) in policy.spec.subjects.iter().enumerate() {
        if subject.kind != crate::api::SubjectKind::DataProduct {
            continue;
        }
        let (Some(ns), Some(name)) = (subject.namespace.as_deref(), subject.name.as_deref()) else {
            continue;
        };
        if mesh.known_namespaces.contains(ns) && mesh.snapshot.product(ns, name).is_none() {
            let message = format!("spec.subjects[{index}]: DataProduct {ns}/{name} is not declared in the manifests");
            out.push(
                Diagnostic::warning(&origin, Reason::SubjectNotDeclared, message)
                    .on(&id)
                    .at(format!("spec.subjects[{index}]")),
            );
        }
    }
    // Nothing refused, nothing granted (no subject, no port): the policy is not Ready.
    if plan.problem.is_none() && plan.denied.is_empty() && !plan.grants_anything() {
        out.push(Diagnostic::error(&origin, Reason::NoSubjectGranted, "nothing to grant").on(&id));
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::admission::Admission;
    use crate::snapshot::{load_path, load_texts};

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().expect("time")
    }

    #[test]
    fn the_reference_mesh_is_valid() {
        let admission = Admission::new().expect("schemas");
        let samples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/samples"));
        let mesh = load_path(samples, &admission).expect("samples");
        assert_eq!(semantic(&mesh, now()), vec![]);
        // After the grants' expiry, every grant is reported, and the picture loses its inputs.
        let later: Timestamp = "2028-01-01T00:00:00Z".parse().expect("time");
        let problems = semantic(&mesh, later);
        let expired = problems.iter().filter(|d| d.rule == Reason::Expired).count();
        assert_eq!(expired, 6, "{problems:#?}");
        assert!(
            problems.iter().any(|d| d.rule == Reason::InputNotGranted && d.field.as_deref() == Some("spec.inputs[0]"))
        );
    }

    #[test]
    fn semantic_problems_name_object_and_field() {
        let admission = Admission::new().expect("schemas");
        let text = r#"
apiVersion: v1
kind: Namespace
metadata: {name: sdis, labels: {drmesh.io/clearance: Restricted}}
---
apiVersion: v1
kind: Secret
metadata: {name: other, namespace: sdis}
---
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {name: reports, namespace: sdis}
spec:
  classification: Restricted
  type: Sftp
  endpoint: {host: sftp.sdis.example, port: 22}
  credentialsSecretRef: {name: reports-credentials}
---
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {name: ops, namespace: sdis}
spec:
  classification: Internal
  inputs: [{dataSource: reports}, {dataProduct: {namespace: elsewhere, name: x}}]
  runtime: {image: registry.example/ops:1.0}
  outputPorts: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {name: ops-grant, namespace: sdis}
spec:
  dataProduct: ops
  subjects: [{kind: Group, name: g}]
  expiresAt: "2020-01-01T00:00:00Z"
"#;
        let mesh = load_texts(&[(PathBuf::from("m.yaml"), text.into())], "default", &[], &admission);
        assert_eq!(mesh.diagnostics, vec![]);
        let got: Vec<(String, Severity, Option<String>)> =
            semantic(&mesh, now()).into_iter().map(|d| (d.rule, d.severity, d.field)).collect();
        let want = |rule: Reason, severity, field: &str| (rule.to_string(), severity, Some(field.to_string()));
        assert_eq!(
            got,
            vec![
                want(Reason::SecretNotFound, Severity::Error, "spec.credentialsSecretRef"),
                want(Reason::ClassificationViolation, Severity::Error, "spec.inputs[0]"),
                want(Reason::InputNotFound, Severity::Warning, "spec.inputs[1]"),
                want(Reason::Expired, Severity::Error, "spec.expiresAt"),
            ]
        );
    }
}
