//! RBAC and workloads. A RoleBinding gives each of its subjects every permission of the
//! Role its `roleRef` names; each must be one the guides allow in that namespace:
//! - an effective grant subject (User, Group, ServiceAccount, or a DataProduct's
//!   ServiceAccount): `get` on the product, its Service and `services/proxy` by port;
//! - an owner of a product: `get` on the product (and status), its Deployment, Service
//!   and contract ConfigMap, and on its Service proxy when it is not Restricted;
//! - the ServiceAccount of a product that may use a source: `get` on its Secret.
//!
//! A Deployment claiming to be a product runs only while the product may run, carries
//! the product's own pod label and ServiceAccount, is isolated both ways, and holds only
//! the Secrets of the sources the product may use.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::network::isolated;
use super::{Finding, Grant, Level, PRODUCT_LABEL, World, id, items, str_of, string_map};

/// (apiGroup, resource, verb, resourceName).
type Permission = (String, String, String, String);

fn perm(group: &str, resource: &str, name: &str) -> Permission {
    (group.into(), resource.into(), "get".into(), name.into())
}

/// Names under which the API server's service proxy reaches one port of a product.
fn proxy_names(product: &str, (number, name): &(i64, String)) -> Vec<String> {
    [number.to_string(), name.clone()]
        .iter()
        .flat_map(|p| [format!("{product}:{p}"), format!("http:{product}:{p}"), format!("https:{product}:{p}")])
        .collect()
}

/// Everything each RBAC subject may be given, by namespace.
fn allowed(world: &World, grants: &[Grant]) -> BTreeMap<(String, String), BTreeSet<Permission>> {
    let mut allowed: BTreeMap<(String, String), BTreeSet<Permission>> = BTreeMap::new();
    for g in grants {
        let p = &g.product;
        let mut perms = vec![perm("drmesh.io", "dataproducts", p), perm("", "services", p)];
        perms.extend(g.ports.iter().flat_map(|port| proxy_names(p, port)).map(|n| perm("", "services/proxy", &n)));
        for subject in g.subjects.iter().filter_map(|s| s.rbac()) {
            allowed.entry((g.namespace.clone(), subject)).or_default().extend(perms.iter().cloned());
        }
    }
    for p in world.products.values() {
        let n = &p.name;
        let mut perms = vec![
            perm("drmesh.io", "dataproducts", n),
            perm("drmesh.io", "dataproducts/status", n),
            perm("apps", "deployments", n),
            perm("", "services", n),
            perm("", "configmaps", &format!("{n}-contract")),
        ];
        // Owners read the data of Public and Internal products only: Restricted is need to
        // know; on an Internal one, every owner must be cleared.
        if p.level < Level::Restricted && world.owners_cleared(p) {
            perms.extend(p.ports.iter().flat_map(|port| proxy_names(n, port)).map(|x| perm("", "services/proxy", &x)));
        }
        for owner in p.owners.iter().filter(|o| o.starts_with("User:") || o.starts_with("Group:")) {
            allowed.entry((p.namespace.clone(), owner.clone())).or_default().extend(perms.iter().cloned());
        }
    }
    for s in world.sources.values() {
        for user in world.source_users(s) {
            let sa = format!("ServiceAccount:{}/{}", s.namespace, user.name);
            allowed.entry((s.namespace.clone(), sa)).or_default().insert(perm("", "secrets", &s.secret));
        }
    }
    allowed
}

fn strings(v: &Value) -> Vec<String> {
    items(v).filter_map(Value::as_str).map(String::from).collect()
}

/// Every permission a binding gives that no grant, ownership or source use allows.
pub(super) fn judge(world: &World, grants: &[Grant]) -> Vec<Finding> {
    let allowed = allowed(world, grants);
    let none = BTreeSet::new();
    let mut findings = Vec::new();
    for rb in &world.role_bindings {
        let child = id("RoleBinding", rb);
        let ns = str_of(&rb["metadata"]["namespace"]);
        let subjects: Vec<String> = items(&rb["subjects"])
            .map(|s| match s["kind"].as_str().unwrap_or_default() {
                "ServiceAccount" => format!(
                    "ServiceAccount:{}/{}",
                    s["namespace"].as_str().unwrap_or(&ns),
                    s["name"].as_str().unwrap_or_default()
                ),
                kind => format!("{kind}:{}", s["name"].as_str().unwrap_or_default()),
            })
            .collect();
        if subjects.is_empty() {
            continue;
        }
        let role_ref = &rb["roleRef"];
        let role_name = str_of(&role_ref["name"]);
        if role_ref["kind"] != "Role" {
            findings.push(Finding {
                child,
                what: format!(
                    "binds {} {role_name} to {subjects:?}: only namespaced Roles are given",
                    role_ref["kind"]
                ),
            });
            continue;
        }
        // A binding to a Role that does not exist gives nothing (yet).
        let Some(role) = world.roles.get(&(ns.clone(), role_name.clone())) else { continue };
        for (r, rule) in items(&role["rules"]).enumerate() {
            let mut names = strings(&rule["resourceNames"]);
            if names.is_empty() {
                names.push("*".into()); // no resourceNames: every object of the resource
            }
            for subject in &subjects {
                let mine = allowed.get(&(ns.clone(), subject.clone())).unwrap_or(&none);
                let mut beyond = Vec::new();
                for g in strings(&rule["apiGroups"]) {
                    for res in strings(&rule["resources"]) {
                        for verb in strings(&rule["verbs"]) {
                            for name in &names {
                                if !mine.contains(&(g.clone(), res.clone(), verb.clone(), name.clone())) {
                                    beyond.push(format!("{verb} {g}/{res} {name}"));
                                }
                            }
                        }
                    }
                }
                if !beyond.is_empty() {
                    findings.push(Finding {
                        child: child.clone(),
                        what: format!(
                            "{subject} may {} (Role {ns}/{role_name} rule {r}{}), which nothing declared allows",
                            beyond[0],
                            if beyond.len() > 1 { format!(", and {} more", beyond.len() - 1) } else { String::new() }
                        ),
                    });
                }
            }
        }
    }
    findings
}

