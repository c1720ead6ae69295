//! Samples of the live cluster for the invariant judge (tests/support/judge, which
//! shares no code with the operator), and the bookkeeping of narrowings: an access that
//! a policy no longer allows is a violation unless a narrowing the bench caused (an
//! expiry, a deletion, a clearance lowering, a hand edit) explains it; then the judge
//! times how late the narrowing lands.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, VersionMatch};
use serde_json::Value;

#[path = "../../tests/support/judge/mod.rs"]
pub mod judge;

/// The kinds the judge reads: declarations, then every child kind that grants access.
const KINDS: [(&str, &str, &str); 11] = [
    ("drmesh.io", "v1alpha1", "Clearance"),
    ("drmesh.io", "v1alpha1", "MeshPolicy"),
    ("drmesh.io", "v1alpha1", "DataSource"),
    ("drmesh.io", "v1alpha1", "DataProduct"),
    ("drmesh.io", "v1alpha1", "AccessPolicy"),
    ("networking.k8s.io", "v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io", "v1", "Role"),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
    ("apps", "v1", "Deployment"),
    ("", "v1", "Service"),
    ("", "v1", "Secret"),
];

pub enum Sample {
    Judged {
        /// The instant the rules were judged at (taken before the first list: the
        /// snapshot is not older).
        now: Timestamp,
        /// When the snapshot was surely taken (after the first list answered).
        by: Timestamp,
        findings: Vec<judge::Finding>,
        /// `Kind ns/name` of every child present.
        present: BTreeSet<String>,
    },
    /// Nothing could be judged (API server down, a failed list): counted apart.
    Unjudged(String),
}

async fn list(
    client: &Client,
    (group, version, kind): (&str, &str, &str),
    params: &ListParams,
) -> Result<Vec<Value>, String> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let list = api.list(params).await.map_err(|e| format!("list {kind}: {e}"))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .map(|mut v| {
            v["kind"] = Value::String(kind.to_string()); // list items may carry no kind
            v
        })
        .collect())
}

