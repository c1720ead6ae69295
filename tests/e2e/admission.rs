//! Admission validation by the real API server: the generated CRDs install, every
//! sample is accepted, every invalid shape in the table is rejected with a message that
//! names the offending field, and the transition rules hold on real updates.
//!
//! No operator is needed: only the API server answers.

use std::collections::BTreeMap;
use std::time::Duration;

use drmesh::api::{AccessPolicy, DataProduct, DataSource};
use drmesh::manifest::load_documents;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams, ValidationDirective};
use kube::{Client, Resource};
use serde_json::{Value, json};

use crate::harness::{self, TIMEOUT, TestNamespace};

/// How long a freshly updated CRD schema may take to be served (the API server swaps
/// its validators shortly after the CRD update; retrying hides nothing else).
const SCHEMA_PROPAGATION: Duration = Duration::from_secs(10);

fn established(crd: Option<&CustomResourceDefinition>) -> bool {
    crd.and_then(|c| c.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
}

/// Server-side applies the generated CRDs and waits until they are Established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("drmesh-crds").force();
    for crd in drmesh::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        harness::wait_for(&crds, &name, TIMEOUT, established).await;
    }
}

fn resource_of(kind: &str) -> ApiResource {
    match kind {
        "DataSource" => ApiResource::erase::<DataSource>(&()),
        "DataProduct" => ApiResource::erase::<DataProduct>(&()),
        "AccessPolicy" => ApiResource::erase::<AccessPolicy>(&()),
        "Clearance" => ApiResource::erase::<drmesh::api::Clearance>(&()),
        "MeshPolicy" => ApiResource::erase::<drmesh::api::MeshPolicy>(&()),
        "Secret" => ApiResource::erase::<Secret>(&()),
        "Namespace" => ApiResource::erase::<Namespace>(&()),
        other => panic!("no ApiResource for kind {other} in this test"),
    }
}

/// Creates `object` in `namespace` with a server dry run: admission runs, nothing is stored.
async fn dry_run_create(client: &Client, namespace: &str, object: &Value) -> Result<(), kube::Error> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource_of(kind));
    let object: DynamicObject = serde_json::from_value(object.clone()).expect("fixture is an object");
    api.create(&PostParams { dry_run: true, ..Default::default() }, &object).await.map(drop)
}

/// Retries `attempt` until `done` holds or the schema propagation delay has passed;
/// returns the last outcome.
async fn settle<T, F, Fut>(mut attempt: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + SCHEMA_PROPAGATION;
    loop {
        let outcome = attempt().await;
        if done(&outcome) || tokio::time::Instant::now() >= deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The API server's message if it refused the request as Invalid (422).
fn invalid_message<T: std::fmt::Debug>(result: &Result<T, kube::Error>) -> Option<&str> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 422 => Some(status.message.as_str()),
        _ => None,
    }
}

#[tokio::test]
async fn crds_install_and_every_sample_is_accepted() {
    let ns = TestNamespace::create("admission-samples").await;
    install_crds(&ns.client).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut documents = load_documents(&root.join("config/samples")).expect("samples load");
    // And their DataSources' dummy credentials, kept apart (no GitOps example syncs them).
    documents.extend(load_documents(&root.join("config/sample-credentials")).expect("credentials load"));
    assert!(documents.len() >= 20, "only {} sample documents", documents.len());
    // Strict field validation: an unknown or misspelt field is an error, not a warning.
    let params = PatchParams {
        dry_run: true,
        field_validation: Some(ValidationDirective::Strict),
        ..PatchParams::apply("drmesh-e2e")
    };
    for doc in &documents {
        let mut object = doc.value.clone();
        let resource = resource_of(doc.kind());
        // Namespaced samples go to the test namespace: admission does not resolve references.
        let api: Api<DynamicObject> = if matches!(doc.kind(), "Namespace" | "Clearance" | "MeshPolicy") {
            Api::all_with(ns.client.clone(), &resource)
        } else {
            object["metadata"]["namespace"] = json!(ns.name);
            Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
        };
        let patch = Patch::Apply(&object);
        // Cluster-scoped samples are shared with the tests beside this one (other field
        // managers own them): a forced dry run still checks every field.
        let cluster_wide = matches!(doc.kind(), "Clearance" | "MeshPolicy");
        let params = PatchParams { force: cluster_wide, ..params.clone() };
        let result = settle(|| api.patch(doc.name(), &params, &patch), |r| r.is_ok()).await;
        if let Err(e) = result {
            panic!("{} was rejected: {e}", doc.describe());
        }
    }
}

