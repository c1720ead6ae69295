//! The live objects below are written as the API server stores them after drmesh's
//! server-side apply: server defaults the apply did not send, and managedFields naming
//! what each manager owns (fieldsV1: `f:` fields, `k:` keyed list items, `.` the node).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::*;

fn typed<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a valid object")
}

/// The isolation policy drmesh applies for product `feed`.
fn isolation() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "feed-isolation",
            "namespace": "d1",
            "labels": {"app.kubernetes.io/managed-by": "drmesh", "drmesh.io/data-product": "feed"},
            "ownerReferences": [{"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "name": "feed",
                                 "uid": "p-1", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "podSelector": {"matchLabels": {"drmesh.io/data-product": "feed"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": []
        }
    })
}

/// What drmesh-dataproduct owns after applying [`isolation`].
fn isolation_fields() -> Value {
    json!({
        "f:metadata": {
            "f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {}, "f:drmesh.io/data-product": {}},
            "f:ownerReferences": {".": {}, "k:{\"uid\":\"p-1\"}": {}}
        },
        "f:spec": {
            "f:egress": {},
            "f:ingress": {},
            "f:podSelector": {"f:matchLabels": {".": {}, "f:drmesh.io/data-product": {}}},
            "f:policyTypes": {}
        }
    })
}

fn entry(manager: &str, operation: &str, fields: Value) -> Value {
    json!({"manager": manager, "operation": operation, "apiVersion": "networking.k8s.io/v1",
           "time": "2026-12-03T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields})
}

/// [`isolation`] as stored: identity, and the empty lists dropped (Go's omitempty).
fn stored_isolation(managed: Vec<Value>) -> Value {
    let mut live = isolation();
    let meta = live["metadata"].as_object_mut().expect("metadata");
    meta.insert("uid".into(), json!("np-1"));
    meta.insert("resourceVersion".into(), json!("4711"));
    meta.insert("generation".into(), json!(1));
    meta.insert("creationTimestamp".into(), json!("2026-12-03T10:00:00Z"));
    meta.insert("managedFields".into(), Value::Array(managed));
    let spec = live["spec"].as_object_mut().expect("spec");
    spec.remove("ingress");
    spec.remove("egress");
    live
}

fn live_hash(object: Value) -> u64 {
    live::<NetworkPolicy>(&typed(object))
}

fn desired_hash(child: Value) -> u64 {
    desired::<NetworkPolicy>(&typed(child))
}

#[test]
fn a_child_as_drmesh_left_it_reads_as_what_it_would_apply() {
    let live = stored_isolation(vec![entry("drmesh-dataproduct", "Apply", isolation_fields())]);
    assert_eq!(live_hash(live), desired_hash(isolation()));
}

#[test]
fn a_changed_value_of_a_field_drmesh_owns_differs() {
    let mut live = stored_isolation(vec![entry("drmesh-dataproduct", "Apply", isolation_fields())]);
    live["spec"]["podSelector"]["matchLabels"]["drmesh.io/data-product"] = json!("other");
    assert_ne!(live_hash(live), desired_hash(isolation()));
}

#[test]
fn a_field_another_manager_took_over_differs_even_with_an_empty_looking_value() {
    // `kubectl edit` opens the isolation (ingress: [{}], from anyone): the field's
    // ownership moves to kubectl-edit, drmesh's set no longer has it.
    let mut ours = isolation_fields();
    ours["f:spec"].as_object_mut().expect("spec").remove("f:ingress");
    let mut live = stored_isolation(vec![
        entry("drmesh-dataproduct", "Apply", ours),
        entry("kubectl-edit", "Update", json!({"f:spec": {"f:ingress": {}}})),
    ]);
    live["spec"]["ingress"] = json!([{}]);
    assert_ne!(live_hash(live), desired_hash(isolation()));
}

#[test]
fn a_widening_under_drmesh_s_own_name_differs() {
    // Applied with drmesh's manager name: the field stays drmesh's, the value differs.
    let mut live = stored_isolation(vec![entry("drmesh-dataproduct", "Apply", isolation_fields())]);
    live["spec"]["ingress"] = json!([{}]);
    assert_ne!(live_hash(live), desired_hash(isolation()));
}

#[test]
fn a_forged_entry_giving_drmesh_a_field_it_does_not_set_differs() {
    let mut fields = isolation_fields();
    fields["f:metadata"]["f:annotations"] = json!({"f:note": {}});
    let mut live = stored_isolation(vec![entry("drmesh-dataproduct", "Apply", fields)]);
    live["metadata"]["annotations"] = json!({"note": "x"});
    assert_ne!(live_hash(live), desired_hash(isolation()));
}

#[test]
fn fields_only_other_managers_own_are_not_drmesh_s_concern() {
    // As with a re-apply, which leaves other managers' fields in place.
    let mut live = stored_isolation(vec![
        entry("drmesh-dataproduct", "Apply", isolation_fields()),
        entry("kubectl-annotate", "Update", json!({"f:metadata": {"f:annotations": {".": {}, "f:note": {}}}})),
    ]);
    live["metadata"]["annotations"] = json!({"note": "reviewed"});
    assert_eq!(live_hash(live), desired_hash(isolation()));
}

#[test]
fn only_applies_by_drmesh_s_managers_count() {
    let updated = stored_isolation(vec![entry("drmesh-dataproduct", "Update", isolation_fields())]);
    assert_eq!(live_hash(updated), NONE);
    let other = stored_isolation(vec![entry("someone", "Apply", isolation_fields())]);
    assert_eq!(live_hash(other), NONE);
    assert_ne!(desired_hash(isolation()), NONE);
}

#[test]
fn a_field_drmesh_no_longer_sets_but_still_owns_differs() {
    // The desired child dropped `egress`: an apply would remove it.
    let live = stored_isolation(vec![entry("drmesh-dataproduct", "Apply", isolation_fields())]);
    let mut child = isolation();
    child["spec"].as_object_mut().expect("spec").remove("egress");
    assert_ne!(live_hash(live), desired_hash(child));
}

/// A product's Deployment as drmesh applies it, and as the API server stores it.
fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "feed", "namespace": "d1", "labels": {"drmesh.io/data-product": "feed"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"drmesh.io/data-product": "feed"}},
            "template": {
                "metadata": {"labels": {"drmesh.io/data-product": "feed"}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "main", "image": "registry.example/feed:1",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp", "readOnly": false}]
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {}}]
                }
            }
        }
    })
}