/// One consistent state of the namespaces `in_scope` accepts, judged: every list is read
/// at the resourceVersion of the first (separate lists could mix two moments).
pub async fn sample(client: &Client, in_scope: &(dyn Fn(&str) -> bool + Sync)) -> Sample {
    let now = Timestamp::now();
    let namespaces = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"));
    let first = match Api::<DynamicObject>::all_with(client.clone(), &namespaces).list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => return Sample::Unjudged(format!("list Namespace: {e}")),
    };
    let by = Timestamp::now();
    let Some(version) = first.metadata.resource_version.clone() else {
        return Sample::Unjudged("no resourceVersion".into());
    };
    let params = ListParams::default().at(&version).matching(VersionMatch::Exact);
    let mut objects: Vec<Value> = first
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .map(|mut v| {
            v["kind"] = Value::String("Namespace".into());
            v
        })
        .collect();
    for kind in KINDS {
        match list(client, kind, &params).await {
            Ok(items) => {
                // Cluster-scoped kinds (Clearance, MeshPolicy) have no namespace: all are read.
                objects.extend(items.into_iter().filter(|o| o["metadata"]["namespace"].as_str().is_none_or(in_scope)))
            }
            Err(e) => return Sample::Unjudged(e),
        }
    }
    let present = objects
        .iter()
        .filter(|o| ["NetworkPolicy", "Role", "RoleBinding", "Deployment", "Service"].iter().any(|k| o["kind"] == *k))
        .map(|o| {
            format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    // The API server's addresses, which people's grants may admit (read at the same
    // resourceVersion).
    let slices = ListParams { label_selector: Some("kubernetes.io/service-name=kubernetes".into()), ..params.clone() };
    match list(client, ("discovery.k8s.io", "v1", "EndpointSlice"), &slices).await {
        Ok(items) => objects.extend(items.into_iter().filter(|o| o["metadata"]["namespace"] == "default")),
        Err(e) => return Sample::Unjudged(e),
    }
    let world = judge::World::new(objects, now);
    Sample::Judged { now, by, findings: judge::judge(&world), present }
}

/// A narrowing the bench caused: from `at`, findings on these children (or on any child
/// of these namespaces) are the narrowing not having landed yet, not violations.
pub struct Narrowing {
    pub kind: &'static str,
    pub what: String,
    pub at: Timestamp,
    pub children: BTreeSet<String>,
    pub namespaces: BTreeSet<String>,
    /// From when a snapshot surely shows the request that causes it (its API call has
    /// returned; for an expiry, `at`): only a sample listed after it can show it landed.
    /// A sample started earlier may predate the request in etcd, whatever its clock.
    pub due: Option<Timestamp>,
    /// A child of it was seen before `at` (else there was nothing to narrow).
    pub in_force: bool,
    /// The first judged sample from `at` on without a finding it explains.
    pub landed: Option<Timestamp>,
}

impl Narrowing {
    pub fn new(kind: &'static str, what: String, at: Timestamp, children: BTreeSet<String>) -> Self {
        Narrowing {
            kind,
            what,
            at,
            due: Some(at),
            children,
            namespaces: BTreeSet::new(),
            in_force: false,
            landed: None,
        }
    }

    fn explains(&self, child: &str) -> bool {
        self.children.contains(child)
            || child
                .split_once(' ')
                .and_then(|(_, rest)| rest.split_once('/'))
                .is_some_and(|(ns, _)| self.namespaces.contains(ns))
    }

    /// How late it landed, in ms (None: not yet).
    pub fn late_ms(&self) -> Option<f64> {
        self.landed.map(|l| l.duration_since(self.at).as_secs_f64() * 1000.0)
    }
}

/// What the judge saw over a run.
#[derive(Default)]
pub struct Record {
    pub judged: usize,
    pub unjudged: BTreeMap<String, usize>,
    pub violations: Vec<String>,
    pub narrowings: Vec<Narrowing>,
    /// The children of the last judged sample.
    last_present: BTreeSet<String>,
}

impl Record {
    /// A narrowing to watch for; in force if the last sample had a child it narrows.
    /// Returns its index (see [`Record::due`]).
    pub fn narrow(&mut self, mut narrowing: Narrowing) -> usize {
        narrowing.in_force |= self.last_present.iter().any(|c| narrowing.explains(c));
        self.narrowings.push(narrowing);
        self.narrowings.len() - 1
    }

    /// The request causing narrowing `index` has returned at `at`.
    pub fn due(&mut self, index: usize, at: Timestamp) {
        if let Some(n) = self.narrowings.get_mut(index) {
            n.due = Some(at);
        }
    }

    pub fn add(&mut self, sample: Sample) {
        let (now, by, findings, present) = match sample {
            Sample::Unjudged(why) => {
                // Group by the reason's first words: the API server's messages carry addresses.
                let key: String = why.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
                *self.unjudged.entry(key).or_default() += 1;
                return;
            }
            Sample::Judged { now, by, findings, present } => (now, by, findings, present),
        };
        self.judged += 1;
        let mut explained = vec![false; self.narrowings.len()];
        for f in &findings {
            // Explained only by a narrowing that has not landed yet and may be due: the
            // snapshot was taken between `now` and `by`, so one requested up to `by` may
            // already be in it.
            let open: Vec<usize> = (0..self.narrowings.len())
                .filter(|&i| {
                    let n = &self.narrowings[i];
                    n.at <= by && n.landed.is_none() && n.explains(&f.child)
                })
                .collect();
            if open.is_empty() {
                self.violations.push(format!("{now}: {f}"));
            }
            open.into_iter().for_each(|i| explained[i] = true);
        }
        for (i, n) in self.narrowings.iter_mut().enumerate() {
            if n.at > by {
                n.in_force |= present.iter().any(|c| n.explains(c));
            } else if n.due.is_some_and(|due| due <= now) && !explained[i] && n.landed.is_none() {
                // Surely due before the snapshot, and nothing left of it.
                n.landed = Some(by);
            }
        }
        self.last_present = present;
    }

    /// Narrowings still not landed are violations at the end of a run.
    pub fn finish(&mut self) {
        for n in &self.narrowings {
            if n.landed.is_none() {
                self.violations.push(format!("{} ({}) never landed", n.what, n.kind));
            }
        }
    }

    pub fn unjudged_total(&self) -> usize {
        self.unjudged.values().sum()
    }
}
