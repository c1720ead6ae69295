//! Issue 13, "fail closed everywhere": the chart's admission policies against the paths a
//! red-team read found, each tried by an attacker with a real test identity on the real
//! API server. Every refusal below was accepted before the policy existed; the requests
//! that must still pass (the operator, the cluster's controllers, nodes, break glass)
//! pass next to them.
//!
//! As in `policies`, the policies are rendered from the chart for a test-unique operator
//! identity and bound only to this test's namespaces (the fence label). RBAC the attacker
//! needs is granted before the policies are installed (they would refuse it afterwards).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::policies::{
    CREATE, HostAccess, accepted, as_identity, as_person, host_pod, install_policies, people_rbac, pod, refused,
    workload,
};
use super::{FENCE_LABEL, kubectl_stdin, ok};
use crate::harness::{self, ClusterScoped, TIMEOUT, TestNamespace};

fn apply_as_admin(what: &str, yaml: &str) {
    ok(what, kubectl_stdin(&["apply", "-f", "-"], yaml));
}

/// A Restricted namespace inside the test's fence.
async fn restricted(prefix: &str, id: &str) -> TestNamespace {
    TestNamespace::create_with_labels(prefix, &[(FENCE_LABEL, id), ("drmesh.io/clearance", "Restricted")]).await
}

/// kubectl arguments of a JSON merge patch of `target` (KIND/NAME) in `ns` ("" for a
/// cluster-scoped object), or of its status subresource.
fn merge_patch<'a>(ns: &'a str, target: &'a str, status: bool, patch: &'a str) -> Vec<&'a str> {
    let mut args = vec!["patch", target, "--type=merge", "-p", patch];
    if !ns.is_empty() {
        args.extend(["-n", ns]);
    }
    if status {
        args.push("--subresource=status");
    }
    args
}

fn deny_all(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{podSelector: {{}}, policyTypes: [Ingress, Egress]}}\n"
    )
}

