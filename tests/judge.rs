//! The invariant judge of `make chaos` and the CI bench (tests/support/judge), on
//! fixtures and without a cluster: it finds nothing wrong with the reference mesh as the
//! operator renders it, and it catches a deliberately widened child of every kind and
//! field that grants access, and the narrowings (expiry, deletion, clearance lowering)
//! that have not landed yet.

#[path = "support/judge/mod.rs"]
mod judge;
#[path = "support/samples.rs"]
mod samples;

use std::path::Path;
use std::process::Command;

use judge::{Finding, World};
use serde_json::{Value, json};

const NOW: &str = "2026-06-01T00:00:00Z";

/// The API server's address in these fixtures: people read through its proxy.
const API_SERVER: &str = "10.96.0.1";

/// The `default/kubernetes` Service's EndpointSlice, which publishes the API server's
/// address (the judge learns it from there, as on a cluster).
fn api_server_slice() -> Value {
    json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "addressType": "IPv4",
        "metadata": {"namespace": "default", "name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "endpoints": [{"addresses": [API_SERVER]}]})
}

/// The reference mesh's declarations, as written in config/samples and
/// config/sample-credentials, and the API server's address.
fn declarations() -> Vec<Value> {
    let mut docs = samples::reference();
    docs.push(api_server_slice());
    docs
}

/// The declarations with one of them (kind, name) edited.
fn declarations_with(kind: &str, name: &str, edit: impl Fn(&mut Value)) -> Vec<Value> {
    let mut docs = declarations();
    docs.iter_mut().filter(|d| d["kind"] == kind && d["metadata"]["name"] == name).for_each(edit);
    docs
}

/// The children the operator would apply for the reference mesh at NOW (`drmesh render`):
/// only the fixture comes from drmesh; the judge reads it as any other JSON.
fn children() -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(["render", "-o", "json", "--now", NOW, "--api-server-cidrs", API_SERVER, "-f"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples"))
        .arg("-f")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sample-credentials"))
        .output()
        .expect("drmesh render");
    assert!(out.status.success(), "render: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("render json");
    v["items"].as_array().cloned().expect("items")
}

fn judge_at(declarations: Vec<Value>, children: Vec<Value>, now: &str) -> Vec<Finding> {
    let world = World::new(declarations.into_iter().chain(children), now.parse().expect("time"));
    judge::judge(&world)
}

/// Changes one child (kind, namespace, name) and returns what the judge finds.
fn plant(kind: &str, namespace: &str, name: &str, fault: impl FnOnce(&mut Value)) -> Vec<Finding> {
    let mut children = children();
    let child = children
        .iter_mut()
        .find(|c| c["kind"] == kind && c["metadata"]["namespace"] == namespace && c["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} in the rendered reference mesh"));
    fault(child);
    judge_at(declarations(), children, NOW)
}

/// Asserts a finding on `child` whose text contains `about`.
fn caught(findings: &[Finding], child: &str, about: &str) {
    assert!(
        findings.iter().any(|f| f.child == child && f.what.contains(about)),
        "the judge missed a widened {child} ({about}); it found: {findings:#?}"
    );
}

#[test]
fn the_reference_mesh_as_rendered_gives_nothing_beyond_its_policies() {
    let children = children();
    for kind in ["NetworkPolicy", "Role", "RoleBinding", "Deployment", "Service"] {
        let n = children.iter().filter(|c| c["kind"] == kind).count();
        assert!(n >= 6, "only {n} {kind} rendered: the fixture would prove little");
    }
    let world = World::new(declarations().into_iter().chain(children), NOW.parse().expect("time"));
    assert_eq!(world.grants().len(), 7, "the seven reference grants are in force at {NOW}");
    let findings = judge::judge(&world);
    assert!(findings.is_empty(), "{findings:#?}");
}

const GRANT_NP: (&str, &str, &str) = ("NetworkPolicy", "police", "drmesh-grant-incident-feed-cnc");

#[test]
fn a_widened_ingress_peer_is_caught() {
    let (k, ns, n) = GRANT_NP;
    let child = format!("{k} {ns}/{n}");
    // Every pod of cnc instead of the situation picture's.
    let f = plant(k, ns, n, |np| np["spec"]["ingress"][0]["from"][0]["podSelector"] = json!({}));
    caught(&f, &child, "every pod of cnc");
    // The situation picture's pods in any namespace.
    let f = plant(k, ns, n, |np| np["spec"]["ingress"][0]["from"][0]["namespaceSelector"] = json!({}));
    caught(&f, &child, "any namespace");
    // Another product of another domain.
    let f = plant(k, ns, n, |np| {
        np["spec"]["ingress"][0]["from"][0] = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "transport"}},
            "podSelector": {"matchLabels": {"drmesh.io/data-product": "transit-disruptions"}}})
    });
    caught(&f, &child, "transport/transit-disruptions");
    // No peer at all: from anywhere.
    let f = plant(k, ns, n, |np| np["spec"]["ingress"][0]["from"] = json!([]));
    caught(&f, &child, "anywhere");
}

