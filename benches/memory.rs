//! `make bench-memory`: what the operator's caches cost per object, without a cluster.
//!
//! Renders the children of a synthetic mesh of N products (DRMESH_BENCH_PRODUCTS,
//! default 10,000) with the pure core, dresses them as the API server returns them
//! (UID, resourceVersion, creationTimestamp, owner UID), and loads each kind twice,
//! counting the bytes jemalloc reports as allocated:
//! - as a kube reflector store of the metadata (`PartialObjectMeta`; full objects for
//!   Deployments and Roles, trimmed as the operator trims them) — the earlier layout;
//! - as the operator's [`ChildCache`] of compact records — the layout it runs with.
//!
//! Then the mesh index the caches keep beside them (`MeshIndex`: bytes per product and
//! policy), and what it saves: the three lookups each product's plan asks (its
//! policies, its consumers, the users of its sources) answered for every product, by a
//! scan of every cached object (as the caches did before the index) and by the index.
//!
//! Prints a table and writes it to bench/results/memory-<unix time>-n<N>.md.

use std::fmt::Write as _;

use drmesh::controllers::{
    self,
    records::{ChildCache, no_detail},
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PartialObjectMeta;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

mod common;
use common::{env_or, rendered_children, synthetic};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn allocated() -> usize {
    tikv_jemalloc_ctl::epoch::advance().expect("jemalloc epoch");
    tikv_jemalloc_ctl::stats::allocated::read().expect("jemalloc stats")
}

/// `child` as a watch returns it: server-set metadata filled in, managedFields dropped.
fn dressed(mut child: Value, i: usize) -> Value {
    let meta = &mut child["metadata"];
    meta["uid"] = json!(format!("6f1c2d3e-5a4b-4c3d-9e8f-{i:012}"));
    meta["resourceVersion"] = json!(format!("{}", 4_000_000 + i));
    meta["creationTimestamp"] = json!("2026-11-29T03:00:00Z");
    meta["generation"] = json!(1);
    if let Some(owners) = meta["ownerReferences"].as_array_mut() {
        for o in owners {
            o["uid"] = json!(format!("0a1b2c3d-5a4b-4c3d-9e8f-{i:012}"));
        }
    }
    if child["kind"] == "Deployment" {
        child["status"] = json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
            "availableReplicas": 1, "updatedReplicas": 1,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]});
    }
    child
}

struct Row {
    kind: &'static str,
    objects: usize,
    store: usize,
    records: usize,
}

/// Bytes allocated by `load` while what it returns is alive.
fn cost<T>(load: impl FnOnce() -> T) -> usize {
    let before = allocated();
    let kept = load();
    let bytes = allocated().saturating_sub(before);
    drop(kept);
    bytes
}

fn measure<K>(kind: &'static str, docs: &[Value], trim: fn(&mut K), detail: fn(&K) -> u64) -> Row
where
    K: kube::Resource<DynamicType = ()> + Clone + Default + DeserializeOwned + serde::Serialize + Send + Sync + 'static,
{
    let objects: Vec<K> = docs
        .iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| {
            let mut k: K = serde_json::from_value(d.clone()).expect("child");
            trim(&mut k);
            k
        })
        .collect();
    let events = || {
        std::iter::once(Event::Init)
            .chain(objects.iter().cloned().map(Event::InitApply))
            .chain(std::iter::once(Event::InitDone))
    };
    let store = cost(|| {
        let (store, mut writer) = reflector::store::<K>();
        events().for_each(|e| writer.apply_watcher_event(&e));
        assert_eq!(store.len(), objects.len());
        (store, writer)
    });
    let records = cost(|| {
        let cache = ChildCache::new(detail);
        let passed =
            futures::executor::block_on(cache.clone().reflect(futures::stream::iter(events().map(Ok))).count());
        assert_eq!(passed, objects.len() + 2);
        assert_eq!(cache.len(), objects.len());
        cache
    });
    Row { kind, objects: objects.len(), store, records }
}

fn keep<K>(_: &mut K) {}