fn config_map_reader(ns: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: reader, namespace: {ns}}}\nrules: [{{apiGroups: [\"\"], resources: [configmaps], verbs: [get]}}]\n"
    )
}

/// Class 3: in a classified namespace, a Role behind an existing binding is not widened,
/// a foreign deny policy is not deleted, and the clearance label does not change through
/// the namespace's status or finalize subresources.
#[tokio::test]
async fn classified_namespaces_refuse_widened_roles_deleted_deny_policies_and_relabelling_subresources() {
    let id = harness::unique_name("pkg-fc3");
    let break_glass = format!("drmesh:break-glass-{id}");
    let classified = restricted("pkg-fc3-dr", &id).await;
    let doomed = restricted("pkg-fc3-gone", &id).await;
    let (dr, gone) = (classified.name.as_str(), doomed.name.as_str());

    // Before the policies: a Role bound to alice, a deny-all policy, and a NetworkPolicy
    // owned by a ConfigMap (the garbage collector's work), in both namespaces.
    let owner = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: owner, namespace: {dr}}}\n");
    apply_as_admin("a ConfigMap owning a NetworkPolicy", &owner);
    let owner_uid =
        ok("owner uid", harness::kubectl(&["get", "-n", dr, "configmap", "owner", "-o", "jsonpath={.metadata.uid}"]));
    let owned = deny_all(dr, "owned").replace(
        "namespace: ",
        &format!("ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {owner_uid}}}], namespace: "),
    );
    let mut existing = String::new();
    for ns in [dr, gone] {
        existing.push_str(&format!(
            "---\n{}---\n{}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: reader, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}}]\n",
            config_map_reader(ns),
            deny_all(ns, "deny-all"),
        ));
    }
    existing.push_str(&format!("---\n{owned}"));
    apply_as_admin("a Role, its binding and deny policies", &existing);
    let mut guards = people_rbac(&id, &[dr, gone], &[dr]);
    let values = json!({"admissionPolicies": {"classifiedNamespaces": {"breakGlassGroups": [break_glass]}}});
    guards.extend(install_policies(&id, &id, values, dr).await);

    // Roles: alice's binding must keep granting what it granted.
    let clearance = "(clearance Restricted)";
    let add_secrets = r#"[{"op": "add", "path": "/rules/-", "value": {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}}]"#;
    let widen = ["patch", "-n", dr, "role", "reader", "--type=json", "-p", add_secrets];
    refused("mallory widens the Role behind alice's binding to Secrets", as_person("mallory", &widen, ""), clearance);
    refused("the cluster admin widens the Role", harness::kubectl(&widen), clearance);
    refused(
        "mallory creates a Role in a Restricted namespace",
        as_person("mallory", CREATE, &config_map_reader(dr).replace("name: reader", "name: mine")),
        clearance,
    );
    accepted(
        "break glass: a Role widened in a Restricted namespace",
        as_identity("carol", &[&break_glass], &widen, ""),
    );

    // NetworkPolicies: a foreign deny policy stays.
    refused(
        "mallory deletes a deny-all NetworkPolicy",
        as_person("mallory", &["delete", "-n", dr, "networkpolicy", "deny-all"], ""),
        clearance,
    );
    refused(
        "the cluster admin deletes a deny-all NetworkPolicy",
        harness::kubectl(&["delete", "-n", dr, "networkpolicy", "deny-all"]),
        clearance,
    );
    // ... but the garbage collector removes a policy whose owner is gone, and the
    // namespace controller empties a deleted classified namespace.
    accepted(
        "the admin deletes the owner",
        harness::kubectl(&["delete", "-n", dr, "configmap", "owner", "--wait=false"]),
    );
    harness::wait_deleted(&classified.api::<NetworkPolicy>(), "owned", TIMEOUT).await;
    ok("delete the namespace", harness::kubectl(&["delete", "namespace", gone, "--wait=false"]));
    harness::wait_deleted(&Api::<Namespace>::all(classified.client.clone()), gone, TIMEOUT).await;

    // The clearance label, through the subresources that carry the whole namespace.
    let label = "drmesh.io/clearance label";
    let lower = r#"{"metadata": {"labels": {"drmesh.io/clearance": "Public"}}}"#;
    refused(
        "mallory lowers the clearance through namespaces/status",
        as_person("mallory", &merge_patch("", &format!("namespace/{dr}"), true, lower), ""),
        "through its status subresource",
    );
    let mut namespace: serde_json::Value =
        serde_json::from_str(&ok("get the namespace", harness::kubectl(&["get", "namespace", dr, "-o", "json"])))
            .expect("namespace JSON");
    namespace["metadata"]["labels"]["drmesh.io/clearance"] = json!("Public");
    let path = format!("/api/v1/namespaces/{dr}/finalize");
    refused(
        "mallory lowers the clearance through namespaces/finalize",
        as_person("mallory", &["replace", "--raw", &path, "-f", "-"], &namespace.to_string()),
        label,
    );
    accepted(
        "mallory sets another label through namespaces/status",
        as_person(
            "mallory",
            &merge_patch("", &format!("namespace/{dr}"), true, r#"{"metadata": {"labels": {"team": "police"}}}"#),
            "",
        ),
    );
    let namespaces: Api<Namespace> = Api::all(classified.client.clone());
    let now = namespaces.get(dr).await.expect("namespace").metadata.labels.unwrap_or_default();
    assert_eq!(now.get("drmesh.io/clearance").map(String::as_str), Some("Restricted"), "{now:?}");
    drop(guards);
}

/// Class 3: a product's pods in a classified namespace keep their code and status: no
/// debug container, no swapped image, no edited ReplicaSet, no status written by anyone
/// but a node or a controller.
#[tokio::test]
async fn product_pods_refuse_debug_containers_image_swaps_status_edits_and_replicaset_edits() {
    let id = harness::unique_name("pkg-fcp");
    let operator = format!("system:serviceaccount:{id}:drmesh");
    let classified = restricted("pkg-fcp-dr", &id).await;
    let dr = classified.name.as_str();

    // mallory is a namespace admin who may also write pod status and debug containers.
    let mut guards = people_rbac(&id, &[dr], &[]);
    apply_as_admin(
        "pod status and debug rights",
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {id}-pod-debug}}\nrules: [{{apiGroups: [\"\"], resources: [pods/status, pods/ephemeralcontainers], verbs: [get, patch, update]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: pod-debug, namespace: {dr}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {id}-pod-debug}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}}]\n"
        ),
    );
    guards.push(ClusterScoped { kind: "clusterrole", name: format!("{id}-pod-debug") });
    guards.extend(install_policies(&id, &id, json!({}), dr).await);

    // A product's Deployment, written by the operator: the deployment controller's
    // ReplicaSet and kwok's pod status (it plays the node) pass, and it becomes available.
    let claim = "app: feed, drmesh.io/data-product: feed";
    accepted(
        "the operator creates a product Deployment",
        as_identity(&operator, &[], CREATE, &workload("Deployment", dr, "feed", claim)),
    );
    let available = |n: i32| {
        move |d: Option<&Deployment>| d.and_then(|d| d.status.as_ref()).and_then(|s| s.available_replicas) == Some(n)
    };
    harness::wait_for(&classified.api::<Deployment>(), "feed", TIMEOUT, available(1)).await;
    let product = ListParams::default().labels("drmesh.io/data-product=feed");
    let pods = classified.api::<Pod>().list(&product).await.expect("pods");
    let pod_name = pods.items[0].metadata.name.clone().expect("pod name");
    let replica_sets = classified.api::<ReplicaSet>().list(&product).await.expect("replica sets");
    let rs = replica_sets.items[0].metadata.name.clone().expect("ReplicaSet name");
    let target = format!("pod/{pod_name}");

    // Ephemeral containers: nobody.
    let debug = ["debug", "-n", dr, &target, "--image=registry.example/debug:1.0", "--container=dbg"];
    refused(
        "mallory attaches a debug container",
        as_person("mallory", &debug, ""),
        "may not add an ephemeral container",
    );
    refused(
        "the cluster admin attaches a debug container",
        harness::kubectl(&debug),
        "may not add an ephemeral container",
    );

    // Images: nobody swaps them.
    let swap = ["set", "image", "-n", dr, &target, "app=registry.example/exfiltrate:1.0"];
    refused("mallory swaps a product pod's image", as_person("mallory", &swap, ""), "may not change the images");
    refused("the cluster admin swaps a product pod's image", harness::kubectl(&swap), "may not change the images");

    // Status: the node and the controllers only.
    let steer = r#"{"status": {"podIP": "10.66.6.6", "podIPs": [{"ip": "10.66.6.6"}]}}"#;
    let status = merge_patch(dr, &target, true, steer);
    refused("mallory rewrites a product pod's IPs", as_person("mallory", &status, ""), "may not change the status");
    refused(
        "a user named like a node, outside system:nodes",
        as_identity("system:node:kwok-node-0", &[], &status, ""),
        "may not change the status",
    );
    let node = pods.items[0].spec.as_ref().and_then(|s| s.node_name.clone()).expect("scheduled");
    accepted(
        "the pod's node writes its status",
        as_identity(
            &format!("system:node:{node}"),
            &["system:nodes"],
            &merge_patch(dr, &target, true, r#"{"status": {"message": "seen by its node"}}"#),
            "",
        ),
    );

    // ReplicaSets: the deployment controller only.
    let rs_swap = ["set", "image", "-n", dr, &format!("replicaset/{rs}"), "app=registry.example/exfiltrate:1.0"];
    refused(
        "mallory swaps the image of a product's ReplicaSet",
        as_person("mallory", &rs_swap, ""),
        "may not update ReplicaSet",
    );
    refused(
        "mallory annotates a product's ReplicaSet",
        as_person("mallory", &["annotate", "-n", dr, &format!("replicaset/{rs}"), "x=y"], ""),
        "may not update ReplicaSet",
    );
    accepted(
        "the operator scales the product",
        as_identity(
            &operator,
            &[],
            &["patch", "-n", dr, "deployment", "feed", "-p", r#"{"spec": {"replicas": 2}}"#],
            "",
        ),
    );
    harness::wait_for(&classified.api::<Deployment>(), "feed", TIMEOUT, available(2)).await;

    // Ordinary pods are mallory's to debug, retag and report on.
    accepted("mallory runs an ordinary pod", as_person("mallory", CREATE, &pod(dr, "plain", None)));
    accepted(
        "mallory swaps her pod's image",
        as_person("mallory", &["set", "image", "-n", dr, "pod/plain", "app=registry.example/app:2.0"], ""),
    );
    accepted("mallory writes her pod's status", as_person("mallory", &merge_patch(dr, "pod/plain", true, steer), ""));
    accepted(
        "mallory debugs her pod",
        as_person(
            "mallory",
            &["debug", "-n", dr, "pod/plain", "--image=registry.example/debug:1.0", "--container=dbg"],
            "",
        ),
    );
    drop(guards);
}

fn data_source(ns: &str, name: &str, secret: &str) -> String {
    format!(
        "apiVersion: drmesh.io/v1alpha1\nkind: DataSource\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  classification: Public\n  type: Http\n  endpoint: {{cidr: 10.50.0.0/24, port: 443}}\n  credentialsSecretRef: {{name: {secret}}}\n"
    )
}

fn secret(ns: &str, name: &str, credentials: bool) -> String {
    let label = if credentials { ", labels: {drmesh.io/credentials: \"true\"}" } else { "" };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}{label}}}\nstringData: {{password: s3cret}}\n"
    )
}

