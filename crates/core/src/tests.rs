//! Pure tests of the rules and builders on small meshes.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use super::rules::{self, Reason};
use super::{Snapshot, grant, people_tests, product, source};
use crate::api::{AccessPolicy, Classification, DataProduct, DataSource};

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().expect("time")
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    drmesh_yaml::from_str(text).expect("fixture parses")
}

fn product(ns: &str, name: &str, classification: &str, inputs: &str) -> DataProduct {
    yaml(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: {name}, namespace: {ns}, uid: uid-{name}, generation: 1}}
spec:
  classification: {classification}
  owners: [{{kind: Group, name: {ns}-owners}}]
  inputs: {inputs}
  runtime: {{image: registry.example/{name}:1.0, replicas: 2}}
  outputPorts:
    - {{name: http, port: 8080, protocol: HTTP}}
    - {{name: grpc, port: 9090, protocol: GRPC}}
"#
    ))
}

fn policy(ns: &str, name: &str, product: &str, subjects: &str, extra: &str) -> AccessPolicy {
    yaml(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: {name}, namespace: {ns}, uid: uid-{name}, generation: 1}}
spec:
  dataProduct: {product}
  subjects: {subjects}
  {extra}
"#
    ))
}

fn source_fixture(ns: &str, name: &str, classification: &str) -> DataSource {
    yaml(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {{name: {name}, namespace: {ns}, uid: uid-{name}, generation: 1}}
spec:
  classification: {classification}
  type: Postgres
  endpoint: {{host: db.{ns}.example, cidr: 10.20.0.0/24, port: 5432}}
  credentialsSecretRef: {{name: {name}-credentials}}
"#
    ))
}

/// police/incident-feed (Restricted) read by cnc/situation-picture (Restricted).
fn mesh() -> Snapshot {
    let mut mesh = Snapshot::default();
    mesh.set_clearance("police", Classification::Restricted);
    mesh.set_clearance("cnc", Classification::Restricted);
    mesh.set_clearance("transport", Classification::Internal);
    // People: the officers are cleared Restricted, the police's owners Internal; two
    // approvers sign Restricted grants (see people_tests).
    mesh.set_mesh_policy(people_tests::mesh_policy(""));
    mesh.add_person_clearance(people_tests::clearance("Group", "cnc-officers", "Restricted", "2030-01-01T00:00:00Z"));
    mesh.add_person_clearance(people_tests::clearance("Group", "police-owners", "Internal", "2030-01-01T00:00:00Z"));
    mesh.add_source(source_fixture("police", "incident-db", "Restricted"));
    mesh.add_product(product("police", "incident-feed", "Restricted", "[{dataSource: incident-db}]"));
    mesh.add_product(product(
        "cnc",
        "situation-picture",
        "Restricted",
        "[{dataProduct: {namespace: police, name: incident-feed}}]",
    ));
    mesh
}

const GRANT_CNC: &str =
    "[{kind: DataProduct, namespace: cnc, name: situation-picture}, {kind: Group, name: cnc-officers}]";
const PURPOSE: &str = "purpose: Olympic hypervision of public safety\n  expiresAt: \"2027-01-01T00:00:00Z\"";

fn cnc_picture(mesh: &Snapshot) -> std::sync::Arc<DataProduct> {
    mesh.products.get(&("cnc".to_string(), "situation-picture".to_string())).cloned().expect("fixture")
}

#[test]
fn a_product_without_inputs_is_isolated_except_dns() {
    let mesh = mesh();
    let feed = mesh.products.get(&("police".into(), "incident-feed".into())).cloned().expect("fixture");
    let plan = rules::plan_product(&mesh, &feed, now());
    let bundle = product::build(&feed, &plan);
    let spec = bundle.isolation.spec.expect("spec");
    assert_eq!(spec.policy_types, Some(vec!["Ingress".into(), "Egress".into()]));
    assert_eq!(spec.ingress, Some(vec![]), "no ingress rule: deny by default");
    let egress = spec.egress.expect("egress");
    assert_eq!(egress.len(), 1, "only DNS: {egress:?}");
    assert!(bundle.deployment.is_some());
}

#[test]
fn an_ungranted_cross_domain_input_is_not_reachable() {
    let mesh = mesh();
    let picture = cnc_picture(&mesh);
    let plan = rules::plan_product(&mesh, &picture, now());
    let problem = plan.input_problem().expect("a problem");
    assert_eq!(problem.reason, Reason::InputNotGranted);
    let bundle = product::build(&picture, &plan);
    assert_eq!(bundle.isolation.spec.and_then(|s| s.egress).map(|e| e.len()), Some(1));
    assert!(bundle.deployment.is_some(), "the product runs, it just cannot reach the input");
}

