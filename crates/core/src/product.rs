//! Builds every child of a DataProduct from its plan: the isolation NetworkPolicy,
//! ServiceAccount, Service, hardened Deployment, owners' RBAC and contract ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, LocalObjectReference,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicySpec};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::k8s::{self, match_labels, pods_in, port, role_ref, rule};
use super::labels::{self, DATA_PRODUCT};
use super::owner_reference;
use super::rules::{ProductPlan, Reach};
use crate::api::{DataProduct, OutputProtocol, OwnerKind};

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
    let m = |child_name: String| k8s::meta(&child_name, &namespace, &labels, &owner);
    let (owners_role, owners_binding) = owners_rbac(product, plan.owners_read_data, &m);
    // Held until none of the product's pods is left (deletion order: pods go first).
    let mut isolation_meta = m(labels::product_isolation(&name));
    isolation_meta.finalizers = Some(vec![labels::ISOLATION_FINALIZER.to_string()]);
    ProductBundle {
        isolation: NetworkPolicy {
            metadata: isolation_meta,
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(match_labels([(DATA_PRODUCT, name.as_str())])),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: Some(vec![]),
                egress: Some(egress_rules(plan)),
            }),
        },
        service_account: ServiceAccount {
            metadata: m(name.clone()),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        },
        service: service(product, &m),
        deployment: plan.runnable().then(|| deployment(product, plan, &m)),
        owners_role,
        owners_binding,
        contract: product.spec.contract.as_ref().map(|contract| ConfigMap {
            metadata: m(labels::product_contract(&name)),
            data: Some(BTreeMap::from([(
                "contract.yaml".to_string(),
                drmesh_yaml::to_string(contract).unwrap_or_default(),
            )])),
            ..ConfigMap::default()
        }),
    }
}

/// DNS to the cluster resolver, then each granted input product on its granted ports.
fn egress_rules(plan: &ProductPlan) -> Vec<NetworkPolicyEgressRule> {
    let namespace = |ns: &str| match_labels([(labels::NAMESPACE_NAME, ns)]);
    let mut rules = vec![NetworkPolicyEgressRule {
        to: Some(vec![pods_in(namespace("kube-system"), match_labels([("k8s-app", "kube-dns")]))]),
        ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
    }];
    for input in &plan.inputs {
        if let Ok(Reach::Product { key, ports, .. }) = &input.outcome {
            rules.push(NetworkPolicyEgressRule {
                to: Some(vec![pods_in(namespace(&key.namespace), match_labels([(DATA_PRODUCT, key.name.as_str())]))]),
                ports: Some(ports.iter().map(|p| port("TCP", *p)).collect()),
            });
        }
    }
    rules
}

fn service(product: &DataProduct, m: &dyn Fn(String) -> ObjectMeta) -> Option<Service> {
    if product.spec.output_ports.is_empty() {
        return None;
    }
    let ports = product
        .spec
        .output_ports
        .iter()
        .map(|p| ServicePort {
            name: Some(p.name.clone()),
            port: p.port,
            target_port: Some(IntOrString::Int(p.port)),
            protocol: Some("TCP".into()),
            app_protocol: app_protocol(p.protocol).map(String::from),
            ..ServicePort::default()
        })
        .collect();
    Some(Service {
        metadata: m(product.name_any()),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(DATA_PRODUCT.to_string(), product.name_any())])),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