#[test]
fn a_widened_port_is_caught() {
    let (k, ns, n) = GRANT_NP;
    let child = format!("{k} {ns}/{n}");
    let f = plant(k, ns, n, |np| np["spec"]["ingress"][0]["ports"] = json!([{"protocol": "TCP", "port": 22}]));
    caught(&f, &child, "TCP/22");
    let f = plant(k, ns, n, |np| drop(np["spec"]["ingress"][0].as_object_mut().map(|r| r.remove("ports"))));
    caught(&f, &child, "every port");
    let f = plant(k, ns, n, |np| np["spec"]["ingress"][0]["ports"][0]["endPort"] = json!(8090));
    caught(&f, &child, "TCP/8081");
    let f = plant(k, ns, n, |np| np["spec"]["ingress"][0]["ports"][0]["protocol"] = json!("UDP"));
    caught(&f, &child, "UDP/8080");
    // transit-disruptions' analysts are granted http only: their grpc port stays shut.
    let f = plant("NetworkPolicy", "transport", "drmesh-grant-transit-disruptions-analysts", |np| {
        np["spec"]["ingress"][0]["ports"] = json!([{"protocol": "TCP", "port": "grpc"}])
    });
    caught(&f, "NetworkPolicy transport/drmesh-grant-transit-disruptions-analysts", "TCP/9090");
}

#[test]
fn a_widened_ip_block_is_caught() {
    let (k, ns, n) = GRANT_NP;
    let f = plant(k, ns, n, |np| {
        np["spec"]["ingress"][0]["from"].as_array_mut().expect("from").push(json!({"ipBlock": {"cidr": "0.0.0.0/0"}}))
    });
    caught(&f, &format!("{k} {ns}/{n}"), "ipBlock 0.0.0.0/0");
    // The source's egress opened to a wider range than its endpoint.
    let egress = "drmesh-source-incident-db-egress";
    let f = plant("NetworkPolicy", "police", egress, |np| {
        np["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"] = json!("10.20.0.0/16")
    });
    caught(&f, &format!("NetworkPolicy police/{egress}"), "ipBlock 10.20.0.0/16");
    // ... or to another port of the endpoint.
    let f = plant("NetworkPolicy", "police", egress, |np| np["spec"]["egress"][0]["ports"][0]["port"] = json!(5433));
    caught(&f, &format!("NetworkPolicy police/{egress}"), "TCP/5433");
}

