//! The chart's ValidatingAdmissionPolicies on the real API server: each is tried by people
//! who must be refused (alice, mallory, the cluster admin, a forged label) and by those
//! who must pass (the operator, the garbage collector, the namespace controller, the
//! break-glass and clearance-admin groups). Decisions are on the requesting user only.
//!
//! The policies are rendered from the chart with a test-unique operator identity and
//! bound to this test's namespaces only (`admissionPolicies.namespaceSelector`), so the
//! other e2e tests are unaffected. Identities that need RBAC beyond what the test grants
//! are impersonated together with `system:masters`, so that only admission decides.

use std::process::Output;

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::Api;
use serde_json::{Value, json};

use super::{FENCE_LABEL, documents, kubectl_stdin, ok, render};
use crate::harness::{self, ClusterScoped, TIMEOUT, TestNamespace};

/// kubectl as `user` in `groups`, with system:masters for RBAC (admission still decides).
pub(super) fn as_identity(user: &str, groups: &[&str], args: &[&str], input: &str) -> Output {
    let mut all = vec!["--as", user, "--as-group", "system:masters"];
    for g in groups {
        all.extend(["--as-group", g]);
    }
    all.extend_from_slice(args);
    kubectl_stdin(&all, input)
}

pub(super) fn as_person(who: &str, args: &[&str], input: &str) -> Output {
    let mut all = vec!["--context", who];
    all.extend_from_slice(args);
    kubectl_stdin(&all, input)
}

pub(super) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
pub(super) fn refused(what: &str, out: Output, because: &str) {
    let err = stderr(&out);
    assert!(!out.status.success(), "{what}: accepted, must be refused");
    assert!(
        err.contains("denied request") && err.contains(because),
        "{what}: refused, but not by the policy ({because}): {err}"
    );
}

#[track_caller]
pub(super) fn accepted(what: &str, out: Output) {
    assert!(out.status.success(), "{what}: refused, must pass: {}", stderr(&out));
}

pub(super) fn config_map(ns: &str, name: &str, managed: bool) -> String {
    let label = if managed { "\n  labels: {app.kubernetes.io/managed-by: drmesh}" } else { "" };
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}{label}\ndata: {{k: v}}\n")
}

pub(super) fn allow_all_ingress(ns: &str, name: &str, managed: bool) -> String {
    let label = if managed { "\n  labels: {app.kubernetes.io/managed-by: drmesh}" } else { "" };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}{label}\nspec:\n  podSelector: {{}}\n  ingress: [{{}}]\n"
    )
}

fn view_binding(ns: &str, name: &str, who: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {name}, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {who}}}]\n"
    )
}

pub(super) const CREATE: &[&str] = &["create", "-f", "-"];

pub(super) fn pod(ns: &str, name: &str, product: Option<&str>) -> String {
    let label = product.map(|p| format!("\n  labels: {{drmesh.io/data-product: {p}}}")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}{label}\nspec:\n  containers: [{{name: app, image: registry.example/app:1.0}}]\n"
    )
}

/// A workload of `kind` (apps/v1 Deployment or batch/v1 Job) whose pods carry `labels`.
pub(super) fn workload(kind: &str, ns: &str, name: &str, labels: &str) -> String {
    let (api, extra) = if kind == "Job" {
        (
            "batch/v1",
            "    spec: {restartPolicy: Never, containers: [{name: app, image: registry.example/app:1.0}]}\n"
                .to_string(),
        )
    } else {
        ("apps/v1", "    spec: {containers: [{name: app, image: registry.example/app:1.0}]}\n".to_string())
    };
    let selector = if kind == "Job" { String::new() } else { format!("  selector: {{matchLabels: {{{labels}}}}}\n") };
    format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{app.kubernetes.io/managed-by: drmesh}}\nspec:\n{selector}  template:\n    metadata: {{labels: {{{labels}}}}}\n{extra}"
    )
}

/// RBAC for alice and mallory: namespace admins (the `admin` ClusterRole) in `admin_of`,
/// and `get`, `patch`, `update` on the namespaces `may_edit`, their `status` and
/// `finalize` subresources included. Applied before the policies (which may refuse it).
pub(super) fn people_rbac(id: &str, admin_of: &[&str], may_edit: &[&str]) -> Vec<ClusterScoped> {
    let people = "- {apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}\n";
    let mut rbac = String::new();
    for ns in admin_of {
        rbac.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: people-admin, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}}\nsubjects:\n{people}"
        ));
    }
    if may_edit.is_empty() {
        ok("people's RBAC", kubectl_stdin(&["apply", "-f", "-"], &rbac));
        return Vec::new();
    }
    let names = may_edit.join(", ");
    rbac.push_str(&format!(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {id}-namespaces}}\nrules:\n- {{apiGroups: [\"\"], resources: [namespaces, namespaces/status, namespaces/finalize], resourceNames: [{names}], verbs: [get, patch, update]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {id}-namespaces}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {id}-namespaces}}\nsubjects:\n{people}"
    ));
    ok("people's RBAC", kubectl_stdin(&["apply", "-f", "-"], &rbac));
    vec![
        ClusterScoped { kind: "clusterrole", name: format!("{id}-namespaces") },
        ClusterScoped { kind: "clusterrolebinding", name: format!("{id}-namespaces") },
    ]
}