/// The table of invalid manifests and the valid bases they derive from.
#[derive(serde::Deserialize)]
struct Fixture {
    bases: BTreeMap<String, Value>,
    cases: Vec<InvalidCase>,
}

#[derive(serde::Deserialize)]
struct InvalidCase {
    name: String,
    base: String,
    #[serde(default)]
    set: BTreeMap<String, Value>,
    #[serde(default)]
    unset: Vec<String>,
    expect: Vec<String>,
}

fn fixture() -> Fixture {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/fixtures/invalid-manifests.yaml");
    let text = std::fs::read_to_string(&path).expect("read the invalid-manifests fixture");
    drmesh::yaml::from_str(&text).expect("parse the invalid-manifests fixture")
}

fn base(name: &str) -> Value {
    fixture().bases.remove(name).unwrap_or_else(|| panic!("no base {name} in the fixture"))
}

/// Sets (`Some`) or removes (`None`) the value at a JSON pointer.
fn edit(object: &mut Value, pointer: &str, value: Option<&Value>) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let parent = object.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent} in the base"));
    match (parent, value) {
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_string(), v.clone());
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Array(items), Some(v)) => items[key.parse::<usize>().expect("index")] = v.clone(),
        (Value::Array(items), None) => {
            items.remove(key.parse::<usize>().expect("index"));
        }
        (other, _) => panic!("cannot edit {pointer} in {other}"),
    }
}

/// The fixture's cases as (name, object, expected texts), plus those YAML writes badly.
fn invalid_cases(fixture: &Fixture) -> Vec<(String, Value, Vec<String>)> {
    let mut cases: Vec<_> = fixture
        .cases
        .iter()
        .map(|case| {
            let mut object = fixture.bases.get(&case.base).cloned().unwrap_or_else(|| panic!("{}: no base", case.name));
            case.set.iter().for_each(|(pointer, value)| edit(&mut object, pointer, Some(value)));
            case.unset.iter().for_each(|pointer| edit(&mut object, pointer, None));
            (case.name.clone(), object, case.expect.clone())
        })
        .collect();
    let mut long_purpose = fixture.bases["policy"].clone();
    edit(&mut long_purpose, "/spec/purpose", Some(&json!("x".repeat(1025))));
    cases.push(("purpose too long".into(), long_purpose, vec!["spec.purpose".into()]));
    cases
}

