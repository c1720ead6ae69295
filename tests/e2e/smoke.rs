//! Proof that the local control plane is a real cluster: scheduling and kwok nodes,
//! the garbage collector, RBAC authorization, ValidatingAdmissionPolicy, the audit log.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::harness::{self, ClusterScoped, TIMEOUT, TestNamespace};

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid fixture")
}

#[tokio::test]
async fn deployment_becomes_available_on_kwok_nodes() {
    let ns = TestNamespace::create("smoke-deploy").await;
    let deployments: Api<Deployment> = ns.api();
    let deployment: Deployment = from_json(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:1.0"}]}
            }
        }
    }));
    deployments.create(&PostParams::default(), &deployment).await.expect("create deployment");

    let available =
        |d: Option<&Deployment>| d.and_then(|d| d.status.as_ref()).and_then(|s| s.available_replicas) == Some(2);
    harness::wait_for(&deployments, "web", TIMEOUT, available).await;

    let pods: Api<Pod> = ns.api();
    let pods = pods.list(&ListParams::default().labels("app=web")).await.expect("list pods");
    assert_eq!(pods.items.len(), 2);
    for pod in &pods.items {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        assert!(node.starts_with("kwok-node-"), "pod scheduled on {node:?}, expected a kwok node");
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        assert_eq!(phase.as_deref(), Some("Running"));
    }
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    let ns = TestNamespace::create("smoke-gc").await;
    let config_maps: Api<ConfigMap> = ns.api();
    let owner: ConfigMap = from_json(json!({"metadata": {"name": "owner"}}));
    let owner = config_maps.create(&PostParams::default(), &owner).await.expect("create owner");

    let reference = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.meta().uid.clone().expect("uid"),
        ..Default::default()
    };
    let mut dependent: ConfigMap = from_json(json!({"metadata": {"name": "dependent"}}));
    dependent.metadata.owner_references = Some(vec![reference]);
    config_maps.create(&PostParams::default(), &dependent).await.expect("create dependent");

    config_maps.delete("owner", &harness::background()).await.expect("delete owner");
    harness::wait_deleted(&config_maps, "dependent", TIMEOUT).await;
}

#[tokio::test]
async fn rbac_grants_alice_and_denies_mallory() {
    let ns = TestNamespace::create("smoke-rbac").await;
    let role: Role = from_json(json!({
        "metadata": {"name": "read-config"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]
    }));
    ns.api::<Role>().create(&PostParams::default(), &role).await.expect("create role");
    let binding: RoleBinding = from_json(json!({
        "metadata": {"name": "alice-reads-config"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-config"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
    }));
    ns.api::<RoleBinding>().create(&PostParams::default(), &binding).await.expect("create binding");

    let reviews: Api<SubjectAccessReview> = Api::all(ns.client.clone());
    let review_for = |user: &str, groups: Vec<String>| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.name.clone()),
                verb: Some("list".into()),
                resource: Some("configmaps".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let allowed = |r: SubjectAccessReview| r.status.map(|s| s.allowed).unwrap_or(false);
    let pp = PostParams::default();
    // The authorizer's RBAC cache catches up with the new binding asynchronously.
    harness::eventually("alice's RoleBinding to take effect", TIMEOUT, || {
        let (reviews, review) = (reviews.clone(), review_for("alice", vec!["cnc-officers".into()]));
        async move { reviews.create(&PostParams::default(), &review).await.ok().filter(|r| allowed(r.clone())) }
    })
    .await;
    let mallory = reviews.create(&pp, &review_for("mallory", vec![])).await.expect("review");
    assert!(!allowed(mallory), "mallory has no binding and must be denied");

    // Real requests with the people's own certificates.
    let as_alice: Api<ConfigMap> = Api::namespaced(harness::client_as("alice").await, &ns.name);
    as_alice.list(&ListParams::default()).await.expect("alice lists configmaps");
    let as_mallory: Api<ConfigMap> = Api::namespaced(harness::client_as("mallory").await, &ns.name);
    match as_mallory.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "mallory: {status:?}"),
        other => panic!("mallory must get 403, got {other:?}"),
    }
    let can_i = harness::kubectl_as("mallory", &["auth", "can-i", "list", "configmaps", "-n", &ns.name]);
    assert_eq!(String::from_utf8_lossy(&can_i.stdout).trim(), "no");
}

#[tokio::test]
async fn validating_admission_policy_denies_a_forbidden_create() {
    let ns = TestNamespace::create_with_labels("smoke-vap", &[("smoke-vap", "enforced")]).await;
    let policy_name = harness::unique_name("smoke-no-forbidden-key");
    let client = ns.client.clone();
    let policy: ValidatingAdmissionPolicy = from_json(json!({
        "metadata": {"name": policy_name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]
            }]},
            "validations": [{
                "expression": "!has(object.data) || !('forbidden' in object.data)",
                "message": "data.forbidden is not allowed here"
            }]
        }
    }));
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
    let _policy_guard = ClusterScoped { kind: "validatingadmissionpolicy", name: policy_name.clone() };
    let binding: ValidatingAdmissionPolicyBinding = from_json(json!({
        "metadata": {"name": policy_name},
        "spec": {
            "policyName": policy_name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"smoke-vap": "enforced"}}}
        }
    }));
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");
    let _binding_guard = ClusterScoped { kind: "validatingadmissionpolicybinding", name: policy_name.clone() };

    let config_maps: Api<ConfigMap> = ns.api();
    let data = |key: &str| {
        let mut cm = ConfigMap::default();
        cm.metadata.generate_name = Some("probe-".into());
        cm.data = Some(BTreeMap::from([(key.to_string(), "x".to_string())]));
        cm
    };
    // The API server loads new policies asynchronously: retry until the denial shows up.
    let message = harness::eventually("the admission policy to deny", TIMEOUT, || async {
        match config_maps.create(&PostParams::default(), &data("forbidden")).await {
            Err(kube::Error::Api(status)) => Some(status.message),
            Ok(_) => None,
            Err(e) => panic!("unexpected error: {e}"),
        }
    })
    .await;
    assert!(message.contains("data.forbidden is not allowed here"), "message: {message}");
    config_maps.create(&PostParams::default(), &data("allowed")).await.expect("an allowed key passes");
}

#[tokio::test]
async fn audit_log_records_a_request() {
    let ns = TestNamespace::create("smoke-audit").await;
    let name = harness::unique_name("audited");
    let cm: ConfigMap = from_json(json!({"metadata": {"name": name}}));
    ns.api::<ConfigMap>().create(&PostParams::default(), &cm).await.expect("create");

    let path = harness::audit_log_path();
    let event = harness::eventually("the audit record", harness::TIMEOUT, || {
        let path = path.clone();
        let name = name.clone();
        async move {
            let log = std::fs::read_to_string(&path).ok()?;
            log.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| e["objectRef"]["name"] == name.as_str() && e["verb"] == "create")
        }
    })
    .await;
    assert_eq!(event["objectRef"]["namespace"], ns.name.as_str());
    assert_eq!(event["user"]["username"], "drmesh-admin");
    assert_eq!(event["responseStatus"]["code"], 201);
}