#[test]
fn the_api_server_is_admitted_only_on_ports_granted_to_people() {
    let (k, ns, n) = GRANT_NP;
    let child = format!("{k} {ns}/{n}");
    let proxy = json!({"ipBlock": {"cidr": format!("{API_SERVER}/32")}});
    // The rendered grant admits the API server (people are granted): no finding.
    let rendered = children();
    let np = rendered.iter().find(|c| c["kind"] == k && c["metadata"]["name"] == n).expect("grant policy");
    assert_eq!(np["spec"]["ingress"][1]["from"][0], proxy, "{np:#}");
    assert!(judge_at(declarations(), rendered.clone(), NOW).is_empty());
    // A wider range than the API server's address.
    let f = plant(k, ns, n, |np| np["spec"]["ingress"][1]["from"][0]["ipBlock"]["cidr"] = json!("10.96.0.0/24"));
    caught(&f, &child, "ipBlock 10.96.0.0/24");
    // An ungranted port.
    let f = plant(k, ns, n, |np| np["spec"]["ingress"][1]["ports"] = json!([{"protocol": "TCP", "port": 9090}]));
    caught(&f, &child, &format!("ipBlock {API_SERVER}/32 on TCP/9090"));
    // A grant to workloads only gives the API server nothing.
    let no_people = declarations_with("AccessPolicy", "incident-feed-cnc", |d| {
        let subjects = d["spec"]["subjects"].as_array_mut().expect("subjects");
        subjects.retain(|s| s["kind"] != "Group" && s["kind"] != "User");
    });
    caught(&judge_at(no_people, rendered.clone(), NOW), &child, &format!("ipBlock {API_SERVER}/32"));
    // An address that is not the API server's.
    let elsewhere: Vec<Value> = declarations().into_iter().filter(|d| d["kind"] != "EndpointSlice").collect();
    caught(&judge_at(elsewhere, rendered, NOW), &child, &format!("ipBlock {API_SERVER}/32"));
}

#[test]
fn a_widened_pod_selector_is_caught() {
    let (k, ns, n) = GRANT_NP;
    // The grant's ingress applied to every pod of police, not only the incident feed's.
    let f = plant(k, ns, n, |np| np["spec"]["podSelector"] = json!({}));
    caught(&f, &format!("{k} {ns}/{n}"), "no single product's");
    // The source's egress given to a product that does not use it.
    let f = plant("NetworkPolicy", "police", "drmesh-source-incident-db-egress", |np| {
        np["spec"]["podSelector"] = json!({"matchExpressions": [{"key": "drmesh.io/data-product", "operator": "In",
            "values": ["incident-feed", "intruder"]}]})
    });
    caught(&f, "NetworkPolicy police/drmesh-source-incident-db-egress", "police/intruder reaches ipBlock");
}

#[test]
fn widened_policy_types_and_egress_are_caught() {
    // The situation picture is granted to people only, whose grant admits the API server:
    // without the isolation's Ingress type, that grant's policy alone isolates its pods;
    // without both, anything reaches them.
    let mut children = children();
    children.retain(|c| c["metadata"]["name"] != "drmesh-grant-situation-picture-officers");
    for c in children.iter_mut().filter(|c| c["metadata"]["name"] == "situation-picture-isolation") {
        c["spec"]["policyTypes"] = json!(["Egress"]);
    }
    caught(&judge_at(declarations(), children, NOW), "Deployment cnc/situation-picture", "not isolated for ingress");
    let f = plant("NetworkPolicy", "cnc", "situation-picture-isolation", |np| {
        np["spec"]["policyTypes"] = json!(["Ingress"])
    });
    caught(&f, "Deployment cnc/situation-picture", "not isolated for egress");
    // An egress rule to everywhere.
    let f = plant("NetworkPolicy", "cnc", "situation-picture-isolation", |np| {
        np["spec"]["egress"].as_array_mut().expect("egress").push(json!({}))
    });
    caught(&f, "NetworkPolicy cnc/situation-picture-isolation", "reaches anywhere");
    // An ingress rule on the isolation policy (which has none).
    let f = plant("NetworkPolicy", "cnc", "situation-picture-isolation", |np| {
        np["spec"]["ingress"] = json!([{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "police"}}}],
            "ports": [{"port": 8080}]}])
    });
    caught(&f, "NetworkPolicy cnc/situation-picture-isolation", "every pod of police");
}

const GRANT_RB: (&str, &str, &str) = ("RoleBinding", "police", "drmesh-grant-incident-feed-cnc");

