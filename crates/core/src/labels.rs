//! Labels, annotations and names the operator puts on what it manages.

/// `app.kubernetes.io/managed-by` — on every child.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGER: &str = "drmesh";
/// On a product's children and pods: the product's name.
pub const DATA_PRODUCT: &str = "drmesh.io/data-product";
/// On a source's children: the source's name.
pub const DATA_SOURCE: &str = "drmesh.io/data-source";
/// On a grant's children: the AccessPolicy's name.
pub const ACCESS_POLICY: &str = "drmesh.io/access-policy";
/// Namespace label holding the domain's clearance.
pub const CLEARANCE: &str = "drmesh.io/clearance";
/// On a Secret: `"true"` releases it to drmesh, which then mounts it into the pods of
/// the products that use a DataSource naming it. Without it the source is not Ready.
pub const CREDENTIALS: &str = "drmesh.io/credentials";
/// Finalizer holding a product's isolation NetworkPolicy until none of its pods is left.
pub const ISOLATION_FINALIZER: &str = "drmesh.io/isolation";
/// Set by the API server on every namespace; used to select a namespace by name.
pub const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// Field managers, one per controller.
pub const MANAGER_DATA_PRODUCT: &str = "drmesh-dataproduct";
pub const MANAGER_DATA_SOURCE: &str = "drmesh-datasource";
pub const MANAGER_ACCESS_POLICY: &str = "drmesh-accesspolicy";

/// Name of the NetworkPolicy isolating a product's pods (deny by default, egress to inputs).
pub fn product_isolation(product: &str) -> String {
    format!("{product}-isolation")
}
/// Name of the Role and RoleBinding giving a product's owners read access.
pub fn product_owners(product: &str) -> String {
    format!("{product}-owners")
}
/// Name of the ConfigMap publishing a product's contract.
pub fn product_contract(product: &str) -> String {
    format!("{product}-contract")
}
/// Name of the Role/RoleBinding letting consumers' ServiceAccounts read a source's Secret.
pub fn source_credentials(source: &str) -> String {
    format!("drmesh-source-{source}")
}
/// Name of the NetworkPolicy letting consumers reach a source's endpoint.
pub fn source_egress(source: &str) -> String {
    format!("drmesh-source-{source}-egress")
}
/// Name of the Role, RoleBinding and NetworkPolicy a grant produces.
pub fn grant(policy: &str) -> String {
    format!("drmesh-grant-{policy}")
}