#[test]
fn a_grant_opens_egress_to_exactly_the_granted_ports() {
    let mut mesh = mesh();
    mesh.add_policy(policy("police", "cnc", "incident-feed", GRANT_CNC, &format!("ports: [http]\n  {PURPOSE}")));
    let picture = cnc_picture(&mesh);
    let plan = rules::plan_product(&mesh, &picture, now());
    assert!(plan.input_problem().is_none(), "{:?}", plan.inputs);
    assert_eq!(plan.next_expiry, Some("2027-01-01T00:00:00Z".parse().expect("time")));
    let egress = product::build(&picture, &plan).isolation.spec.and_then(|s| s.egress).expect("egress");
    assert_eq!(egress.len(), 2);
    let rule = serde_json::to_value(&egress[1]).expect("json");
    assert_eq!(rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "police");
    assert_eq!(rule["to"][0]["podSelector"]["matchLabels"]["drmesh.io/data-product"], "incident-feed");
    assert_eq!(rule["ports"], serde_json::json!([{"port": 8080, "protocol": "TCP"}]));
}

#[test]
fn an_expired_grant_grants_nothing() {
    let mut mesh = mesh();
    let expired = "purpose: Olympic hypervision of public safety\n  expiresAt: \"2026-11-28T11:59:59Z\"";
    let p = policy("police", "cnc", "incident-feed", GRANT_CNC, expired);
    mesh.add_policy(p.clone());
    let plan = rules::plan_grant(&mesh, &p, now());
    assert_eq!(plan.problem.as_ref().map(|p| p.reason), Some(Reason::Expired));
    let bundle = grant::build(&p, &plan);
    assert!(bundle.role.is_none() && bundle.binding.is_none() && bundle.ingress.is_none());
    let picture = cnc_picture(&mesh);
    let input = rules::plan_product(&mesh, &picture, now());
    assert_eq!(input.input_problem().map(|p| p.reason), Some(Reason::InputNotGranted));
}

#[test]
fn a_grant_is_effective_until_the_instant_it_expires() {
    let mut mesh = mesh();
    let p = policy("police", "cnc", "incident-feed", GRANT_CNC, PURPOSE);
    mesh.add_policy(p.clone());
    let expiry: Timestamp = "2027-01-01T00:00:00Z".parse().expect("time");
    let before = expiry - jiff::SignedDuration::from_millis(1);
    assert!(rules::plan_grant(&mesh, &p, before).grants_anything());
    assert!(!rules::plan_grant(&mesh, &p, expiry).grants_anything());
}

#[test]
fn restricted_grants_need_purpose_and_expiry() {
    let mesh = mesh();
    let no_purpose = policy("police", "a", "incident-feed", GRANT_CNC, "expiresAt: \"2027-01-01T00:00:00Z\"");
    assert_eq!(rules::plan_grant(&mesh, &no_purpose, now()).problem.map(|p| p.reason), Some(Reason::MissingPurpose));
    let no_expiry = policy("police", "b", "incident-feed", GRANT_CNC, "purpose: Olympic hypervision of public safety");
    assert_eq!(rules::plan_grant(&mesh, &no_expiry, now()).problem.map(|p| p.reason), Some(Reason::MissingExpiry));
}

#[test]
fn a_subject_in_a_domain_without_clearance_is_denied() {
    let mesh = mesh();
    let subjects = "[{kind: DataProduct, namespace: transport, name: transit}, {kind: Namespace, name: cnc}]";
    let p = policy("police", "mixed", "incident-feed", subjects, PURPOSE);
    let plan = rules::plan_grant(&mesh, &p, now());
    assert_eq!(plan.denied.len(), 1);
    assert_eq!(plan.denied[0].1.reason, Reason::ClearanceTooLow);
    assert_eq!(plan.effective.len(), 1);
    let bundle = grant::build(&p, &plan);
    let ingress = serde_json::to_value(bundle.ingress.expect("ingress for cnc")).expect("json");
    let from = &ingress["spec"]["ingress"][0]["from"];
    assert_eq!(from.as_array().map(Vec::len), Some(1));
    assert_eq!(from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "cnc");
    assert!(bundle.binding.is_none(), "a Namespace subject gets network access only");
}