/// `more` merged into `base`, objects key by key (values of `more` win).
fn merge(base: &mut Value, more: Value) {
    match (base, more) {
        (Value::Object(base), Value::Object(more)) => {
            for (key, value) in more {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, more) => *base = more,
    }
}

/// The chart's admission policies for one test, rendered as release `drmesh-ID` in
/// `release_ns` with `more` values: the operator is `system:serviceaccount:ID:drmesh`,
/// every binding matches only the namespaces labelled with the test's fence, and kwok
/// (the local cluster's simulated kubelet) may report product pods' status. Applied,
/// type-checked by the API server without a warning, and enforced (probed with a
/// hostNetwork pod in `probe_ns`); removed when the returned guards drop.
pub(super) async fn install_policies(id: &str, release_ns: &str, more: Value, probe_ns: &str) -> Vec<ClusterScoped> {
    let mut values = json!({"admissionPolicies": {
        "operatorUsername": format!("system:serviceaccount:{id}:drmesh"),
        "namespaceSelector": {"matchLabels": {FENCE_LABEL: id}},
        "productPods": {"statusWriters": super::status_writers_with_kwok()},
        // Cluster-scoped, so not fenced: the tests' admin (system:masters) keeps writing
        // clearances for the tests that run beside this one.
        "securityOfficers": {"groups": ["drmesh:security-officers", "system:masters"]},
    }});
    merge(&mut values, more);
    let policies = render(
        &format!("drmesh-{id}"),
        release_ns,
        &values.to_string(),
        &["--show-only", "templates/admission-policies.yaml"],
    );
    let docs = documents(&policies);
    assert_eq!(docs.len(), 2 * super::ADMISSION_POLICIES.len(), "every policy and its binding");
    ok("apply the admission policies", kubectl_stdin(&["apply", "-f", "-"], &policies));
    let mut guards = Vec::new();
    for d in &docs {
        let kind = if d["kind"] == "ValidatingAdmissionPolicy" {
            "validatingadmissionpolicy"
        } else {
            "validatingadmissionpolicybinding"
        };
        guards.push(ClusterScoped { kind, name: d["metadata"]["name"].as_str().expect("name").to_string() });
    }
    // The API server type-checked every CEL expression against the real schemas.
    let vaps: Api<ValidatingAdmissionPolicy> = Api::all(harness::admin().await);
    for d in docs.iter().filter(|d| d["kind"] == "ValidatingAdmissionPolicy") {
        let name = d["metadata"]["name"].as_str().expect("name");
        let checked = harness::wait_for(&vaps, name, TIMEOUT, |p: Option<&ValidatingAdmissionPolicy>| {
            p.and_then(|p| p.status.as_ref()).is_some_and(|s| s.type_checking.is_some())
        })
        .await
        .expect("policy");
        let warnings =
            checked.status.and_then(|s| s.type_checking).and_then(|t| t.expression_warnings).unwrap_or_default();
        assert!(warnings.is_empty(), "{name}: CEL type-checking warnings: {warnings:?}");
    }
    // The API server loads policies and bindings in the order they were created: once the
    // last one (host-network) refuses, every one before it is in force.
    harness::eventually("the policies to be enforced", TIMEOUT, || {
        let out = kubectl_stdin(
            &["create", "--dry-run=server", "-f", "-"],
            &host_pod(probe_ns, "probe", HostAccess::Network),
        );
        async move { (!out.status.success() && stderr(&out).contains("denied request")).then_some(()) }
    })
    .await;
    guards
}

/// How a pod reaches into its node.
#[derive(Clone, Copy)]
pub(super) enum HostAccess {
    Network,
    Port,
    InitContainerPort,
}

/// A pod on the node's network, or with a host port (in a container or an init container).
pub(super) fn host_pod(ns: &str, name: &str, access: HostAccess) -> String {
    let port = ", ports: [{containerPort: 8080, hostPort: 18080}]";
    let (host_network, app, init) = match access {
        HostAccess::Network => ("\n  hostNetwork: true", "", String::new()),
        HostAccess::Port => ("", port, String::new()),
        HostAccess::InitContainerPort => {
            ("", "", format!("\n  initContainers: [{{name: init, image: registry.example/app:1.0{port}}}]"))
        }
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:{host_network}{init}\n  containers: [{{name: app, image: registry.example/app:1.0{app}}}]\n"
    )
}

#[tokio::test]
async fn admission_policies_refuse_tampering_and_forgery_and_let_drmesh_through() {
    let id = harness::unique_name("pkg-vap");
    let operator = format!("system:serviceaccount:{id}:drmesh");
    let break_glass = format!("drmesh:break-glass-{id}");
    let fence = [(FENCE_LABEL, id.as_str())];
    let classified = TestNamespace::create_with_labels(
        "pkg-vap-dr",
        &[(FENCE_LABEL, id.as_str()), ("drmesh.io/clearance", "Restricted")],
    )
    .await;
    let public = TestNamespace::create_with_labels("pkg-vap-pub", &fence).await;
    let doomed = TestNamespace::create_with_labels("pkg-vap-gone", &fence).await;
    let (dr, pb) = (classified.name.as_str(), public.name.as_str());

    // People are namespace admins here and may edit these namespaces: only admission
    // stands between them and tampering.
    let mut guards = people_rbac(&id, &[dr, pb, doomed.name.as_str()], &[dr, pb]);

    // The chart's policies, for this test's operator identity and namespaces.
    let values = json!({"admissionPolicies": {"classifiedNamespaces": {"breakGlassGroups": [break_glass]}}});
    guards.extend(install_policies(&id, &id, values, pb).await);

    // (a) What drmesh manages: the operator writes it, nobody else.
    accepted(
        "the operator creates a managed ConfigMap",
        as_identity(&operator, &[], CREATE, &config_map(dr, "managed", true)),
    );
    accepted(
        "the operator creates a managed NetworkPolicy in a Restricted namespace",
        as_identity(&operator, &[], CREATE, &allow_all_ingress(dr, "managed-np", true)),
    );
    accepted(
        "the operator creates a managed NetworkPolicy in a Public namespace",
        as_identity(&operator, &[], CREATE, &allow_all_ingress(pb, "managed-np", true)),
    );
    accepted(
        "the operator updates what it manages",
        as_identity(&operator, &[], &["annotate", "-n", dr, "configmap", "managed", "drmesh.io/touched=yes"], ""),
    );
    let managed = "managed by drmesh";
    refused(
        "mallory edits a managed ConfigMap",
        as_person("mallory", &["annotate", "-n", dr, "configmap", "managed", "x=y"], ""),
        managed,
    );
    refused(
        "mallory removes the managed-by label",
        as_person("mallory", &["label", "-n", dr, "configmap", "managed", "app.kubernetes.io/managed-by-"], ""),
        managed,
    );
    refused(
        "mallory deletes a managed NetworkPolicy",
        as_person("mallory", &["delete", "-n", pb, "networkpolicy", "managed-np"], ""),
        managed,
    );
    // In a classified namespace, classified-namespaces refuses it as well (and first).
    refused(
        "mallory deletes a managed NetworkPolicy in a Restricted namespace",
        as_person("mallory", &["delete", "-n", dr, "networkpolicy", "managed-np"], ""),
        "denied request",
    );
    refused(
        "the cluster admin deletes a managed ConfigMap",
        harness::kubectl(&["delete", "-n", dr, "configmap", "managed"]),
        managed,
    );
    let forged = "pass as its own";
    refused(
        "mallory forges the label on a new ConfigMap",
        as_person("mallory", CREATE, &config_map(pb, "forged", true)),
        forged,
    );
    refused(
        "alice forges the label on a new NetworkPolicy",
        as_person("alice", CREATE, &allow_all_ingress(pb, "forged", true)),
        forged,
    );
    accepted("mallory creates an ordinary ConfigMap", as_person("mallory", CREATE, &config_map(pb, "mine", false)));
    refused(
        "mallory adds the label to her ConfigMap",
        as_person("mallory", &["label", "-n", pb, "configmap", "mine", "app.kubernetes.io/managed-by=drmesh"], ""),
        forged,
    );
    accepted(
        "mallory edits her ConfigMap",
        as_person("mallory", &["annotate", "-n", pb, "configmap", "mine", "x=y"], ""),
    );
    accepted("mallory deletes her ConfigMap", as_person("mallory", &["delete", "-n", pb, "configmap", "mine"], ""));

    // The garbage collector removes the children of a deleted owner.
    accepted("the operator creates an owner", as_identity(&operator, &[], CREATE, &config_map(dr, "owner", true)));
    let owner_uid = classified.api::<ConfigMap>().get("owner").await.expect("owner").metadata.uid.expect("uid");
    let owned = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  namespace: {dr}\n  labels: {{app.kubernetes.io/managed-by: drmesh}}\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {owner_uid}}}]\n"
    );
    accepted("the operator creates a dependent", as_identity(&operator, &[], CREATE, &owned));
    accepted(
        "the operator deletes the owner",
        as_identity(&operator, &[], &["delete", "-n", dr, "configmap", "owner", "--wait=false"], ""),
    );
    harness::wait_deleted(&classified.api::<ConfigMap>(), "owned", TIMEOUT).await;

    // The namespace controller empties a deleted namespace of managed objects.
    accepted(
        "the operator creates a managed ConfigMap",
        as_identity(&operator, &[], CREATE, &config_map(&doomed.name, "managed", true)),
    );
    let namespaces: Api<Namespace> = Api::all(classified.client.clone());
    ok("delete the namespace", harness::kubectl(&["delete", "namespace", &doomed.name, "--wait=false"]));
    harness::wait_deleted(&namespaces, &doomed.name, TIMEOUT).await;

    // (b) No hand-made NetworkPolicy or RoleBinding where the clearance is above Public.
    let clearance = "(clearance Restricted)";
    refused(
        "mallory opens a Restricted namespace with a NetworkPolicy",
        as_person("mallory", CREATE, &allow_all_ingress(dr, "open", false)),
        clearance,
    );
    refused(
        "mallory binds herself a Role in a Restricted namespace",
        as_person("mallory", CREATE, &view_binding(dr, "peek", "mallory")),
        clearance,
    );
    refused(
        "the cluster admin adds a NetworkPolicy in a Restricted namespace",
        kubectl_stdin(CREATE, &allow_all_ingress(dr, "open", false)),
        clearance,
    );
    accepted(
        "mallory adds a NetworkPolicy in a Public namespace",
        as_person("mallory", CREATE, &allow_all_ingress(pb, "open", false)),
    );
    accepted(
        "mallory binds a Role in a Public namespace",
        as_person("mallory", CREATE, &view_binding(pb, "peek", "alice")),
    );
    accepted(
        "break glass: a NetworkPolicy in a Restricted namespace",
        as_identity("carol", &[&break_glass], CREATE, &allow_all_ingress(dr, "emergency", false)),
    );

    // (c) Only clearance admins set, change or remove a namespace's clearance.
    let label = "drmesh.io/clearance label";
    refused(
        "alice lowers a namespace's clearance",
        as_person("alice", &["label", "--overwrite", "namespace", dr, "drmesh.io/clearance=Public"], ""),
        label,
    );
    refused(
        "mallory removes a namespace's clearance",
        as_person("mallory", &["label", "namespace", dr, "drmesh.io/clearance-"], ""),
        label,
    );
    refused(
        "mallory raises a namespace's clearance",
        as_person("mallory", &["label", "namespace", pb, "drmesh.io/clearance=Restricted"], ""),
        label,
    );
    accepted("mallory sets another label", as_person("mallory", &["label", "namespace", dr, "team=police"], ""));
    refused(
        "the cluster admin creates a namespace with a clearance",
        kubectl_stdin(
            CREATE,
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {id}-new\n  labels: {{{FENCE_LABEL}: {id}, drmesh.io/clearance: Internal}}\n"
            ),
        ),
        label,
    );
    accepted(
        "a clearance admin classifies a namespace",
        as_identity(
            "dave",
            &["drmesh:clearance-admins"],
            &["label", "namespace", pb, "drmesh.io/clearance=Internal"],
            "",
        ),
    );
    // Now classified, the Public namespace refuses hand-made NetworkPolicies too.
    harness::eventually("the new clearance to be seen by admission", TIMEOUT, || {
        let out =
            as_person("mallory", &["create", "--dry-run=server", "-f", "-"], &allow_all_ingress(pb, "late", false));
        async move { stderr(&out).contains("(clearance Internal)").then_some(()) }
    })
    .await;

    // (d) Only a product's own Deployment's pods carry its identity on the network.
    let identity = "only the pods of the DataProduct";
    let claim = "drmesh.io/data-product: feed";
    refused(
        "mallory runs a pod posing as a product",
        as_person("mallory", CREATE, &pod(dr, "imposter", Some("feed"))),
        identity,
    );
    refused(
        "the cluster admin runs a pod posing as a product",
        kubectl_stdin(CREATE, &pod(dr, "imposter", Some("feed"))),
        identity,
    );
    let own = workload("Deployment", pb, "imposter", &format!("app: x, {claim}"));
    refused(
        "mallory's Deployment claims a product's pods",
        as_person("mallory", CREATE, &own.replace("  labels: {app.kubernetes.io/managed-by: drmesh}\n", "")),
        identity,
    );
    refused(
        "mallory's Job claims a product's pods",
        as_person(
            "mallory",
            CREATE,
            &workload("Job", pb, "imposter", claim).replace("  labels: {app.kubernetes.io/managed-by: drmesh}\n", ""),
        ),
        identity,
    );
    accepted("mallory runs an ordinary pod", as_person("mallory", CREATE, &pod(dr, "plain", None)));
    refused(
        "mallory relabels her pod as a product's",
        as_person("mallory", &["label", "-n", dr, "pod", "plain", "drmesh.io/data-product=feed"], ""),
        identity,
    );
    // The operator's Deployment: the deployment and ReplicaSet controllers create its
    // ReplicaSet and pods, which pass, and it becomes available.
    accepted(
        "the operator creates a product Deployment",
        as_identity(&operator, &[], CREATE, &workload("Deployment", dr, "feed", &format!("app: feed, {claim}"))),
    );
    let available =
        |d: Option<&Deployment>| d.and_then(|d| d.status.as_ref()).and_then(|s| s.available_replicas) == Some(1);
    harness::wait_for(&classified.api::<Deployment>(), "feed", TIMEOUT, available).await;
    drop(guards);
}

