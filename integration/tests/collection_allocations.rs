//! Memory regressions caught in CI: one collection cycle of every procfs and netlink probe
//! over 50 test pods (each with a listener and a connection) must stay under stated bounds
//! of heap bytes allocated and of peak heap growth, counted by this test's allocator.
//! The benchmark (`scripts/bench`, `bench_agent`) measures the whole agent's RSS; this test
//! keeps the per-cycle work from creeping up unnoticed between benchmark runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use podnet_integration::pods::{in_netns, ip};
use podnet_integration::root_or_skip;
use podnet_pipeline::scrape::Scraper;
use podnet_receiver_netlink::{NetlinkConfig, NetlinkScraper};
use podnet_receiver_procfs::{Probe, ProcfsConfig, ProcfsScraper};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
            TOTAL.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
                TOTAL.fetch_add(grown, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PODS: usize = 50;
/// Stated bounds for one cycle over 50 pods. Measured on the CI kernel (6.18): 7,715
/// points, 11.6 MB allocated, the heap peaking 6.0 MB above its start, nothing kept. The
/// headroom (1.4x, 1.3x) is for kernels with more counters, not for regressions.
const MAX_ALLOCATED_PER_CYCLE: usize = 16 << 20;
const MAX_PEAK_GROWTH_PER_CYCLE: usize = 8 << 20;

/// Namespaces, each with a process in it (procfs reads a namespace through a process).
struct TestPods(Vec<String>, Vec<std::process::Child>);

impl Drop for TestPods {
    fn drop(&mut self) {
        for c in &mut self.1 {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[test]
fn one_collection_over_50_pods_stays_within_its_allocation_bounds() {
    if !root_or_skip("test pods need root (CI runs as root)") {
        return;
    }
    let prefix = format!("pn-alloc-{}-", std::process::id());
    let mut pods = TestPods((0..PODS).map(|i| format!("{prefix}{i}")).collect(), Vec::new());
    let mut sockets = Vec::new();
    for ns in pods.0.clone() {
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        pods.1.push(Command::new("ip").args(["netns", "exec", &ns, "sleep", "600"]).spawn().expect("sleeper"));
        sockets.push(in_netns(&ns, || {
            let l = TcpListener::bind("127.0.0.1:8080").expect("bind");
            let c = TcpStream::connect("127.0.0.1:8080").expect("connect");
            let (s, _) = l.accept().expect("accept");
            (l, c, s)
        }));
    }
    let mine = |n: &podnet_netns::Namespace| n.is_host || n.name.as_deref().is_some_and(|name| name.starts_with(&prefix));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let ours = loop {
        let all = podnet_netns::scan(Path::new("/proc"), Path::new("/run/netns")).expect("scan namespaces");
        let ours: Vec<_> = all.into_iter().filter(|n| mine(n) && n.pid != 0).collect();
        if ours.len() == PODS + 1 || std::time::Instant::now() > deadline {
            break ours;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(ours.len(), PODS + 1, "the test pods (each with its process) and the host");
    let namespaces = Arc::new(ours);

    let mut procfs = ProcfsScraper::new(ProcfsConfig { probes: Probe::all(), ..Default::default() }, "test".into(), "procfs".into());
    let mut netlink = NetlinkScraper::new(NetlinkConfig::default(), "test".into(), "netlink".into()).expect("netlink scraper");
    procfs.set_namespaces(namespaces.clone());
    netlink.set_namespaces(namespaces);
    let mut cycle = || {
        let a = procfs.scrape();
        let b = netlink.scrape();
        let points = a.metrics.point_count() + b.metrics.point_count();
        drop((a, b));
        points
    };
    // The first cycle fills what later cycles reuse (counter baselines, buffers).
    cycle();
    cycle();
    let (live0, total0) = (LIVE.load(Ordering::Relaxed), TOTAL.load(Ordering::Relaxed));
    PEAK.store(live0, Ordering::Relaxed);
    let points = cycle();
    let allocated = TOTAL.load(Ordering::Relaxed) - total0;
    let peak_growth = PEAK.load(Ordering::Relaxed) - live0;
    let retained = LIVE.load(Ordering::Relaxed).saturating_sub(live0);
    eprintln!("one cycle over {PODS} pods: {points} points, {allocated} bytes allocated, peak +{peak_growth} bytes, {retained} bytes kept");
    assert!(points > PODS * 100, "every pod's counters were collected ({points} points)");
    assert!(
        allocated <= MAX_ALLOCATED_PER_CYCLE,
        "one cycle allocated {allocated} bytes ({points} points), over the bound of {MAX_ALLOCATED_PER_CYCLE}"
    );
    assert!(
        peak_growth <= MAX_PEAK_GROWTH_PER_CYCLE,
        "one cycle's heap peaked {peak_growth} bytes above its start ({points} points), over the bound of {MAX_PEAK_GROWTH_PER_CYCLE}"
    );
    assert!(retained < 256 << 10, "a cycle keeps nothing it does not need: {retained} bytes more after it");
}