#[test]
fn an_unlabelled_namespace_is_public() {
    let mut mesh = mesh();
    mesh.add_product(product("nowhere", "leak", "Internal", "[]"));
    let leak = mesh.products.get(&("nowhere".into(), "leak".into())).cloned().expect("fixture");
    let plan = rules::plan_product(&mesh, &leak, now());
    assert_eq!(plan.blocker.map(|p| p.reason), Some(Reason::NamespaceClearanceTooLow));
}

#[test]
fn classification_never_flows_downward() {
    let mut mesh = mesh();
    mesh.add_product(product("police", "summary", "Internal", "[{dataSource: incident-db}]"));
    let summary = mesh.products.get(&("police".into(), "summary".into())).cloned().expect("fixture");
    let plan = rules::plan_product(&mesh, &summary, now());
    assert_eq!(plan.blocker.as_ref().map(|p| p.reason), Some(Reason::ClassificationViolation));
    assert!(product::build(&summary, &plan).deployment.is_none(), "no Deployment runs");
    let db = mesh.sources.get(&("police".into(), "incident-db".into())).cloned().expect("fixture");
    let consumers = crate::source::allowed_consumers(&mesh, &db);
    assert_eq!(consumers, vec!["incident-feed".to_string()], "the violating product gets no credentials");
}

#[test]
fn the_deployment_is_hardened() {
    let mesh = mesh();
    let feed = mesh.products.get(&("police".into(), "incident-feed".into())).cloned().expect("fixture");
    let plan = rules::plan_product(&mesh, &feed, now());
    let deployment: Deployment = product::build(&feed, &plan).deployment.expect("deployment");
    let pod = deployment.spec.expect("spec").template.spec.expect("pod");
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.expect("pod security");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.map(|s| s.type_), Some("RuntimeDefault".into()));
    for c in pod.containers {
        let sc = c.security_context.expect("container security");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.and_then(|c| c.drop), Some(vec!["ALL".into()]));
        assert!(c.env.unwrap_or_default().iter().all(|e| e.value_from.is_none()), "credentials are files");
        let mounts = c.volume_mounts.unwrap_or_default();
        assert!(
            mounts.iter().any(|m| m.mount_path == "/var/run/drmesh/sources/incident-db" && m.read_only == Some(true))
        );
    }
}

#[test]
fn children_carry_owner_and_labels() {
    let mesh = mesh();
    let feed = mesh.products.get(&("police".into(), "incident-feed".into())).cloned().expect("fixture");
    let plan = rules::plan_product(&mesh, &feed, now());
    let b = product::build(&feed, &plan);
    let metas = [
        b.isolation.metadata.clone(),
        b.service_account.metadata.clone(),
        b.service.clone().expect("service").metadata,
        b.deployment.clone().expect("deployment").metadata,
        b.owners_role.clone().expect("role").metadata,
        b.owners_binding.clone().expect("binding").metadata,
    ];
    for meta in metas {
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("drmesh"));
        assert_eq!(labels.get("drmesh.io/data-product").map(String::as_str), Some("incident-feed"));
        let owner = &meta.owner_references.clone().unwrap_or_default()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("uid-incident-feed", Some(true)));
    }
    assert_eq!(b.deployment.expect("deployment").name_any(), "incident-feed");
    assert_eq!(b.service.expect("service").name_any(), "incident-feed");
}

#[test]
fn proxy_names_cover_only_granted_ports() {
    let names = grant::proxy_names("feed", &[(8080, "http".into())]);
    assert!(names.contains(&"feed:8080".to_string()) && names.contains(&"https:feed:http".to_string()));
    assert!(!names.contains(&"feed".to_string()), "the bare name reaches the first port: never granted");
    assert!(!names.iter().any(|n| n.contains("9090")));
}

#[test]
fn a_source_reaches_only_its_consumers() {
    let mesh = mesh();
    let db = mesh.sources.get(&("police".into(), "incident-db".into())).cloned().expect("fixture");
    let bundle = source::build(&db, &["incident-feed".to_string()]);
    let role = serde_json::to_value(bundle.role.expect("role")).expect("json");
    assert_eq!(role["rules"][0]["resourceNames"], serde_json::json!(["incident-db-credentials"]));
    assert_eq!(role["rules"][0]["verbs"], serde_json::json!(["get"]));
    let egress = serde_json::to_value(bundle.egress.expect("egress")).expect("json");
    assert_eq!(egress["spec"]["podSelector"]["matchExpressions"][0]["values"], serde_json::json!(["incident-feed"]));
    assert_eq!(egress["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"], "10.20.0.0/24");
    assert!(source::build(&db, &[]).role.is_none(), "no consumer, no access");
}

