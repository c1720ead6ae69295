//! DataProduct: a workload that turns inputs into a served product.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::classification::Classification;
use super::common::{Condition, DNS1035_LABEL, DNS1123_SUBDOMAIN, DataProductRef, Owner, PORT_NAME};
use super::{MAX_OWNERS, MAX_PORTS, NO_DECLASSIFICATION, NO_DECLASSIFICATION_MESSAGE, PORT_NAME_OR_NUMBER};

/// Most inputs a product may declare.
pub const MAX_INPUTS: u32 = 64;

/// A workload that turns inputs (DataSources of its domain, DataProducts of any domain
/// that granted it access) into a product served on its output ports. drmesh runs it as
/// a hardened Deployment behind a Service named after the product, isolated by
/// NetworkPolicies so that it reaches only its inputs and is reached only by its grantees.
// Clippy mistakes the repeated `type_ = ...` inside printcolumn(..) for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "drmesh.io",
    version = "v1alpha1",
    kind = "DataProduct",
    namespaced,
    status = "DataProductStatus",
    shortname = "dp",
    category = "drmesh",
    derive = "PartialEq",
    doc = "A workload that turns inputs (DataSources of its domain, granted DataProducts of any domain) into a product served on its output ports, run as a hardened Deployment behind a Service named after the product.",
    printcolumn(name = "Classification", type_ = "string", json_path = ".spec.classification"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.availableReplicas"),
    printcolumn(name = "Consumers", type_ = "integer", json_path = ".status.consumerCount"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint", priority = 1),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.classification",
    validation = Rule::new(format!("size(self.metadata.name) <= 63 && self.metadata.name.matches('{DNS1035_LABEL}')")).message("metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, at most 63 characters): the product's Service is named after it"),
    validation = Rule::new("!self.metadata.name.startsWith('drmesh-')").message("metadata.name must not start with 'drmesh-': names starting so are kept for the children of DataSources and AccessPolicies (no generated name may collide)"),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct DataProductSpec {
    /// What the product offers, for people browsing the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// People and groups accountable for the product; they may read it, its workload,
    /// its contract and use its Service proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_OWNERS))]
    pub owners: Vec<Owner>,

    /// Sensitivity of the product: Public, Internal or Restricted. Must be at least the
    /// classification of every input (no declassification by derivation) and at most the
    /// clearance of the namespace. Cannot be lowered once set.
    #[x_kube(validation = Rule::new(NO_DECLASSIFICATION).message(NO_DECLASSIFICATION_MESSAGE))]
    pub classification: Classification,

    /// What the product reads: each entry names exactly one DataSource (same namespace)
    /// or one DataProduct (any namespace; a cross-namespace product needs an AccessPolicy
    /// granting this product).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_INPUTS))]
    pub inputs: Vec<DataProductInput>,

    /// The workload that computes and serves the product.
    pub runtime: Runtime,

    /// Ports the product serves on; they become the ports of its Service. Names and
    /// port numbers are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PORTS))]
    #[x_kube(
        merge_strategy = ListMerge::Map(vec!["name".into()]),
        validation = Rule::new("self.all(p, self.exists_one(q, q.name == p.name))").message("spec.outputPorts[].name must be unique"),
        validation = Rule::new("self.all(p, self.exists_one(q, q.port == p.port))").message("spec.outputPorts[].port must be unique")
    )]
    pub output_ports: Vec<OutputPort>,

    /// What consumers can rely on: the schema of the data and service levels. Published
    /// in a ConfigMap next to the product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<Contract>,
}

/// One input of a product: exactly one of `dataSource` or `dataProduct`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    cel,
    validation = Rule::new("has(self.dataSource) != has(self.dataProduct)").message("spec.inputs[] must set exactly one of dataSource or dataProduct"),
    validation = Rule::new("!has(self.ports) || has(self.dataProduct)").message("spec.inputs[].ports only applies to dataProduct inputs")
)]
pub struct DataProductInput {
    /// Name of a DataSource in the product's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(DNS1123_SUBDOMAIN))]
    pub data_source: Option<String>,

    /// A DataProduct in any namespace. Outside the product's own namespace, reading it
    /// needs an AccessPolicy there that grants `{kind: DataProduct}` to this product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_product: Option<DataProductRef>,

    /// Output ports of the input product to use, by name (or number); default: every
    /// port the grants allow. Only for dataProduct inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_PORTS), inner(length(min = 1, max = 15), pattern(PORT_NAME_OR_NUMBER)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub ports: Option<Vec<String>>,
}

