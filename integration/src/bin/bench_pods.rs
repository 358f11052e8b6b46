//! `scripts/bench`, fifth table: what pod attribution costs. The k8s_attributes lookup and
//! tagging per resource for a collection of 1000 namespaces × 60 metrics, against copying
//! the same batch (what any mutating processor pays), and the memory the pod index takes
//! for 1000 pods with realistic labels and annotations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use podnet_pipeline::pdata::{MetricDef, Metrics, MetricsBuilder, keys, kv_int, kv_str};
use podnet_processor_k8s_attributes::pods::{Additional, Extract, FieldExtract, Pod, PodIndex, Tagger};

/// Counts live heap bytes, to measure the index.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const PODS: usize = 1000;
const METRICS: usize = 60;

fn pod(i: usize) -> Pod {
    Pod {
        name: format!("web-7d4b9c8f5-{i:05}"),
        namespace: format!("team-{}", i % 20),
        uid: format!("6c1f3b1e-7a51-4f0f-9d0e-{i:012}"),
        ip: format!("10.244.{}.{}", i / 250, i % 250),
        labels: [
            ("app", "web".to_string()),
            ("pod-template-hash", "7d4b9c8f5".to_string()),
            ("app.kubernetes.io/name", "web".to_string()),
            ("app.kubernetes.io/version", "1.27.3".to_string()),
            ("team", format!("team-{}", i % 20)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        annotations: [
            ("kubernetes.io/config.seen", "2026-11-20T08:14:03.512Z".to_string()),
            ("kubernetes.io/config.source", "api".to_string()),
            ("prometheus.io/scrape", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        workload: Some(("k8s.deployment.name", "web".to_string())),
    }
}

fn batch() -> Metrics {
    let defs: Vec<MetricDef> = (0..METRICS)
        .map(|i| MetricDef::counter(podnet_pipeline::pdata::intern(&format!("podnet.bench.c{i}")), "bench", "{event}"))
        .collect();
    let mut b = MetricsBuilder::new("bench");
    for ns in 0..PODS {
        let mut r = b.resource(vec![kv_str(keys::K8S_NODE_NAME, "node"), kv_int(keys::NETNS_INODE, 4026532000 + ns as i64)]);
        for d in &defs {
            r.point(d, vec![], 1, 2, (ns as u64).into());
        }
    }
    b.finish()
}

fn main() {
    let before = LIVE.load(Ordering::Relaxed);
    let mut index = PodIndex::default();
    index.replace((0..PODS).map(|i| (4026532000 + i as u64, pod(i))).collect(), Duration::from_secs(30), Instant::now());
    let index_bytes = LIVE.load(Ordering::Relaxed) - before;

    let tagger = Tagger {
        node: "node".into(),
        extract: Extract { labels: vec![FieldExtract { key: "app".into(), tag_name: Some("app".into()) }], annotations: vec![] },
        additional: vec![Additional::parse("team=${labels:team}").expect("valid")],
    };
    let base = batch();
    let rounds = 20;
    // The floor: the copy a mutating processor makes of a batch another pipeline shares.
    let mut copy_ns = u128::MAX;
    let mut tag_ns = u128::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        let mut m = base.clone();
        m.resources_mut();
        copy_ns = copy_ns.min(t.elapsed().as_nanos());
        let mut m = base.clone();
        m.resources_mut();
        let t = Instant::now();
        let named = podnet_processor_k8s_attributes::tag_metrics(&mut m, &tagger, &index);
        tag_ns = tag_ns.min(t.elapsed().as_nanos());
        assert_eq!(named, PODS);
    }
    println!("pod attribution: {PODS} namespaces × {METRICS} metrics per collection, best of {rounds}");
    println!("{:<48} {:>14} {:>14} {:>10}", "measure", "k8s_attributes", "batch copy", "ratio");
    println!(
        "{:<48} {:>14.0} {:>14.0} {:>9.2}x",
        "ns per resource (lookup + tag)",
        tag_ns as f64 / PODS as f64,
        copy_ns as f64 / PODS as f64,
        tag_ns as f64 / copy_ns as f64
    );
    println!("{:<48} {:>14.1}", format!("pod index memory for {PODS} pods (KiB)"), index_bytes as f64 / 1024.0);
    println!("{:<48} {:>14.0}", "bytes per pod", index_bytes as f64 / PODS as f64);
}