/// A Snapshot whose Secrets are known: `released` ones carry drmesh.io/credentials=true.
fn with_secrets(mut mesh: Snapshot, released: &[&str], unreleased: &[&str]) -> Snapshot {
    for name in released {
        mesh.add_secret("police", name);
    }
    for name in unreleased {
        mesh.add_unreleased_secret("police", name);
    }
    mesh
}

fn incident_feed(mesh: &Snapshot) -> std::sync::Arc<DataProduct> {
    mesh.products.get(&("police".to_string(), "incident-feed".to_string())).cloned().expect("fixture")
}

fn mounted_secrets(bundle: &product::ProductBundle) -> Vec<String> {
    let pod = bundle.deployment.as_ref().and_then(|d| d.spec.as_ref()).and_then(|s| s.template.spec.clone());
    pod.and_then(|p| p.volumes)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.secret.and_then(|s| s.secret_name))
        .collect()
}

#[test]
fn a_source_lends_its_secret_only_when_released_to_drmesh() {
    for (released, unreleased, mounted, why) in [
        (vec!["incident-db-credentials"], vec![], true, None),
        (vec![], vec!["incident-db-credentials"], false, Some(Reason::SecretNotReleased)),
        (vec!["other"], vec![], false, Some(Reason::SecretNotFound)),
    ] {
        let mesh = with_secrets(mesh(), &released, &unreleased);
        let feed = incident_feed(&mesh);
        let plan = rules::plan_product(&mesh, &feed, now());
        let bundle = product::build(&feed, &plan);
        assert_eq!(!mounted_secrets(&bundle).is_empty(), mounted, "released {released:?}: {:?}", plan.inputs);
        let problem = plan.input_problem();
        assert_eq!(problem.map(|p| p.reason), why.map(|_| Reason::InputNotReady), "{:?}", plan.inputs);
        if let Some(why) = why {
            assert!(problem.expect("problem").message.contains(why.as_str()), "the source's reason is named");
        }
        assert!(plan.runnable(), "a source not Ready does not stop the product, it lends nothing");
    }
}

/// A view that reports every product not Ready (as an operator's caches would, before
/// the input product's pods are available).
struct NothingReady(Snapshot);