#[test]
fn a_widened_role_binding_is_caught() {
    let (k, ns, n) = GRANT_RB;
    let child = format!("{k} {ns}/{n}");
    let f = plant(k, ns, n, |rb| {
        rb["subjects"]
            .as_array_mut()
            .expect("subjects")
            .push(json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}))
    });
    caught(&f, &child, "Group:system:authenticated may get");
    let f = plant(k, ns, n, |rb| {
        rb["subjects"]
            .as_array_mut()
            .expect("subjects")
            .push(json!({"kind": "ServiceAccount", "namespace": "transport", "name": "transit-disruptions"}))
    });
    caught(&f, &child, "ServiceAccount:transport/transit-disruptions may get");
    let f = plant(k, ns, n, |rb| {
        rb["roleRef"] = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"})
    });
    caught(&f, &child, "ClusterRole");
    // The analysts' binding pointed at the owners' Role: they would read the Deployment.
    let f = plant("RoleBinding", "transport", "drmesh-grant-transit-disruptions-analysts", |rb| {
        rb["roleRef"]["name"] = json!("transit-disruptions-owners")
    });
    caught(&f, "RoleBinding transport/drmesh-grant-transit-disruptions-analysts", "deployments");
}

#[test]
fn a_widened_role_is_caught() {
    let (_, ns, n) = GRANT_RB;
    let through = format!("RoleBinding {ns}/{n}");
    let f = plant("Role", ns, n, |r| r["rules"][0]["verbs"] = json!(["get", "list"]));
    caught(&f, &through, "list drmesh.io/dataproducts");
    let f = plant("Role", ns, n, |r| r["rules"][1]["resources"] = json!(["services", "secrets"]));
    caught(&f, &through, "get /secrets incident-feed");
    let f = plant("Role", ns, n, |r| r["rules"][0]["apiGroups"] = json!(["*"]));
    caught(&f, &through, "get */dataproducts");
    // resourceNames: the bare product name proxies to the first port whatever was granted.
    let f = plant("Role", ns, n, |r| {
        let proxy = r["rules"]
            .as_array_mut()
            .expect("rules")
            .iter_mut()
            .find(|rule| rule["resources"][0] == "services/proxy")
            .expect("proxy rule");
        proxy["resourceNames"].as_array_mut().expect("names").push(json!("incident-feed"));
    });
    caught(&f, &through, "get /services/proxy incident-feed (");
    let f = plant("Role", ns, n, |r| drop(r["rules"][1].as_object_mut().map(|rule| rule.remove("resourceNames"))));
    caught(&f, &through, "get /services *");
}

