//! Builds every child of a DataProduct from its plan: the isolation NetworkPolicy,
//! ServiceAccount, Service, hardened Deployment, owners' RBAC and contract ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::labels::{self, DATA_PRODUCT};
use super::rules::{ProductPlan, Reach};
use super::{meta, owner_reference, typed};
use crate::api::{DataProduct, OutputProtocol};

/// UID and GID the product's containers run as (non-root, as Pod Security "restricted" wants).
pub const RUN_AS: i64 = 65532;
/// Where a source's credentials are mounted: `/var/run/drmesh/sources/<source>/`.
pub const SOURCES_DIR: &str = "/var/run/drmesh/sources";

/// Every child of one DataProduct. `apply` destructures it without `..`.
#[derive(Clone, Debug, Default)]
pub struct ProductBundle {
    /// Deny by default: selects the product's pods, allows DNS and granted inputs only.
    pub isolation: NetworkPolicy,
    pub service_account: ServiceAccount,
    /// Absent when the product has no output port.
    pub service: Option<Service>,
    /// Absent when a rule forbids running the product.
    pub deployment: Option<Deployment>,
    pub owners_role: Option<Role>,
    pub owners_binding: Option<RoleBinding>,
    pub contract: Option<ConfigMap>,
}

fn product_labels(product: &DataProduct) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (DATA_PRODUCT.to_string(), product.name_any()),
    ])
}

/// Builds the children of `product` as `plan` allows.
pub fn build(product: &DataProduct, plan: &ProductPlan) -> ProductBundle {
    let owner = owner_reference(product);
    let labels = product_labels(product);
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    let m = |child_name: String| meta(&child_name, &namespace, &labels, &owner);
    let (owners_role, owners_binding) = owners_rbac(product, &m);
    // Held until none of the product's pods is left (deletion order: pods go first).
    let mut isolation_meta = m(labels::product_isolation(&name));
    isolation_meta["finalizers"] = json!([labels::ISOLATION_FINALIZER]);
    ProductBundle {
        isolation: typed(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": isolation_meta,
            "spec": {
                "podSelector": {"matchLabels": {DATA_PRODUCT: name}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": egress_rules(plan),
            }
        })),
        service_account: typed(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": m(name.clone()),
            "automountServiceAccountToken": false,
        })),
        service: service(product, &m),
        deployment: plan.runnable().then(|| deployment(product, plan, &m)),
        owners_role,
        owners_binding,
        contract: product.spec.contract.as_ref().map(|contract| {
            let text = serde_yaml::to_string(contract).unwrap_or_default();
            typed(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": m(labels::product_contract(&name)),
                "data": {"contract.yaml": text},
            }))
        }),
    }
}