/// The workload of a product.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    /// Container image, e.g. registry.example/drmesh/incident-feed:1.0.
    #[schemars(length(min = 1, max = 512), pattern(r"^\S+$"))]
    pub image: String,

    /// Entrypoint override (the image's ENTRYPOINT when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub command: Vec<String>,

    /// Arguments (the image's CMD when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 4096)))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub args: Vec<String>,

    /// Environment variables, literal values only. There is deliberately no `valueFrom`:
    /// a product reads secrets only through the DataSources it declares, whose
    /// credentials drmesh mounts under least-privilege RBAC; `secretKeyRef` would let it
    /// read any Secret of its namespace around those controls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,

    /// Number of pods, 0 to 100 (0 stops the product without deleting it).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// CPU and memory requests and limits of the container; small defaults when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,

    /// Secrets of the product's namespace (type kubernetes.io/dockerconfigjson) the
    /// kubelet uses to pull `image` from an authenticated registry, as a pod's
    /// `imagePullSecrets`; never mounted into the product.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub image_pull_secrets: Vec<super::datasource::SecretRef>,
}

fn default_replicas() -> i32 {
    1
}

/// A literal environment variable.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    /// Variable name, e.g. LOG_LEVEL.
    #[schemars(length(min = 1, max = 253), pattern("^[-._a-zA-Z][-._a-zA-Z0-9]*$"))]
    pub name: String,
    /// Literal value.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub value: String,
}

/// Compute resources, as in a container's `resources` (without `claims`).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
pub struct Resources {
    /// Minimum resources, e.g. {cpu: 100m, memory: 128Mi}.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = quantities)]
    pub requests: BTreeMap<String, Quantity>,
    /// Maximum resources, e.g. {memory: 256Mi}.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = quantities)]
    pub limits: BTreeMap<String, Quantity>,
}

/// Non-negative Kubernetes quantities (the upstream pattern without a leading sign).
const QUANTITY: &str =
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// At most 8 resources, each a quantity (integer or string), checked at admission. Also
/// replaces Quantity's very long upstream description, repeated for every map.
fn quantities(schema: &mut schemars::Schema) {
    schema.insert("maxProperties".into(), 8.into());
    schema.insert(
        "additionalProperties".into(),
        serde_json::json!({"x-kubernetes-int-or-string": true, "pattern": QUANTITY}),
    );
}

/// A port the product serves on.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
pub struct OutputPort {
    /// Port name, unique in the product (becomes the Service port name), e.g. http.
    #[schemars(length(min = 1, max = 15), pattern(PORT_NAME))]
    pub name: String,
    /// Port number, 1 to 65535, on both the container and the Service.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Application protocol: HTTP, GRPC, SQL, Kafka or TCP.
    pub protocol: OutputProtocol,
}

/// Application protocol of an output port.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputProtocol {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "GRPC")]
    Grpc,
    #[serde(rename = "SQL")]
    Sql,
    Kafka,
    #[serde(rename = "TCP")]
    Tcp,
}

/// What consumers can rely on.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Contract {
    /// Schema of the served data, free form (JSON Schema, SQL DDL, Avro, prose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub schema: Option<String>,
    /// Service levels the owners commit to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_levels: Option<ServiceLevels>,
}

/// Service levels of a product.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
pub struct ServiceLevels {
    /// Availability target as a percentage, e.g. 99.9%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), pattern("^(100|[0-9]{1,2})([.][0-9]+)?%$"))]
    pub availability: Option<String>,
    /// Maximum age of the served data, as a duration such as 30s, 5m or 1h30m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), pattern("^([0-9]+(ms|s|m|h))+$"))]
    pub freshness: Option<String>,
    /// Expected response time, as a duration such as 200ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), pattern("^([0-9]+(ms|s|m|h))+$"))]
    pub latency: Option<String>,
    /// Support hours and contact, free form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub support: Option<String>,
}

/// Observed state of a DataProduct, written by the operator.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataProductStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Reconciling, Stalled; reasons such as InputNotFound, InputNotGranted,
    /// ClassificationViolation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Pods of the product that are available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,

    /// In-cluster address of the product's Service, e.g. incident-feed.police.svc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// State of each input, in the order of spec.inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputStatus>,

    /// DataProducts that declare this product as an input, ordered by namespace and name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<DataProductRef>,

    /// Number of consumers (shown by kubectl get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_count: Option<i32>,

    /// Owners who read the product's data by being owners (`Kind:name`): owners of a
    /// Public or Internal product; none for a Restricted one (they need an AccessPolicy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners_with_data_access: Vec<String>,
}

/// State of one input of a product.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
pub struct InputStatus {
    /// The input: `DataSource NAME` or `DataProduct NAMESPACE/NAME`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Whether the product may use the input now.
    pub state: InputState,
    /// CamelCase reason when not Ready, e.g. InputNotFound, InputNotGranted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// State of an input: Ready (found, granted, classification allows it), Pending (not
/// there yet, e.g. not found or not ready: may resolve by itself), Denied (a rule
/// forbids it: not granted, or classified higher than the product).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputState {
    Ready,
    Pending,
    Denied,
}
