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
//! Then what the Event writer keeps of each Event it wrote (kube's `Recorder` against
//! drmesh's `Announcer`), two Events per product, against a mock API server.
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

/// A mock API server for the Event writers: answers each request with its own body, as
/// the API server answers a create with the object created.
fn echo_client() -> kube::Client {
    use http_body_util::BodyExt;
    let service = tower::service_fn(|request: http::Request<kube::client::Body>| async move {
        let body = request.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
        http::Response::builder()
            .status(201)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(body))
    });
    kube::Client::new(service, "default")
}

/// What the Event writer keeps per Event written, for the 6 minutes a repeat would make it
/// a series: kube's `Recorder` against drmesh's `Announcer`, after two Events per product
/// (the Ready transitions of a cold start).
fn event_figures(products: usize) -> String {
    use drmesh::controllers::events::{Announcement, Announcer};
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // The client's buffer task needs the runtime.
    let _entered = runtime.enter();
    let regarding = |i: usize| ObjectReference {
        api_version: Some("drmesh.io/v1alpha1".into()),
        kind: Some("DataProduct".into()),
        namespace: Some(format!("n{}", i % 20)),
        name: Some(format!("product-{i}")),
        uid: Some(format!("6f1c2d3e-5a4b-4c3d-9e8f-{i:012}")),
        resource_version: Some(format!("{}", 4_000_000 + i)),
        ..ObjectReference::default()
    };
    let said = [("Progressing", "0 of 1 replicas available"), ("Ready", "1 replicas available; all inputs granted")];
    let events = products * said.len();
    let recorder = cost(|| {
        let reporter = Reporter { controller: "drmesh".into(), instance: Some("drmesh-0".into()) };
        let recorder = Recorder::new(echo_client(), reporter);
        runtime.block_on(async {
            for i in 0..products {
                for (reason, note) in said {
                    let event = KubeEvent {
                        type_: EventType::Normal,
                        reason: reason.into(),
                        note: Some(note.into()),
                        action: "Reconcile".into(),
                        secondary: None,
                    };
                    recorder.publish(&event, &regarding(i)).await.expect("published");
                }
            }
        });
        recorder
    });
    let announcer = cost(|| {
        let announcer = Announcer::new(echo_client(), "drmesh", Some("drmesh-0".into()));
        runtime.block_on(async {
            for i in 0..products {
                let object = regarding(i);
                for (reason, note) in said {
                    let a = Announcement {
                        regarding: &object,
                        warning: false,
                        action: "Reconcile",
                        reason,
                        note: note.into(),
                    };
                    announcer.publish(&a, jiff::Timestamp::now()).await.expect("published");
                }
            }
        });
        assert_eq!(announcer.remembered(), events);
        announcer
    });
    format!(
        "\n# Event writers, {events} Events ({products} products x 2)\n\n| writer | B/Event kept | total |\n|---|---|---|\n\
         | kube's `Recorder` (a copy of each Event and its key) | {} | {:.1} MiB |\n\
         | drmesh's `Announcer` (a hash, the name, the series) | {} | {:.1} MiB |\n",
        recorder / events.max(1),
        mib(recorder),
        announcer / events.max(1),
        mib(announcer),
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
    let events = event_figures(products);
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
    out.push_str(&events);
    print!("{out}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let file = dir.join(format!("memory-{stamp}-n{products}.md"));
    std::fs::create_dir_all(&dir).expect("bench/results");
    std::fs::write(&file, &out).expect("write results");
    std::fs::write(dir.join("memory-latest.md"), &out).expect("write results");
    println!("\nwritten to {}", file.display());
}