#[test]
fn a_secret_readable_by_a_non_consumer_is_caught() {
    // Through the source's RBAC ...
    let f = plant("RoleBinding", "police", "drmesh-source-incident-db", |rb| {
        rb["subjects"]
            .as_array_mut()
            .expect("subjects")
            .push(json!({"kind": "ServiceAccount", "namespace": "cnc", "name": "situation-picture"}))
    });
    caught(&f, "RoleBinding police/drmesh-source-incident-db", "ServiceAccount:cnc/situation-picture may get /secrets");
    // ... through another Secret named in the source's Role ...
    let f = plant("Role", "police", "drmesh-source-incident-db", |r| {
        r["rules"][0]["resourceNames"].as_array_mut().expect("names").push(json!("other-credentials"))
    });
    caught(&f, "RoleBinding police/drmesh-source-incident-db", "other-credentials");
    // ... and through a workload mounting it.
    let f = plant("Deployment", "cnc", "situation-picture", |d| {
        d["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "P", "valueFrom": {"secretKeyRef": {"name": "cnc-vault", "key": "p"}}}])
    });
    caught(&f, "Deployment cnc/situation-picture", "Secret cnc/cnc-vault");
}

#[test]
fn owners_reading_restricted_data_and_unreleased_secrets_are_caught() {
    // Owners of a Restricted product see it, but read its data only through a grant.
    let f = plant("Role", "police", "incident-feed-owners", |r| {
        r["rules"].as_array_mut().expect("rules").push(json!({"apiGroups": [""], "resources": ["services/proxy"],
            "resourceNames": ["incident-feed:8080"], "verbs": ["get"]}))
    });
    caught(
        &f,
        "RoleBinding police/incident-feed-owners",
        "Group:police-data-owners may get /services/proxy incident-feed:8080",
    );
    // A source lends only a Secret released to drmesh.
    let unreleased = declarations_with("Secret", "incident-db-credentials", |d| d["metadata"]["labels"] = json!({}));
    let f = judge_at(unreleased, children(), NOW);
    caught(&f, "RoleBinding police/drmesh-source-incident-db", "ServiceAccount:police/incident-feed may get /secrets");
    caught(&f, "Deployment police/incident-feed", "Secret police/incident-db-credentials");
}

#[test]
fn a_workload_taking_another_identity_is_caught() {
    let f = plant("Deployment", "police", "incident-feed", |d| {
        d["spec"]["template"]["metadata"]["labels"]["drmesh.io/data-product"] = json!("other")
    });
    caught(&f, "Deployment police/incident-feed", "another product's network access");
    let f = plant("Deployment", "police", "incident-feed", |d| {
        d["spec"]["template"]["spec"]["serviceAccountName"] = json!("default")
    });
    caught(&f, "Deployment police/incident-feed", "ServiceAccount");
}

#[test]
fn a_service_leading_elsewhere_is_caught() {
    // The proxy of incident-feed would reach the situation picture's pods ...
    let f = plant("Service", "police", "incident-feed", |s| {
        s["spec"]["selector"] = json!({"drmesh.io/data-product": "other"})
    });
    caught(&f, "Service police/incident-feed", "its proxy reaches other pods");
    let f = plant("Service", "police", "incident-feed", |s| s["spec"]["selector"] = json!({}));
    caught(&f, "Service police/incident-feed", "its proxy reaches other pods");
    // ... or a grant on 8080 would reach another port of the pods.
    let f = plant("Service", "transport", "transit-disruptions", |s| s["spec"]["ports"][0]["targetPort"] = json!(9090));
    caught(&f, "Service transport/transit-disruptions", "reaches another port");
}

#[test]
fn narrowings_that_have_not_landed_are_caught() {
    // Expiry: the same children one second after the grants' expiresAt.
    let f = judge_at(declarations(), children(), "2028-01-01T00:00:00Z");
    caught(&f, "RoleBinding police/drmesh-grant-incident-feed-cnc", "Group:cnc-officers may get");
    caught(&f, "NetworkPolicy police/drmesh-grant-incident-feed-cnc", "cnc/situation-picture");
    caught(&f, "NetworkPolicy cnc/situation-picture-isolation", "reaches pods of product police/incident-feed");
    // The analysts' grant has no expiry: still fine.
    assert!(!f.iter().any(|x| x.child.contains("transit-disruptions-analysts")), "{f:#?}");

    // Deletion: the policy is gone, its children are not yet.
    let declared: Vec<Value> = declarations()
        .into_iter()
        .filter(|d| !(d["kind"] == "AccessPolicy" && d["metadata"]["name"] == "incident-feed-cnc"))
        .collect();
    let f = judge_at(declared, children(), NOW);
    caught(&f, "RoleBinding police/drmesh-grant-incident-feed-cnc", "Group:cnc-officers");
    caught(
        &f,
        "NetworkPolicy police/drmesh-grant-incident-feed-cnc",
        "reached from pods of product cnc/situation-picture",
    );

    // Clearance lowering: cnc is Internal now; its Restricted product may not run and
    // may not be granted Restricted inputs.
    let lowered =
        declarations_with("Namespace", "cnc", |d| d["metadata"]["labels"]["drmesh.io/clearance"] = json!("Internal"));
    let f = judge_at(lowered, children(), NOW);
    caught(&f, "Deployment cnc/situation-picture", "may not run");
    caught(&f, "NetworkPolicy police/drmesh-grant-incident-feed-cnc", "cnc/situation-picture");
    caught(&f, "RoleBinding police/drmesh-grant-incident-feed-cnc", "ServiceAccount:cnc/situation-picture");
}

#[test]
fn selectors_and_ranges_follow_kubernetes() {
    let labels = judge::product_pod_labels("feed");
    assert!(judge::selects(&json!({}), &labels));
    assert!(judge::selects(&json!({"matchLabels": {"drmesh.io/data-product": "feed"}}), &labels));
    assert!(!judge::selects(&json!({"matchLabels": {"drmesh.io/data-product": "other"}}), &labels));
    assert!(!judge::selects(
        &json!({"matchExpressions": [{"key": "drmesh.io/data-product", "operator": "NotIn", "values": ["feed"]}]}),
        &labels
    ));
    assert!(judge::selects(&json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}), &labels));
    let required = judge::required_values(
        &json!({"matchLabels": {"k": "a"}, "matchExpressions": [{"key": "k", "operator": "In", "values": ["a", "b"]}]}),
        "k",
    );
    assert_eq!(required, Some(["a".to_string()].into()));
    assert_eq!(judge::required_values(&json!({"matchExpressions": [{"key": "k", "operator": "Exists"}]}), "k"), None);
}