/// The mesh index: its bytes, and the lookups of every product's plan, scanned vs indexed.
fn index_figures(snapshot: &drmesh::mesh::Snapshot) -> String {
    use drmesh::mesh::index::MeshIndex;
    use drmesh::mesh::rules::{product_inputs, source_inputs};
    use kube::ResourceExt;
    let products: Vec<_> = snapshot.products.values().map(|p| p.as_ref().clone()).collect();
    let policies: Vec<_> = snapshot.policies.values().map(|p| p.as_ref().clone()).collect();
    let mut index = None;
    let bytes = cost(|| index = Some(MeshIndex::from_objects(&products, &policies)));
    let index = index.expect("built");
    let key = |p: &drmesh::api::DataProduct| (p.namespace().unwrap_or_default(), p.name_any());
    // As the caches answered before the index: a filter over every cached object.
    let started = std::time::Instant::now();
    let mut scanned = 0usize;
    for p in &products {
        let (ns, name) = key(p);
        scanned += policies
            .iter()
            .filter(|a| a.namespace().as_deref() == Some(ns.as_str()) && a.spec.data_product == name)
            .count();
        scanned += products.iter().filter(|c| product_inputs(c).any(|r| r.namespace == ns && r.name == name)).count();
        for source in source_inputs(p) {
            scanned += products
                .iter()
                .filter(|c| c.namespace().as_deref() == Some(ns.as_str()) && source_inputs(c).any(|s| s == source))
                .count();
        }
    }
    let scan = started.elapsed();
    let started = std::time::Instant::now();
    let mut looked_up = 0usize;
    for p in &products {
        let (ns, name) = key(p);
        let k = drmesh::mesh::index::key(&ns, &name);
        looked_up += index.policies_of(&k).len() + index.consumers(&k).len();
        for source in source_inputs(p) {
            looked_up += index.source_users(&k.0, source).len();
        }
    }
    let lookups = started.elapsed();
    assert_eq!(scanned, looked_up, "the index answers what a scan answers");
    let objects = products.len() + policies.len();
    format!(
        "\n# Mesh index, {} products and {} policies\n\n| figure | measured |\n|---|---|\n\
         | index bytes per product or policy | {} ({:.1} MiB) |\n\
         | every product's plan lookups (policies, consumers, source users; {} answers), scanning every object | {:.1} ms |\n\
         | the same lookups through the index | {:.1} ms |\n",
        products.len(),
        policies.len(),
        bytes / objects.max(1),
        mib(bytes),
        looked_up,
        scan.as_secs_f64() * 1000.0,
        lookups.as_secs_f64() * 1000.0,
    )
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let products: usize = env_or("DRMESH_BENCH_PRODUCTS", 10_000);
    let (_, snapshot) = synthetic("mem", products);
    let docs: Vec<Value> =
        rendered_children(&snapshot, true).into_iter().enumerate().map(|(i, c)| dressed(c, i)).collect();
    let index = index_figures(&snapshot);
    drop(snapshot);
    let rows = [
        measure::<Deployment>("Deployment", &docs, controllers::trim_deployment, controllers::available_replicas),
        measure::<PartialObjectMeta<Service>>("Service", &docs, keep, no_detail),
        measure::<PartialObjectMeta<ServiceAccount>>("ServiceAccount", &docs, keep, no_detail),
        measure::<PartialObjectMeta<NetworkPolicy>>("NetworkPolicy", &docs, keep, no_detail),
        measure::<Role>("Role", &docs, keep, controllers::children::rules_hash),
        measure::<PartialObjectMeta<RoleBinding>>("RoleBinding", &docs, keep, no_detail),
        measure::<PartialObjectMeta<ConfigMap>>("ConfigMap", &docs, keep, no_detail),
    ];
    let mut out = String::new();
    let _ = writeln!(out, "# Cache memory, {products} products ({} children)\n", docs.len());
    let _ = writeln!(out, "| kind | objects | reflector store B/object | compact records B/object | saved MiB |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let (mut store, mut records, mut objects) = (0, 0, 0);
    for r in &rows {
        let per = |b: usize| b / r.objects.max(1);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} |",
            r.kind,
            r.objects,
            per(r.store),
            per(r.records),
            mib(r.store.saturating_sub(r.records))
        );
        store += r.store;
        records += r.records;
        objects += r.objects;
    }
    let _ = writeln!(
        out,
        "| all children | {objects} | {} ({:.1} MiB) | {} ({:.1} MiB) | {:.1} |",
        store / objects.max(1),
        mib(store),
        records / objects.max(1),
        mib(records),
        mib(store.saturating_sub(records))
    );
    out.push_str(&index);
    print!("{out}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let file = dir.join(format!("memory-{stamp}-n{products}.md"));
    std::fs::create_dir_all(&dir).expect("bench/results");
    std::fs::write(&file, &out).expect("write results");
    std::fs::write(dir.join("memory-latest.md"), &out).expect("write results");
    println!("\nwritten to {}", file.display());
}