impl super::MeshView for NothingReady {
    fn clearance(&self, namespace: &str) -> Classification {
        self.0.clearance(namespace)
    }
    fn source(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<DataSource>> {
        self.0.source(namespace, name)
    }
    fn product(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<DataProduct>> {
        self.0.product(namespace, name)
    }
    fn secret_exists(&self, namespace: &str, name: &str) -> Option<bool> {
        self.0.secret_exists(namespace, name)
    }
    fn source_ready(&self, _: &str, _: &str) -> super::Readiness {
        super::Readiness::Ready
    }
    fn product_ready(&self, _: &str, _: &str) -> super::Readiness {
        super::Readiness::NotReady("Progressing: 0 of 2 replicas available".into())
    }
    fn policies_for(&self, namespace: &str, product: &str) -> Vec<std::sync::Arc<AccessPolicy>> {
        self.0.policies_for(namespace, product)
    }
    fn products_using_source(&self, namespace: &str, source: &str) -> Vec<std::sync::Arc<DataProduct>> {
        self.0.products_using_source(namespace, source)
    }
    fn products_using_product(&self, namespace: &str, product: &str) -> Vec<std::sync::Arc<DataProduct>> {
        self.0.products_using_product(namespace, product)
    }
}

#[test]
fn a_product_waits_for_an_input_product_that_is_not_ready() {
    let mut mesh = mesh();
    mesh.add_policy(policy("police", "cnc", "incident-feed", GRANT_CNC, PURPOSE));
    let picture = cnc_picture(&mesh);
    let ready = rules::plan_product(&mesh, &picture, now());
    assert!(ready.input_problem().is_none(), "{:?}", ready.inputs);
    let view = NothingReady(mesh);
    let plan = rules::plan_product(&view, &picture, now());
    let problem = plan.input_problem().expect("waiting");
    assert_eq!(problem.reason, Reason::InputNotReady);
    assert!(problem.message.contains("Progressing"), "{}", problem.message);
    assert!(plan.inputs[0].outcome.is_ok(), "still granted: the egress stays");
}

#[test]
fn a_grant_being_deleted_or_on_a_product_being_deleted_grants_nothing() {
    let mut mesh = mesh();
    let mut grant_object = policy("police", "cnc", "incident-feed", GRANT_CNC, PURPOSE);
    let deleted = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now());
    assert!(rules::plan_grant(&mesh, &grant_object, now()).grants_anything());
    grant_object.metadata.deletion_timestamp = Some(deleted.clone());
    let plan = rules::plan_grant(&mesh, &grant_object, now());
    assert!(!plan.grants_anything());
    assert_eq!(plan.problem.map(|p| p.reason), Some(Reason::PolicyDeleting));
    assert!(grant::build(&grant_object, &rules::plan_grant(&mesh, &grant_object, now())).role.is_none());

    let mut feed = (*incident_feed(&mesh)).clone();
    feed.metadata.deletion_timestamp = Some(deleted);
    mesh.add_product(feed);
    let plan = rules::plan_grant(&mesh, &policy("police", "cnc", "incident-feed", GRANT_CNC, PURPOSE), now());
    assert_eq!(plan.problem.map(|p| p.reason), Some(Reason::DataProductDeleting));
}

#[test]
fn names_that_cannot_be_labels_are_refused_with_a_reason() {
    let mesh = mesh();
    for name in ["cnc.officers", &"x".repeat(64), "Upper"] {
        let plan = rules::plan_grant(&mesh, &policy("police", name, "incident-feed", GRANT_CNC, PURPOSE), now());
        let problem = plan.problem.expect("refused");
        assert_eq!(problem.reason, Reason::InvalidName, "{name}");
        assert!(problem.message.contains("metadata.name"), "{}", problem.message);
    }
    assert!(
        rules::plan_grant(&mesh, &policy("police", "cnc-officers", "incident-feed", GRANT_CNC, PURPOSE), now())
            .grants_anything()
    );
}

#[test]
fn a_pod_selector_with_an_invalid_label_key_denies_its_subject_only() {
    let mesh = mesh();
    let subjects = "[{kind: Group, name: cnc-officers}, {kind: Namespace, name: cnc, podSelector: {matchLabels: {\"bad key!\": x}}}]";
    let grant = people_tests::approved(policy("police", "cnc", "incident-feed", subjects, PURPOSE));
    let plan = rules::plan_grant(&mesh, &grant, now());
    assert_eq!(plan.effective.len(), 1, "the group keeps its grant");
    let (denied, problem) = plan.denied.first().expect("denied");
    assert_eq!(denied.kind, crate::api::SubjectKind::Namespace);
    assert_eq!(problem.reason, Reason::InvalidPodSelector);
    assert!(problem.message.contains("spec.subjects[1].podSelector.matchLabels"), "{}", problem.message);
    for key in ["app", "app.kubernetes.io/name", "example.com/tier", "a_b.c-d"] {
        assert!(rules::is_label_key(key), "{key}");
    }
    for key in ["", "/x", "a/b/c", "-a", "Example.com/x", &format!("{}x", "a".repeat(63))] {
        assert!(!rules::is_label_key(key), "{key}");
    }
}

#[test]
fn owners_read_the_data_of_public_and_internal_products_only() {
    let mesh = mesh();
    let proxy_rule = |classification: &str| {
        let p = product("police", "feed", classification, "[]");
        let plan = rules::plan_product(&mesh, &p, now());
        let role = product::build(&p, &plan).owners_role.expect("owners' role");
        role.rules.unwrap_or_default().iter().any(|r| r.resources.iter().flatten().any(|res| res == "services/proxy"))
    };
    assert!(proxy_rule("Public"));
    assert!(proxy_rule("Internal"));
    assert!(!proxy_rule("Restricted"), "Restricted data needs a grant with purpose and expiry, owners too");
}

#[test]
fn the_isolation_is_held_until_the_products_pods_are_gone() {
    let mesh = mesh();
    let feed = incident_feed(&mesh);
    let bundle = product::build(&feed, &rules::plan_product(&mesh, &feed, now()));
    assert_eq!(bundle.isolation.metadata.finalizers, Some(vec![super::labels::ISOLATION_FINALIZER.to_string()]));
}

#[test]
fn people_reads_come_from_the_api_server_on_the_granted_ports_only() {
    let mut mesh = mesh();
    mesh.api_server = grant::ApiServer::parse(["10.0.0.1", "fd00::1"]).expect("addresses");
    let people = people_tests::approved(policy(
        "police",
        "officers",
        "incident-feed",
        "[{kind: Group, name: cnc-officers}]",
        PURPOSE,
    ));
    let plan = rules::plan_grant(&mesh, &people, now());
    assert_eq!(plan.proxy_from, ["10.0.0.1/32", "fd00::1/128"]);
    let ingress = serde_json::to_value(grant::build(&people, &plan).ingress.expect("ingress")).expect("json");
    let rules = ingress["spec"]["ingress"].as_array().expect("rules");
    assert_eq!(rules.len(), 1, "one rule, from the API server only: {ingress}");
    assert_eq!(rules[0]["from"][0]["ipBlock"]["cidr"], "10.0.0.1/32");
    assert_eq!(rules[0]["from"][1]["ipBlock"]["cidr"], "fd00::1/128");
    let granted: Vec<_> = plan.ports.iter().map(|(n, _)| serde_json::json!({"port": n, "protocol": "TCP"})).collect();
    assert_eq!(rules[0]["ports"], serde_json::Value::from(granted));

    // Workloads only: the API server is not admitted.
    let workloads = policy("police", "w", "incident-feed", "[{kind: Namespace, name: cnc}]", PURPOSE);
    let plan = rules::plan_grant(&mesh, &workloads, now());
    assert!(plan.proxy_from.is_empty());
    let ingress = serde_json::to_value(grant::build(&workloads, &plan).ingress.expect("ingress")).expect("json");
    assert!(!ingress.to_string().contains("ipBlock"), "{ingress}");

    // An expired grant to people admits nobody.
    let expired = "purpose: p\n  expiresAt: \"2026-11-28T11:59:59Z\"";
    let old = policy("police", "old", "incident-feed", "[{kind: User, name: alice}]", expired);
    assert!(grant::build(&old, &rules::plan_grant(&mesh, &old, now())).ingress.is_none());

    // Without the API server's addresses, people get RBAC but no network rule.
    mesh.api_server = grant::ApiServer::none();
    let plan = rules::plan_grant(&mesh, &people, now());
    let bundle = grant::build(&people, &plan);
    assert!(bundle.binding.is_some() && bundle.ingress.is_none());
}

#[test]
fn api_server_addresses_parse_as_cidrs_and_bad_ones_are_named() {
    let parsed = grant::ApiServer::parse(["192.168.1.7", " 10.0.0.0/8 ", "", "192.168.1.7/32"]).expect("valid");
    assert_eq!(parsed.cidrs(), ["192.168.1.7/32", "10.0.0.0/8"]);
    for bad in ["10.0.0.1/33", "fd00::/129", "kube-apiserver", "10.0.0/24"] {
        let error = grant::ApiServer::parse([bad]).expect_err(bad);
        assert!(error.contains(bad), "{error}");
    }
}

#[test]
fn with_two_grants_on_one_input_the_first_expiry_narrows_the_consumer_then() {
    let mut mesh = mesh();
    let picture = "[{kind: DataProduct, namespace: cnc, name: situation-picture}]";
    let first: Timestamp = "2026-12-01T00:00:00Z".parse().expect("time");
    let last: Timestamp = "2027-01-01T00:00:00Z".parse().expect("time");
    mesh.add_policy(policy(
        "police",
        "http-only",
        "incident-feed",
        picture,
        &format!("ports: [http]\n  purpose: p\n  expiresAt: \"{first}\""),
    ));
    mesh.add_policy(policy(
        "police",
        "grpc-only",
        "incident-feed",
        picture,
        &format!("ports: [grpc]\n  purpose: p\n  expiresAt: \"{last}\""),
    ));
    let reach = |at: Timestamp| {
        let plan = rules::plan_product(&mesh, &cnc_picture(&mesh), at);
        let ports = plan.inputs.iter().find_map(|i| match &i.outcome {
            Ok(rules::Reach::Product { ports, .. }) => Some(ports.clone()),
            _ => None,
        });
        (ports, plan.next_expiry)
    };
    assert_eq!(reach(now()), (Some(vec![8080, 9090]), Some(first)), "wake at the first expiry");
    assert_eq!(reach(first), (Some(vec![9090]), Some(last)), "then http is gone, grpc stays");
    assert_eq!(reach(last).0, None, "nothing after the last");
}