/// The Secrets a pod template holds: volumes, projected volumes, env and envFrom.
fn secrets_of(template: &Value) -> BTreeSet<String> {
    let spec = &template["spec"];
    let mut out = BTreeSet::new();
    for v in items(&spec["volumes"]) {
        out.extend(v["secret"]["secretName"].as_str().map(String::from));
        out.extend(items(&v["projected"]["sources"]).filter_map(|s| s["secret"]["name"].as_str()).map(String::from));
    }
    for c in items(&spec["containers"]).chain(items(&spec["initContainers"])) {
        out.extend(items(&c["env"]).filter_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str()).map(String::from));
        out.extend(items(&c["envFrom"]).filter_map(|e| e["secretRef"]["name"].as_str()).map(String::from));
    }
    out
}

/// Deployments that claim to be a product's (drmesh's label, or the product label).
pub(super) fn judge_workloads(world: &World) -> Vec<Finding> {
    let mut findings = Vec::new();
    for d in &world.deployments {
        let labels = &d["metadata"]["labels"];
        let template = &d["spec"]["template"];
        let pod_labels = string_map(&template["metadata"]["labels"]);
        if labels["app.kubernetes.io/managed-by"] != "drmesh"
            && labels[PRODUCT_LABEL].is_null()
            && !pod_labels.contains_key(PRODUCT_LABEL)
        {
            continue;
        }
        let child = id("Deployment", d);
        let ns = str_of(&d["metadata"]["namespace"]);
        let name = labels[PRODUCT_LABEL].as_str().map(String::from).unwrap_or_else(|| str_of(&d["metadata"]["name"]));
        let mut report = |what: String| findings.push(Finding { child: child.clone(), what });
        let product = world.product(&ns, &name);
        match product {
            None => report(format!("runs pods for {ns}/{name}, which is not a declared product")),
            Some(p) if !world.may_run(p) => report(format!(
                "runs {ns}/{name} while it may not run (domain cleared {:?}, product {:?}, or an input classified above it)",
                world.clearance(&ns),
                p.level
            )),
            Some(_) => {}
        }
        if pod_labels.get(PRODUCT_LABEL) != Some(&name) {
            report(format!(
                "its pods carry {PRODUCT_LABEL}={:?}, not {name}: they take another product's network access",
                pod_labels.get(PRODUCT_LABEL)
            ));
        }
        let (ingress, egress) = isolated(world, &ns, &pod_labels);
        if !ingress {
            report("its pods are not isolated for ingress: any pod may reach them".into());
        }
        if !egress {
            report("its pods are not isolated for egress: they may reach anything".into());
        }
        let sa = template["spec"]["serviceAccountName"].as_str().or(template["spec"]["serviceAccount"].as_str());
        if sa.is_some_and(|sa| sa != name) {
            report(format!("its pods run as ServiceAccount {sa:?}, not {name}: they take that account's RBAC"));
        }
        for secret in secrets_of(template) {
            let usable = world.sources.values().any(|s| {
                s.namespace == ns && s.secret == secret && world.source_users(s).iter().any(|u| u.name == name)
            });
            if !usable {
                report(format!("its pods hold Secret {ns}/{secret}, which no source {name} may use has"));
            }
        }
    }
    findings
}

/// A product's Service is what `services/proxy` on `<product>:<port>` reaches: it must
/// select only the product's pods, and each port must lead to the same output port.
pub(super) fn judge_services(world: &World) -> Vec<Finding> {
    let mut findings = Vec::new();
    for svc in &world.services {
        let labels = &svc["metadata"]["labels"];
        if labels["app.kubernetes.io/managed-by"] != "drmesh" && labels[PRODUCT_LABEL].is_null() {
            continue;
        }
        let child = id("Service", svc);
        let ns = str_of(&svc["metadata"]["namespace"]);
        let name = labels[PRODUCT_LABEL].as_str().map(String::from).unwrap_or_else(|| str_of(&svc["metadata"]["name"]));
        let mut report = |what: String| findings.push(Finding { child: child.clone(), what });
        let selector = string_map(&svc["spec"]["selector"]);
        if selector.get(PRODUCT_LABEL) != Some(&name) {
            report(format!("selects {selector:?}, not only the pods of {ns}/{name}: its proxy reaches other pods"));
        }
        let declared = world.product(&ns, &name).map(|p| p.ports.clone()).unwrap_or_default();
        for port in items(&svc["spec"]["ports"]) {
            let number = port["port"].as_i64().unwrap_or_default();
            let target = &port["targetPort"];
            let leads_to = |n: i64| declared.iter().find(|(d, _)| *d == n);
            let Some((_, port_name)) = leads_to(number) else {
                report(format!("serves port {number}, not an output port of {ns}/{name}"));
                continue;
            };
            let same = target.is_null()
                || target.as_i64() == Some(number)
                || target.as_str() == Some(port_name.as_str())
                || target.as_str() == Some(number.to_string().as_str());
            if !same {
                report(format!(
                    "port {number} leads to the pods' port {target}: a grant on {number} reaches another port"
                ));
            }
        }
    }
    findings
}