/// DNS to the cluster resolver, then each granted input product on its granted ports.
fn egress_rules(plan: &ProductPlan) -> Vec<Value> {
    let mut rules = vec![json!({
        "to": [{
            "namespaceSelector": {"matchLabels": {labels::NAMESPACE_NAME: "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    })];
    for input in &plan.inputs {
        if let Ok(Reach::Product { key, ports, .. }) = &input.outcome {
            rules.push(json!({
                "to": [{
                    "namespaceSelector": {"matchLabels": {labels::NAMESPACE_NAME: key.namespace}},
                    "podSelector": {"matchLabels": {DATA_PRODUCT: key.name}},
                }],
                "ports": ports.iter().map(|p| json!({"protocol": "TCP", "port": p})).collect::<Vec<_>>(),
            }));
        }
    }
    rules
}

fn service(product: &DataProduct, m: &dyn Fn(String) -> Value) -> Option<Service> {
    if product.spec.output_ports.is_empty() {
        return None;
    }
    let ports: Vec<Value> = product
        .spec
        .output_ports
        .iter()
        .map(|p| {
            let mut port = json!({"name": p.name, "port": p.port, "targetPort": p.port, "protocol": "TCP"});
            if let Some(app) = app_protocol(p.protocol) {
                port["appProtocol"] = json!(app);
            }
            port
        })
        .collect();
    Some(typed(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": m(product.name_any()),
        "spec": {
            "selector": {DATA_PRODUCT: product.name_any()},
            "ports": ports,
        }
    })))
}

fn app_protocol(protocol: OutputProtocol) -> Option<&'static str> {
    match protocol {
        OutputProtocol::Http => Some("http"),
        OutputProtocol::Grpc => Some("kubernetes.io/h2c"),
        OutputProtocol::Sql | OutputProtocol::Kafka | OutputProtocol::Tcp => None,
    }
}

fn deployment(product: &DataProduct, plan: &ProductPlan, m: &dyn Fn(String) -> Value) -> Deployment {
    let name = product.name_any();
    let runtime = &product.spec.runtime;
    let restricted = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}})];
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    for input in &plan.inputs {
        if let (Ok(Reach::Source { secret }), super::rules::InputKey::Source(source)) = (&input.outcome, &input.input) {
            let volume = format!("source-{source}");
            volumes.push(json!({"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440}}));
            mounts.push(json!({"name": volume, "mountPath": format!("{SOURCES_DIR}/{source}"), "readOnly": true}));
        }
    }
    let env: Vec<Value> = runtime.env.iter().map(|e| json!({"name": e.name, "value": e.value})).collect();
    let ports: Vec<Value> = product
        .spec
        .output_ports
        .iter()
        .map(|p| json!({"name": p.name, "containerPort": p.port, "protocol": "TCP"}))
        .collect();
    let mut container = json!({
        "name": "product",
        "image": runtime.image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "ports": ports,
        "resources": resources(product),
        "securityContext": restricted,
        "volumeMounts": mounts,
    });
    if !runtime.command.is_empty() {
        container["command"] = json!(runtime.command);
    }
    if !runtime.args.is_empty() {
        container["args"] = json!(runtime.args);
    }
    let pod_labels = json!({DATA_PRODUCT: name, labels::MANAGED_BY: labels::MANAGER});
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": m(name.clone()),
        "spec": {
            "replicas": runtime.replicas,
            "selector": {"matchLabels": {DATA_PRODUCT: name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                }
            }
        }
    });
    if !runtime.image_pull_secrets.is_empty() {
        let secrets: Vec<Value> = runtime.image_pull_secrets.iter().map(|s| json!({"name": s.name})).collect();
        deployment["spec"]["template"]["spec"]["imagePullSecrets"] = json!(secrets);
    }
    typed(deployment)
}

/// Declared resources, or small defaults so that no product runs unbounded.
fn resources(product: &DataProduct) -> Value {
    let declared = serde_json::to_value(&product.spec.runtime.resources).unwrap_or(Value::Null);
    let has = |key: &str| declared.get(key).and_then(Value::as_object).is_some_and(|m| !m.is_empty());
    let mut out = json!({});
    out["requests"] =
        if has("requests") { declared["requests"].clone() } else { json!({"cpu": "50m", "memory": "64Mi"}) };
    out["limits"] = if has("limits") { declared["limits"].clone() } else { json!({"memory": "256Mi"}) };
    out
}

/// Whether a product's owners read its data (`services/proxy`) by being owners. Above
/// Internal, the data is need to know: owners get it like anyone else, through an
/// AccessPolicy with a purpose and an expiry (the same bar as any grant of that level).
pub fn owners_read_data(product: &DataProduct) -> bool {
    !product.spec.owners.is_empty()
        && product.spec.classification < crate::api::Classification::Restricted
        && !product.spec.output_ports.is_empty()
}

/// Owners may see the product, its workload, its Service and its contract; they read its
/// data through the Service proxy only when [`owners_read_data`].
fn owners_rbac(product: &DataProduct, m: &dyn Fn(String) -> Value) -> (Option<Role>, Option<RoleBinding>) {
    if product.spec.owners.is_empty() {
        return (None, None);
    }
    let name = product.name_any();
    let role_name = labels::product_owners(&name);
    let mut rules = vec![
        json!({"apiGroups": ["drmesh.io"], "resources": ["dataproducts", "dataproducts/status"], "resourceNames": [name], "verbs": ["get"]}),
        json!({"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [name], "verbs": ["get"]}),
        json!({"apiGroups": [""], "resources": ["services"], "resourceNames": [name], "verbs": ["get"]}),
        json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [labels::product_contract(&name)], "verbs": ["get"]}),
    ];
    if owners_read_data(product) {
        let ports: Vec<(i32, String)> = product.spec.output_ports.iter().map(|p| (p.port, p.name.clone())).collect();
        rules.push(json!({"apiGroups": [""], "resources": ["services/proxy"], "resourceNames": super::grant::proxy_names(&name, &ports), "verbs": ["get"]}));
    }
    let role = typed(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": m(role_name.clone()),
        "rules": rules,
    }));
    let subjects: Vec<Value> = product
        .spec
        .owners
        .iter()
        .map(|o| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": o.kind, "name": o.name}))
        .collect();
    let binding = typed(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": m(role_name.clone()),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": subjects,
    }));
    (Some(role), Some(binding))
}