/// Class 6, the confused deputy: drmesh mounts a DataSource's Secret into its consumers'
/// pods with the operator's rights. Only someone who may read a Secret may name it in a
/// DataSource or label it as credentials.
#[tokio::test]
async fn a_secret_is_named_or_labelled_as_credentials_only_by_who_may_read_it() {
    let id = harness::unique_name("pkg-fc6");
    let domain = TestNamespace::create_with_labels("pkg-fc6", &[(FENCE_LABEL, id.as_str())]).await;
    crate::admission::install_crds(&domain.client).await;
    let ns = domain.name.as_str();

    // alice and mallory write DataSources and DataProducts, and create and patch Secrets
    // without reading them; alice may read `vault`, mallory only `shared`.
    let mut rbac = format!("---\n{}---\n{}", secret(ns, "vault", false), secret(ns, "shared", false));
    rbac.push_str(&format!(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: mesh-author, namespace: {ns}}}\nrules:\n- {{apiGroups: [drmesh.io], resources: [datasources, dataproducts], verbs: [get, list, create, update, patch]}}\n- {{apiGroups: [\"\"], resources: [secrets], verbs: [create, update, patch]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: mesh-author, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: mesh-author}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}}, {{apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}}]\n"
    ));
    for (who, readable) in [("alice", "vault"), ("mallory", "shared")] {
        rbac.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: read-{readable}, namespace: {ns}}}\nrules: [{{apiGroups: [\"\"], resources: [secrets], resourceNames: [{readable}], verbs: [get]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: read-{readable}, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-{readable}}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {who}}}]\n"
        ));
    }
    apply_as_admin("Secrets and the authors' RBAC", &rbac);
    let guards = install_policies(&id, &id, json!({}), ns).await;

    // Naming a Secret in a DataSource.
    let field = "spec.credentialsSecretRef.name";
    refused(
        "mallory names a Secret she may not read",
        as_person("mallory", CREATE, &data_source(ns, "stolen", "vault")),
        field,
    );
    let product = format!(
        "apiVersion: drmesh.io/v1alpha1\nkind: DataProduct\nmetadata: {{name: exfil, namespace: {ns}}}\nspec:\n  classification: Public\n  inputs: [{{dataSource: stolen}}]\n  runtime: {{image: registry.example/exfil:1.0}}\n  outputPorts: [{{name: http, port: 8080, protocol: HTTP}}]\n"
    );
    accepted("mallory may write DataProducts", as_person("mallory", CREATE, &product));
    accepted("mallory names a Secret she may read", as_person("mallory", CREATE, &data_source(ns, "mine", "shared")));
    accepted("alice names a Secret she may read", as_person("alice", CREATE, &data_source(ns, "records", "vault")));
    refused(
        "mallory repoints her DataSource at a Secret she may not read",
        as_person(
            "mallory",
            &merge_patch(ns, "datasource/mine", false, r#"{"spec": {"credentialsSecretRef": {"name": "vault"}}}"#),
            "",
        ),
        field,
    );
    accepted(
        "mallory edits alice's DataSource without touching its Secret",
        as_person(
            "mallory",
            &merge_patch(ns, "datasource/records", false, r#"{"spec": {"description": "edited"}}"#),
            "",
        ),
    );

    // Marking a Secret as credentials.
    let mark = r#"{"metadata": {"labels": {"drmesh.io/credentials": "true"}}}"#;
    let marked = "drmesh.io/credentials=true";
    refused(
        "mallory creates a Secret marked as credentials she may not read",
        as_person("mallory", CREATE, &secret(ns, "planted", true)),
        marked,
    );
    // One PATCH request, as an attacker would send it (kubectl GETs the Secret first,
    // which RBAC refuses her).
    let secrets: Api<Secret> = Api::namespaced(harness::client_as("mallory").await, ns);
    let label: serde_json::Value = serde_json::from_str(mark).expect("JSON");
    let err = secrets
        .patch("vault", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect_err("mallory marks a Secret she may not read: accepted, must be refused");
    assert!(err.to_string().contains("denied request") && err.to_string().contains(marked), "{err}");
    accepted("mallory creates an unmarked Secret", as_person("mallory", CREATE, &secret(ns, "planted", false)));
    accepted(
        "mallory marks a Secret she may read",
        as_person("mallory", &merge_patch(ns, "secret/shared", false, mark), ""),
    );
    accepted(
        "alice marks a Secret she may read",
        as_person("alice", &merge_patch(ns, "secret/vault", false, mark), ""),
    );
    drop(guards);
}

/// Class 8: a pod on the node's network, or holding a node port, escapes every
/// NetworkPolicy; outside the platform namespaces (by default kube-system, kube-public,
/// kube-node-lease and the release namespace) nobody may create one.
#[tokio::test]
async fn host_network_and_host_ports_are_refused_outside_platform_namespaces() {
    let id = harness::unique_name("pkg-fc8");
    let release = TestNamespace::create_with_labels("pkg-fc8-sys", &[(FENCE_LABEL, id.as_str())]).await;
    let domain = TestNamespace::create_with_labels("pkg-fc8", &[(FENCE_LABEL, id.as_str())]).await;
    let (sys, ns) = (release.name.as_str(), domain.name.as_str());
    let mut guards = people_rbac(&id, &[ns], &[]);
    guards.extend(install_policies(&id, sys, json!({}), ns).await);

    refused(
        "a namespace admin runs a hostNetwork pod",
        as_person("mallory", CREATE, &host_pod(ns, "sniffer", HostAccess::Network)),
        "spec.hostNetwork: true",
    );
    refused(
        "a namespace admin runs a pod with a hostPort",
        as_person("mallory", CREATE, &host_pod(ns, "listener", HostAccess::Port)),
        "ports[].hostPort in app",
    );
    refused(
        "a namespace admin runs an init container with a hostPort",
        as_person("mallory", CREATE, &host_pod(ns, "early", HostAccess::InitContainerPort)),
        "ports[].hostPort in init",
    );
    refused(
        "the cluster admin runs a hostNetwork pod in a domain",
        kubectl_stdin(CREATE, &host_pod(ns, "sniffer", HostAccess::Network)),
        "spec.hostNetwork: true",
    );
    accepted("a namespace admin runs an ordinary pod", as_person("mallory", CREATE, &pod(ns, "plain", None)));
    accepted(
        "the cluster admin runs a hostNetwork pod in the release (platform) namespace",
        kubectl_stdin(CREATE, &host_pod(sys, "agent", HostAccess::Network)),
    );
    drop(guards);
}

/// Issue 16: people's Clearances and the MeshPolicy decide who reads Restricted data.
/// A user whom RBAC lets write them is still refused by the chart's security-officers
/// policy unless they are in the security officers' group.
#[tokio::test]
async fn only_security_officers_write_clearances_and_the_mesh_policy() {
    let id = harness::unique_name("pkg-so");
    let release = TestNamespace::create_with_labels("pkg-so-sys", &[(FENCE_LABEL, id.as_str())]).await;
    let domain = TestNamespace::create_with_labels("pkg-so", &[(FENCE_LABEL, id.as_str())]).await;
    let user = format!("would-be-officer-{id}");
    // RBAC allows the writes: only the admission policy can refuse them.
    apply_as_admin(
        "RBAC for the would-be officer",
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {id}-people-writer}}\nrules:\n- {{apiGroups: [drmesh.io], resources: [clearances, meshpolicies], verbs: [get, list, create, update, patch, delete]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {id}-people-writer}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {id}-people-writer}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
        ),
    );
    let _rbac = [
        ClusterScoped { kind: "clusterrole", name: format!("{id}-people-writer") },
        ClusterScoped { kind: "clusterrolebinding", name: format!("{id}-people-writer") },
    ];
    let _policies = install_policies(&id, &release.name, json!({}), &domain.name).await;
    let as_user = |groups: &[&str], args: &[&str], input: &str| {
        let mut all = vec!["--as", user.as_str()];
        for g in groups {
            all.extend(["--as-group", g]);
        }
        all.extend_from_slice(args);
        kubectl_stdin(&all, input)
    };
    let clearance = format!(
        "apiVersion: drmesh.io/v1alpha1\nkind: Clearance\nmetadata: {{name: {id}-self}}\nspec:\n  subject: {{kind: User, name: {user}}}\n  level: Restricted\n  expiresAt: \"2030-01-01T00:00:00Z\"\n  reason: \"I clear myself, trust me\"\n"
    );
    refused(
        "a user with RBAC but outside the security officers clears themself",
        as_user(&[], &["create", "-f", "-"], &clearance),
        "(security officers) may",
    );
    let mut mesh_policy: serde_json::Value = {
        let path = super::repo().join("config/samples/people.yaml");
        let docs = drmesh::manifest::load_documents(&path).expect("people.yaml");
        docs.into_iter().find(|d| d.kind() == "MeshPolicy").expect("MeshPolicy").value
    };
    mesh_policy["spec"]["approvals"]["approvers"][1]["name"] = json!(user);
    refused(
        "the same user adds themself to the approvers",
        as_user(&[], &["apply", "--server-side", "--dry-run=server", "-f", "-"], &mesh_policy.to_string()),
        "(security officers) may",
    );
    // A security officer may (the MeshPolicy only in a dry run: other tests rely on it).
    accepted(
        "a security officer clears someone",
        as_user(&["drmesh:security-officers"], &["create", "-f", "-"], &clearance),
    );
    refused(
        "the user outside the group deletes that clearance",
        as_user(&[], &["delete", "clearance", &format!("{id}-self")], ""),
        "(security officers) may",
    );
    accepted(
        "a security officer edits the MeshPolicy",
        as_user(
            &["drmesh:security-officers"],
            &["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"],
            &mesh_policy.to_string(),
        ),
    );
    accepted(
        "a security officer withdraws the clearance",
        as_user(&["drmesh:security-officers"], &["delete", "clearance", &format!("{id}-self")], ""),
    );
}
