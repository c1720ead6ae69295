//! DataSource: where raw data lives, owned by one domain.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::classification::Classification;
use super::common::{Condition, DNS1123_LABEL, DNS1123_SUBDOMAIN, DataProductRef, Owner};
use super::{MAX_OWNERS, NO_DECLASSIFICATION, NO_DECLASSIFICATION_MESSAGE};

/// Where raw data lives (a database, a bucket, a topic, an API), owned by the domain
/// (namespace) it is declared in. drmesh lets only the DataProducts that use the source
/// read its credentials Secret and reach its endpoint.
// Clippy mistakes the repeated `type_ = ...` inside printcolumn(..) for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "drmesh.io",
    version = "v1alpha1",
    kind = "DataSource",
    namespaced,
    status = "DataSourceStatus",
    // `ds` is the contract's short name but kubectl resolves it to DaemonSets first
    // (built-in resources win); `dsrc` always reaches DataSources.
    shortname = "ds",
    shortname = "dsrc",
    category = "drmesh",
    derive = "PartialEq",
    doc = "Where raw data lives (database, bucket, topic, API), owned by the domain (namespace) it is declared in. Only the DataProducts that use the source may read its credentials and reach its endpoint.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Classification", type_ = "string", json_path = ".spec.classification"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Consumers", type_ = "integer", json_path = ".status.consumerCount"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.classification",
    selectable = ".spec.type",
    validation = Rule::new(format!("size(self.metadata.name) <= 63 && self.metadata.name.matches('{DNS1123_LABEL}')")).message("metadata.name must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters): the source's children carry it as a label"),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceSpec {
    /// What the source holds, for people browsing the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// People and groups accountable for the source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_OWNERS))]
    pub owners: Vec<Owner>,

    /// Sensitivity of the data: Public, Internal or Restricted. Products built on the
    /// source must be classified at least as high. Cannot be lowered once set.
    #[x_kube(validation = Rule::new(NO_DECLASSIFICATION).message(NO_DECLASSIFICATION_MESSAGE))]
    pub classification: Classification,

    /// Technology of the source: Postgres, S3, Kafka, Http, Sftp or Other.
    #[serde(rename = "type")]
    pub source_type: DataSourceType,

    /// Network endpoint that consuming products are allowed to reach.
    pub endpoint: Endpoint,

    /// Secret (same namespace) holding the credentials. Only the ServiceAccounts of the
    /// DataProducts that use this source may read it; drmesh mounts it into their pods.
    pub credentials_secret_ref: SecretRef,
}

/// Technology of a data source.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataSourceType {
    Postgres,
    S3,
    Kafka,
    Http,
    Sftp,
    Other,
}

/// Where a source is reached. NetworkPolicies match IP ranges, not names: egress from
/// consuming products is opened to `cidr` when given.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    cel,
    validation = Rule::new("has(self.host) || has(self.cidr)").message("spec.endpoint must set host, cidr, or both")
)]
pub struct Endpoint {
    /// DNS name or IP address that consumers connect to (e.g. incident-db.police.example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(format!("isIP(self) || self.matches('{DNS1123_SUBDOMAIN}')")).message("spec.endpoint.host must be a lowercase DNS name or an IP address"))]
    pub host: Option<String>,

    /// IP range of the endpoint in CIDR notation (e.g. 10.20.0.0/24); egress from
    /// consuming products is allowed to this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("spec.endpoint.cidr must be a CIDR such as 10.20.0.0/24"))]
    pub cidr: Option<String>,

    /// TCP port of the endpoint, 1 to 65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// A Secret in the same namespace.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), pattern(DNS1123_SUBDOMAIN))]
    pub name: String,
}

/// Observed state of a DataSource, written by the operator.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready (reasons such as SecretNotFound), Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// DataProducts that use this source, ordered by namespace and name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<DataProductRef>,

    /// Number of consumers (shown by kubectl get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_count: Option<i32>,
}