fn deployment_fields() -> Value {
    json!({
        "f:metadata": {"f:labels": {".": {}, "f:drmesh.io/data-product": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {".": {}, "f:drmesh.io/data-product": {}}},
                "f:spec": {
                    "f:automountServiceAccountToken": {},
                    "f:containers": {"k:{\"name\":\"main\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}}},
                        "f:volumeMounts": {"k:{\"mountPath\":\"/tmp\"}": {".": {}, "f:mountPath": {}, "f:name": {}, "f:readOnly": {}}}
                    }},
                    "f:volumes": {"k:{\"name\":\"tmp\"}": {".": {}, "f:emptyDir": {}, "f:name": {}}}
                }
            }
        }
    })
}

fn stored_deployment() -> Value {
    let mut live = deployment();
    live["metadata"]["uid"] = json!("d-1");
    live["metadata"]["managedFields"] = json!([
        entry("drmesh-dataproduct", "Apply", deployment_fields()),
        entry("kube-controller-manager", "Update", json!({"f:status": {"f:replicas": {}}}))
    ]);
    let spec = &mut live["spec"];
    spec["revisionHistoryLimit"] = json!(10);
    spec["progressDeadlineSeconds"] = json!(600);
    spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
    let pod = &mut spec["template"]["spec"];
    pod["restartPolicy"] = json!("Always");
    pod["dnsPolicy"] = json!("ClusterFirst");
    pod["schedulerName"] = json!("default-scheduler");
    pod["securityContext"] = json!({});
    pod["terminationGracePeriodSeconds"] = json!(30);
    let container = &mut pod["containers"][0];
    container["imagePullPolicy"] = json!("IfNotPresent");
    container["terminationMessagePath"] = json!("/dev/termination-log");
    container["terminationMessagePolicy"] = json!("File");
    container["resources"] = json!({});
    container["ports"][0]["protocol"] = json!("TCP");
    // readOnly: false is dropped (omitempty); the field stays drmesh's.
    container["volumeMounts"][0].as_object_mut().expect("mount").remove("readOnly");
    live["status"] = json!({"replicas": 1, "availableReplicas": 1});
    live
}

#[test]
fn a_deployment_with_server_defaults_reads_as_what_drmesh_would_apply() {
    assert_eq!(live::<Deployment>(&typed(stored_deployment())), desired::<Deployment>(&typed(deployment())));
}

#[test]
fn a_swapped_image_or_an_extra_container_differs() {
    let want = desired::<Deployment>(&typed(deployment()));
    let mut swapped = stored_deployment();
    swapped["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil.example/feed:1");
    assert_ne!(live::<Deployment>(&typed(swapped)), want);

    // A second container added under drmesh's name (a forged apply): it is in the set.
    let mut fields = deployment_fields();
    fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"sidecar\"}"] =
        json!({".": {}, "f:image": {}, "f:name": {}});
    let mut extra = stored_deployment();
    extra["metadata"]["managedFields"][0]["fieldsV1"] = fields;
    extra["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "sidecar", "image": "evil.example/tap:1"}));
    assert_ne!(live::<Deployment>(&typed(extra)), want);
}

#[test]
fn the_hash_does_not_depend_on_key_order() {
    let a = json!({"b": 1, "a": {"d": [1, 2], "c": "x"}});
    let b = json!({"a": {"c": "x", "d": [1, 2]}, "b": 1});
    assert_eq!(digest(&a), digest(&b));
    assert_ne!(digest(&json!({"a": {"d": [2, 1], "c": "x"}, "b": 1})), digest(&a));
}