/// Issue 16: people's access rests on their own clearances, the grant's window and, for
/// Restricted products, two approvals of the exact spec. The children stay as rendered
/// for the reference mesh; the declarations change under them.
#[test]
fn people_without_clearance_window_or_approvals_are_caught() {
    let officers = "RoleBinding police/drmesh-grant-incident-feed-cnc";
    // The officers' clearance withdrawn, lowered, or expired.
    let mut docs = declarations();
    docs.retain(|d| !(d["kind"] == "Clearance" && d["metadata"]["name"] == "cnc-officers"));
    caught(&judge_at(docs, children(), NOW), officers, "Group:cnc-officers may get");
    let lowered = declarations_with("Clearance", "cnc-officers", |c| c["spec"]["level"] = json!("Internal"));
    caught(&judge_at(lowered, children(), NOW), officers, "Group:cnc-officers may get");
    let expired =
        declarations_with("Clearance", "cnc-officers", |c| c["spec"]["expiresAt"] = json!("2026-05-31T23:59:59Z"));
    caught(&judge_at(expired, children(), NOW), officers, "Group:cnc-officers may get");
    // An edit after approval (the signatures no longer match), a forged approval (the
    // first signature under both names), a key the MeshPolicy no longer trusts.
    let edited = declarations_with("AccessPolicy", "incident-feed-cnc", |a| {
        a["spec"]["purpose"] = json!("Build the national situation picture, and more.")
    });
    caught(&judge_at(edited, children(), NOW), officers, "Group:cnc-officers may get");
    let forged = declarations_with("AccessPolicy", "incident-feed-cnc", |a| {
        let first = a["spec"]["approvals"][0]["signature"].clone();
        a["spec"]["approvals"][1]["signature"] = first;
    });
    caught(&judge_at(forged, children(), NOW), officers, "Group:cnc-officers may get");
    let rotated = declarations_with("MeshPolicy", "default", |m| {
        m["spec"]["approvals"]["approvers"][1]["publicKey"] =
            m["spec"]["approvals"]["approvers"][0]["publicKey"].clone()
    });
    caught(&judge_at(rotated, children(), NOW), officers, "Group:cnc-officers may get");
    // Not started yet, or past the reassessment grace (reassessBy 2027-09-30 + 14d).
    let later = declarations_with("AccessPolicy", "crowd-density-cnc", |a| {
        a["spec"]["startsAt"] = json!("2026-06-02T00:00:00Z")
    });
    caught(&judge_at(later, children(), NOW), "RoleBinding gendarmerie/drmesh-grant-crowd-density-cnc", "may get");
    let f = judge_at(declarations(), children(), "2027-10-14T00:00:01Z");
    caught(&f, officers, "Group:cnc-officers may get");
    // Owners of an Internal product read its data only while every owner is cleared.
    let mut docs = declarations();
    docs.retain(|d| !(d["kind"] == "Clearance" && d["metadata"]["name"] == "gendarmerie-data-owners"));
    caught(&judge_at(docs, children(), NOW), "RoleBinding gendarmerie/crowd-density-owners", "services/proxy");
}

#[test]
fn the_judge_shares_no_code_with_the_operator() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/judge");
    for entry in std::fs::read_dir(&dir).expect("judge dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        for forbidden in ["drmesh::", "drmesh_", "crate::mesh", "crate::controllers", "k8s_openapi", "plan_grant"] {
            let used = text.lines().filter(|l| !l.trim_start().starts_with("//")).any(|l| l.contains(forbidden));
            assert!(!used, "{} uses {forbidden}", path.display());
        }
    }
}