#[tokio::test]
async fn invalid_shapes_are_rejected_naming_the_field() {
    let ns = TestNamespace::create("admission-invalid").await;
    install_crds(&ns.client).await;
    // The valid bases pass, so each rejection below is caused by its one edit.
    let fixture = fixture();
    for base in fixture.bases.values() {
        let result = settle(|| dry_run_create(&ns.client, &ns.name, base), |r| r.is_ok()).await;
        assert!(result.is_ok(), "valid {} rejected: {result:?}", base["kind"]);
    }
    let cases = invalid_cases(&fixture);
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for (name, object, expected) in &cases {
        let result = settle(|| dry_run_create(&ns.client, &ns.name, object), |r| invalid_message(r).is_some()).await;
        match invalid_message(&result) {
            Some(message) if expected.iter().all(|e| message.contains(e.as_str())) => {}
            Some(message) => failures.push(format!("{name}: message lacks {expected:?}: {message}")),
            None => failures.push(format!("{name}: not rejected as Invalid: {result:?}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let object: K = serde_json::from_value(object).expect("typed fixture");
    let params = PostParams::default();
    settle(|| api.create(&params, &object), |r| r.is_ok()).await.expect("create")
}

async fn merge<K>(api: &Api<K>, name: &str, patch: Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await
}

#[tokio::test]
async fn classification_can_be_raised_but_not_lowered() {
    let ns = TestNamespace::create("admission-classification").await;
    install_crds(&ns.client).await;
    let products: Api<DataProduct> = ns.api();
    create(&products, base("product")).await;
    let to = |level: &str| json!({"spec": {"classification": level}});

    let lowered = merge(&products, "incident-feed", to("Public")).await;
    let message = invalid_message(&lowered).unwrap_or_else(|| panic!("lowering accepted: {lowered:?}"));
    assert!(message.contains("spec.classification cannot be lowered"), "{message}");

    let raised = merge(&products, "incident-feed", to("Restricted")).await.expect("raising is allowed");
    assert_eq!(raised.spec.classification, drmesh::api::Classification::Restricted);
    let lowered = merge(&products, "incident-feed", to("Internal")).await;
    assert!(invalid_message(&lowered).is_some_and(|m| m.contains("spec.classification")), "{lowered:?}");

    // Other edits of a Restricted product are still fine.
    merge(&products, "incident-feed", json!({"spec": {"runtime": {"replicas": 3}}})).await.expect("scale");

    let sources: Api<DataSource> = ns.api();
    create(&sources, base("source")).await;
    let lowered = merge(&sources, "incident-db", to("Internal")).await;
    assert!(
        invalid_message(&lowered).is_some_and(|m| m.contains("spec.classification cannot be lowered")),
        "{lowered:?}"
    );
}

#[tokio::test]
async fn a_grant_cannot_be_moved_to_another_product() {
    let ns = TestNamespace::create("admission-grant").await;
    install_crds(&ns.client).await;
    let policies: Api<AccessPolicy> = ns.api();
    create(&policies, base("policy")).await;

    let moved = merge(&policies, "incident-feed-cnc", json!({"spec": {"dataProduct": "crowd-density"}})).await;
    let message = invalid_message(&moved).unwrap_or_else(|| panic!("moving a grant accepted: {moved:?}"));
    assert!(message.contains("spec.dataProduct is immutable"), "{message}");

    let subjects = json!({"spec": {"subjects": [{"kind": "Group", "name": "cnc-officers"}]}});
    let narrowed = merge(&policies, "incident-feed-cnc", subjects).await.expect("editing subjects is allowed");
    assert_eq!(narrowed.spec.subjects.len(), 1);
}

#[tokio::test]
async fn kubectl_lists_the_mesh_by_category_with_columns_and_explains_fields() {
    let ns = TestNamespace::create("admission-kubectl").await;
    install_crds(&ns.client).await;
    create(&ns.api::<DataSource>(), base("source")).await;
    create(&ns.api::<DataProduct>(), base("product")).await;
    create(&ns.api::<AccessPolicy>(), base("policy")).await;

    // kubectl expands categories from its discovery cache (kept 6 h): one filled before
    // the CRDs were installed (a fresh machine's first kubectl calls) lacks `drmesh`, and
    // a category miss does not refresh it. `kubectl api-resources` does, as a user would.
    let refreshed = harness::kubectl(&["api-resources", "--api-group", "drmesh.io"]);
    assert!(refreshed.status.success(), "kubectl api-resources: {}", String::from_utf8_lossy(&refreshed.stderr));
    let out = harness::kubectl(&["get", "drmesh", "-n", &ns.name]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl get drmesh: {}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "datasource.drmesh.io/incident-db",
        "dataproduct.drmesh.io/incident-feed",
        "accesspolicy.drmesh.io/incident-feed-cnc",
        "CLASSIFICATION",
        "READY",
        "EXPIRES",
    ] {
        assert!(text.contains(expected), "`kubectl get drmesh` lacks {expected}:\n{text}");
    }
    // `ds` is taken by DaemonSets (built-ins win), hence the extra short name `dsrc`.
    for short in ["dsrc", "dp", "ap"] {
        let out = harness::kubectl(&["get", short, "-n", &ns.name, "-o", "name"]);
        assert!(out.status.success() && !out.stdout.is_empty(), "kubectl get {short}: {out:?}");
    }
    let out = harness::kubectl(&["explain", "dataproducts.spec.outputPorts.port"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 to 65535"), "kubectl explain lacks the field description:\n{text}");
}