fn app_protocol(protocol: OutputProtocol) -> Option<&'static str> {
    match protocol {
        OutputProtocol::Http => Some("http"),
        OutputProtocol::Grpc => Some("kubernetes.io/h2c"),
        OutputProtocol::Sql | OutputProtocol::Kafka | OutputProtocol::Tcp => None,
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

fn deployment(product: &DataProduct, plan: &ProductPlan, m: &dyn Fn(String) -> ObjectMeta) -> Deployment {
    let name = product.name_any();
    let runtime = &product.spec.runtime;
    let restricted = SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    };
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity("256Mi".into())), medium: None }),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..VolumeMount::default() }];
    for input in &plan.inputs {
        if let (Ok(Reach::Source { secret }), super::rules::InputKey::Source(source)) = (&input.outcome, &input.input) {
            let volume = format!("source-{source}");
            volumes.push(Volume {
                name: volume.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.clone()),
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
            mounts.push(VolumeMount {
                name: volume,
                mount_path: format!("{SOURCES_DIR}/{source}"),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
    }
    let env: Vec<EnvVar> = runtime
        .env
        .iter()
        .map(|e| EnvVar { name: e.name.clone(), value: Some(e.value.clone()), value_from: None })
        .collect();
    let ports: Vec<ContainerPort> = product
        .spec
        .output_ports
        .iter()
        .map(|p| ContainerPort {
            name: Some(p.name.clone()),
            container_port: p.port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        })
        .collect();
    let container = Container {
        name: "product".into(),
        image: Some(runtime.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        // An empty keyed list is not sent: server-side apply records no field for it,
        // so the stored Deployment would not read back as applied (and sending none
        // removes what drmesh set before just the same).
        env: (!env.is_empty()).then_some(env),
        ports: (!ports.is_empty()).then_some(ports),
        resources: Some(resources(product)),
        security_context: Some(restricted),
        volume_mounts: Some(mounts),
        command: (!runtime.command.is_empty()).then(|| runtime.command.clone()),
        args: (!runtime.args.is_empty()).then(|| runtime.args.clone()),
        ..Container::default()
    };
    let pod_labels = BTreeMap::from([
        (DATA_PRODUCT.to_string(), name.clone()),
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
    ]);
    Deployment {
        metadata: m(name.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(runtime.replicas),
            selector: match_labels([(DATA_PRODUCT, name.as_str())]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.clone()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        seccomp_profile: Some(runtime_default()),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    image_pull_secrets: (!runtime.image_pull_secrets.is_empty()).then(|| {
                        runtime
                            .image_pull_secrets
                            .iter()
                            .map(|s| LocalObjectReference { name: s.name.clone() })
                            .collect()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// Declared resources, or small defaults so that no product runs unbounded.
fn resources(product: &DataProduct) -> ResourceRequirements {
    let declared = product.spec.runtime.resources.clone().unwrap_or_default();
    let or = |declared: BTreeMap<String, Quantity>, default: &[(&str, &str)]| {
        if declared.is_empty() {
            default.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
        } else {
            declared
        }
    };
    ResourceRequirements {
        requests: Some(or(declared.requests, &[("cpu", "50m"), ("memory", "64Mi")])),
        limits: Some(or(declared.limits, &[("memory", "256Mi")])),
        claims: None,
    }
}

/// Whether a product's owners may read its data (`services/proxy`) by being owners, as
/// far as the product alone tells. Above Internal, the data is need to know: owners get it
/// like anyone else, through an AccessPolicy with a purpose and an expiry (the same bar as
/// any grant of that level); on an Internal product every owner must also be cleared
/// (the plan's `owners_read_data` says whether they are).
pub fn owners_read_data(product: &DataProduct) -> bool {
    !product.spec.owners.is_empty()
        && product.spec.classification < crate::api::Classification::Restricted
        && !product.spec.output_ports.is_empty()
}

/// Owners may see the product, its workload, its Service and its contract; they read its
/// data through the Service proxy only when the plan says they do.
fn owners_rbac(
    product: &DataProduct,
    read_data: bool,
    m: &dyn Fn(String) -> ObjectMeta,
) -> (Option<Role>, Option<RoleBinding>) {
    if product.spec.owners.is_empty() {
        return (None, None);
    }
    let name = product.name_any();
    let role_name = labels::product_owners(&name);
    let mut rules = vec![
        rule("drmesh.io", &["dataproducts", "dataproducts/status"], vec![name.clone()], &["get"]),
        rule("apps", &["deployments"], vec![name.clone()], &["get"]),
        rule("", &["services"], vec![name.clone()], &["get"]),
        rule("", &["configmaps"], vec![labels::product_contract(&name)], &["get"]),
    ];
    if read_data {
        let ports: Vec<(i32, String)> = product.spec.output_ports.iter().map(|p| (p.port, p.name.clone())).collect();
        rules.push(rule("", &["services/proxy"], super::grant::proxy_names(&name, &ports), &["get"]));
    }
    let role = Role { metadata: m(role_name.clone()), rules: Some(rules) };
    let kind = |k: OwnerKind| match k {
        OwnerKind::User => "User",
        OwnerKind::Group => "Group",
    };
    let subjects = product.spec.owners.iter().map(|o| k8s::person(kind(o.kind), &o.name)).collect();
    let binding =
        RoleBinding { metadata: m(role_name.clone()), role_ref: role_ref(&role_name), subjects: Some(subjects) };
    (Some(role), Some(binding))
}