/// docs/install.md says how many admission policies the chart ships and lists each one;
/// docs/security-model.md counts them too, and the chart's README lists them as well. All
/// agree with what the chart renders.
#[test]
fn the_install_guide_lists_exactly_the_admission_policies_the_chart_renders() {
    let docs =
        documents(&render("drmesh", "drmesh-system", "{}", &["--show-only", "templates/admission-policies.yaml"]));
    let rendered: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "ValidatingAdmissionPolicy")
        .filter_map(|d| d["metadata"]["name"].as_str()?.strip_prefix("drmesh-"))
        .collect();
    assert_eq!(rendered, super::ADMISSION_POLICIES);
    let bindings = docs.iter().filter(|d| d["kind"] == "ValidatingAdmissionPolicyBinding").count();
    assert_eq!(bindings, rendered.len(), "one binding per policy");

    let repo = super::repo();
    let install = std::fs::read_to_string(repo.join("docs/install.md")).expect("docs/install.md");
    let start = install.find("\n## Admission policies\n").expect("an Admission policies section");
    let section = &install[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |end| end + 1)];
    let listed: Vec<&str> =
        section.lines().filter_map(|l| l.strip_prefix("| `RELEASE-")).filter_map(|l| l.split('`').next()).collect();
    assert_eq!(listed, rendered, "the policy table of docs/install.md");

    let words =
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"];
    let count = words[rendered.len()];
    let capitalised = format!("{}{}", count[..1].to_uppercase(), &count[1..]);
    assert!(
        section.contains(&format!("{capitalised} ValidatingAdmissionPolicies")),
        "the Admission policies section of docs/install.md must say \"{capitalised} ValidatingAdmissionPolicies\""
    );
    let said = format!("{count} ValidatingAdmissionPolicies");
    assert!(install[..start].contains(&said), "the introduction of docs/install.md must say \"{said}\"");
    let model = std::fs::read_to_string(repo.join("docs/security-model.md")).expect("docs/security-model.md");
    assert!(model.contains(&said), "docs/security-model.md must say \"{said}\"");
    // The chart's README (`helm show readme`) has the same table, in the same order.
    let readme = std::fs::read_to_string(super::chart_dir().join("README.md")).expect("the chart's README");
    let listed: Vec<&str> =
        readme.lines().filter_map(|l| l.strip_prefix("| `RELEASE-")).filter_map(|l| l.split('`').next()).collect();
    assert_eq!(listed, rendered, "the admission policy table of charts/drmesh/README.md");
    assert!(readme.contains(&said), "charts/drmesh/README.md must say \"{said}\"");
    for other in words.iter().filter(|w| **w != count) {
        let stale = format!("{other} ValidatingAdmissionPolicies");
        for (doc, text) in
            [("docs/install.md", &install), ("docs/security-model.md", &model), ("the chart's README", &readme)]
        {
            assert!(!text.to_lowercase().contains(&stale), "stale count in {doc}: {stale}");
        }
    }
}
