//! The part of the chaos mesh whose access narrows under faults: three domains beside the
//! big mesh, `<prefix>n-prod` (a Restricted product on a Restricted source, granted to
//! people, to a Namespace and to the readers of the two other domains), `<prefix>n-low`
//! (a reader, on a source of its own) and `<prefix>n-alt` (a second reader, whose domain
//! loses its clearance during the failover). Grants expire, are deleted, and a reader's
//! domain loses its clearance while the operator is killed or fails over; the judge times
//! how late each narrowing lands. The failover lowers `n-alt`, which no other narrowing
//! touches: a lowered producer's domain would hide its expired grants from the judge (no
//! access is counted to a product that may not run).

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{Value, json};

/// The people the narrowing grants name (cleared Restricted; grants approved).
pub const NARROWING_READERS: &str = "narrowing-readers";

/// The people of the grant made during the failover: not the expiring grant's, whose
/// expiry an equal access granted meanwhile would hide from the judge (it judges access).
pub const FAILOVER_READERS: &str = "failover-readers";

pub struct Domains {
    pub producer: String,
    pub reader: String,
    /// The reader whose domain the failover lowers.
    pub alt: String,
}

impl Domains {
    pub fn new(prefix: &str) -> Self {
        Domains { producer: format!("{prefix}n-prod"), reader: format!("{prefix}n-low"), alt: format!("{prefix}n-alt") }
    }

    /// The children a grant policy makes (what its expiry or deletion must remove).
    pub fn grant_children(&self, policy: &str) -> BTreeSet<String> {
        ["Role", "RoleBinding", "NetworkPolicy"]
            .iter()
            .map(|k| format!("{k} {}/drmesh-grant-{policy}", self.producer))
            .collect()
    }

    fn namespace(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"drmesh.io/clearance": "Restricted"}}})
    }

    fn source(ns: &str, name: &str, level: &str, cidr: &str) -> [Value; 2] {
        [
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-credentials"), "namespace": ns,
                "labels": {"drmesh.io/credentials": "true"}}, "stringData": {"p": "x"}}),
            json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataSource", "metadata": {"name": name, "namespace": ns},
                "spec": {"classification": level, "type": "Postgres", "endpoint": {"cidr": cidr, "port": 5432},
                         "credentialsSecretRef": {"name": format!("{name}-credentials")}}}),
        ]
    }

    pub fn policy(&self, name: &str, subjects: Value, ports: Option<Value>, expires_at: &str) -> Value {
        let mut spec = json!({"dataProduct": "secret-feed", "subjects": subjects,
            "purpose": "chaos: an access that narrows under faults", "expiresAt": expires_at});
        if let Some(ports) = ports {
            spec["ports"] = ports;
        }
        let mut doc = json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": name, "namespace": self.producer}, "spec": spec});
        // The product is Restricted: a grant to people is effective only when approved.
        super::approve(&mut doc);
        doc
    }

    /// The Group-only grant whose expiry is timed at `at`.
    pub fn expiring(&self, name: &str, at: Timestamp, with_reader_domain: bool) -> Value {
        let mut subjects = vec![json!({"kind": "Group", "name": NARROWING_READERS})];
        if with_reader_domain {
            subjects.push(json!({"kind": "Namespace", "name": self.reader}));
        }
        self.policy(name, json!(subjects), None, &at.to_string())
    }

    /// The three domains, the readers' grants (`to-reader`, `to-alt`) and `deletable`
    /// grants to be deleted later.
    pub fn docs(&self, deletable: &[String]) -> Vec<Value> {
        let (p, r, a) = (&self.producer, &self.reader, &self.alt);
        let mut docs = super::people(&[NARROWING_READERS, FAILOVER_READERS], &mut drmesh::mesh::Snapshot::default());
        docs.extend([Self::namespace(p), Self::namespace(r), Self::namespace(a)]);
        docs.extend(Self::source(p, "vault", "Restricted", "10.70.0.0/24"));
        docs.extend(Self::source(r, "notes", "Internal", "10.71.0.0/24"));
        docs.push(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": "secret-feed", "namespace": p},
            "spec": {"classification": "Restricted", "owners": [{"kind": "Group", "name": "feed-owners"}], "inputs": [{"dataSource": "vault"}],
                     "runtime": {"image": "registry.example/chaos:1"},
                     "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}, {"name": "grpc", "port": 9090, "protocol": "GRPC"}]}}));
        docs.push(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": "reader", "namespace": r},
            "spec": {"classification": "Restricted", "inputs": [{"dataSource": "notes"}, {"dataProduct": {"namespace": p, "name": "secret-feed"}, "ports": ["http"]}],
                     "runtime": {"image": "registry.example/chaos:1"},
                     "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}));
        docs.push(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": "alt-reader", "namespace": a},
            "spec": {"classification": "Restricted", "inputs": [{"dataProduct": {"namespace": p, "name": "secret-feed"}, "ports": ["http"]}],
                     "runtime": {"image": "registry.example/chaos:1"},
                     "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}));
        docs.push(self.policy(
            "to-alt",
            json!([{"kind": "DataProduct", "namespace": a, "name": "alt-reader"}]),
            None,
            "2030-01-01T00:00:00Z",
        ));
        docs.push(self.policy(
            "to-reader",
            json!([{"kind": "DataProduct", "namespace": r, "name": "reader"}]),
            None,
            "2030-01-01T00:00:00Z",
        ));
        for name in deletable {
            docs.push(self.policy(
                name,
                json!([{"kind": "Group", "name": NARROWING_READERS}, {"kind": "DataProduct", "namespace": r, "name": "reader"}]),
                Some(json!(["grpc"])),
                "2030-01-01T00:00:00Z",
            ));
        }
        docs
    }
}
