//! The latency probes: softirq, netiftxlat, socketlatency, kernellatency, virtcmdlatency
//! and biolatency. Each keeps base-2 histograms per (namespace, stage, dimension) in the
//! kernel plus two threshold counters; a collection reads them into OTel exponential
//! histograms (scale 0, exact) and counters whose `podnet.latency.threshold` attribute
//! picks KubeSkoop's metric name in `kubeskoop` naming.

use std::collections::HashMap;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use podnet_pipeline::pdata::{KeyValue, KubeskoopName, Log2Histogram, MetricDef, kv_str};

use crate::abi::{LatHist, LatKey};
use crate::loader::{Attach, Hook, LoadedProbe, ProbeSpec};
use crate::probes::ProbeKind;

pub const THRESHOLD: &str = "podnet.latency.threshold";
pub const SOFTIRQ_TYPE: &str = "podnet.softirq.type";
pub const INTERFACE: &str = "network.interface.name";
pub const DEVICE: &str = "system.device";
pub const DISK_DIRECTION: &str = "disk.io.direction";

/// Softirq vectors as the kernel numbers them (`softirq_to_name`).
pub const SOFTIRQ_NAMES: [&str; 10] = ["hi", "timer", "net_tx", "net_rx", "block", "irq_poll", "tasklet", "sched", "hrtimer", "rcu"];

pub fn softirq_name(vec: u32) -> &'static str {
    SOFTIRQ_NAMES.get(vec as usize).copied().unwrap_or("unknown")
}

/// What a latency probe measures, and its defaults (KubeSkoop's thresholds).
pub struct LatencyKind {
    /// Histogram and threshold counter per stage (the `stage` of the kernel's key).
    pub stages: &'static [(&'static MetricDef, &'static MetricDef)],
    pub thresholds: [Duration; 2],
    pub event_threshold: Duration,
    /// Maps of start timestamps, for the reclaimed count (started - completed - present).
    pub start_maps: &'static [StartMap],
    /// Node-level probes with a small fixed set of series keep them in a per-CPU array
    /// indexed `stage * dims + dim` (no hashing per event): the number of dims.
    pub fixed_dims: Option<u32>,
}

#[derive(Debug)]
pub struct StartMap {
    pub name: &'static str,
    pub key_size: usize,
    pub value_size: usize,
}

const fn start_map(name: &'static str, key_size: usize, value_size: usize) -> StartMap {
    StartMap { name, key_size, value_size }
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

macro_rules! slow_counter {
    ($name:expr, $desc:expr, $names:expr, $labels:expr) => {
        MetricDef {
            kubeskoop: Some(KubeskoopName::SplitByRelabeled { attribute: THRESHOLD, names: $names, labels: $labels }),
            ..MetricDef::counter($name, $desc, "{event}")
        }
    };
}

pub const SOFTIRQ_SCHED: MetricDef =
    MetricDef::histogram("podnet.softirq.schedule.delay", "Time from raising a softirq to its handler starting, by softirq type.", "ns");
pub const SOFTIRQ_EXEC: MetricDef =
    MetricDef::histogram("podnet.softirq.execution.duration", "Time a softirq handler runs, by softirq type.", "ns");
const SOFTIRQ_LABELS: &[(&str, &str)] = &[(SOFTIRQ_TYPE, "softirq_type")];
pub const SOFTIRQ_SCHED_SLOW: MetricDef = slow_counter!(
    "podnet.softirq.schedule.slow",
    "Softirqs whose scheduling delay exceeded the threshold.",
    &[("10ms", "kubeskoop_softirq_schedslow"), ("100ms", "kubeskoop_softirq_schedslow100ms")],
    SOFTIRQ_LABELS
);
pub const SOFTIRQ_EXEC_SLOW: MetricDef = slow_counter!(
    "podnet.softirq.execution.slow",
    "Softirqs whose handler ran longer than the threshold.",
    &[("10ms", "kubeskoop_softirq_excuteslow"), ("100ms", "kubeskoop_softirq_excuteslow100ms")],
    SOFTIRQ_LABELS
);

pub const NETIF_QUEUE: MetricDef = MetricDef::histogram(
    "podnet.netif.tx.queue.delay",
    "Time a packet waits in the device's qdisc (net_dev_queue to net_dev_start_xmit), by device.",
    "ns",
);
pub const NETIF_DRIVER: MetricDef = MetricDef::histogram(
    "podnet.netif.tx.driver.duration",
    "Time the driver takes to accept a packet (net_dev_start_xmit to net_dev_xmit), by device.",
    "ns",
);
pub const NETIF_QUEUE_SLOW: MetricDef = slow_counter!(
    "podnet.netif.tx.queue.slow",
    "Packets that waited in the qdisc longer than the threshold.",
    &[("100ms", "kubeskoop_netiftxlat_qdiscslow100ms")],
    &[]
);
pub const NETIF_DRIVER_SLOW: MetricDef = slow_counter!(
    "podnet.netif.tx.driver.slow",
    "Packets the driver took longer than the threshold to accept.",
    &[("100ms", "kubeskoop_netiftxlat_netdevslow100ms")],
    &[]
);

pub const SOCKET_READ: MetricDef =
    MetricDef::histogram("podnet.socket.read.delay", "TCP: time from data arriving on a socket to the application reading it.", "ns");
pub const SOCKET_WRITE: MetricDef = MetricDef::histogram(
    "podnet.socket.write.delay",
    "TCP: time from the application sending data to the stack handing the socket's next packet to a device.",
    "ns",
);
pub const SOCKET_READ_SLOW: MetricDef = slow_counter!(
    "podnet.socket.read.slow",
    "TCP reads whose delay exceeded the threshold.",
    &[("1ms", "kubeskoop_socketlatency_read1ms"), ("100ms", "kubeskoop_socketlatency_read100ms")],
    &[]
);
pub const SOCKET_WRITE_SLOW: MetricDef = slow_counter!(
    "podnet.socket.write.slow",
    "TCP sends whose delay exceeded the threshold.",
    &[("1ms", "kubeskoop_socketlatency_write1ms"), ("100ms", "kubeskoop_socketlatency_write100ms")],
    &[]
);

pub const KERNEL_RX: MetricDef = MetricDef::histogram(
    "podnet.kernel.rx.latency",
    "TCP: time from the device handing a packet to the stack (netif_receive_skb) to TCP taking it for its socket.",
    "ns",
);
pub const KERNEL_TX: MetricDef = MetricDef::histogram(
    "podnet.kernel.tx.latency",
    "TCP: time from TCP transmitting a segment (its departure clock) to the device queue.",
    "ns",
);
pub const KERNEL_RX_SLOW: MetricDef = slow_counter!(
    "podnet.kernel.rx.slow",
    "TCP packets whose receive path took longer than the threshold.",
    &[("10ms", "kubeskoop_kernellatency_rxslow"), ("100ms", "kubeskoop_kernellatency_rxslow100ms")],
    &[]
);
pub const KERNEL_TX_SLOW: MetricDef = slow_counter!(
    "podnet.kernel.tx.slow",
    "TCP packets whose transmit path took longer than the threshold.",
    &[("10ms", "kubeskoop_kernellatency_txslow"), ("100ms", "kubeskoop_kernellatency_txslow100ms")],
    &[]
);

pub const VIRTCMD: MetricDef =
    MetricDef::histogram("podnet.virtio.net.command.duration", "Time the virtio-net device takes to answer a control command.", "ns");
pub const VIRTCMD_SLOW: MetricDef = slow_counter!(
    "podnet.virtio.net.command.slow",
    "virtio-net control commands slower than the threshold.",
    &[("10ms", "kubeskoop_virtcmdlatency_latency"), ("100ms", "kubeskoop_virtcmdlatency_latency100ms")],
    &[]
);

pub const BIO: MetricDef = MetricDef::histogram(
    "podnet.disk.io.latency",
    "Block IO time from start to completion, by disk and direction, in the namespace of the task that started it.",
    "ns",
);
/// KubeSkoop counts no block IO: the counter keeps podnet's name in both namings.
pub const BIO_SLOW: MetricDef = MetricDef::counter("podnet.disk.io.slow", "Block IOs slower than the threshold.", "{io}");

pub static SOFTIRQ_KIND: LatencyKind = LatencyKind {
    stages: &[(&SOFTIRQ_SCHED, &SOFTIRQ_SCHED_SLOW), (&SOFTIRQ_EXEC, &SOFTIRQ_EXEC_SLOW)],
    thresholds: [ms(10), ms(100)],
    event_threshold: ms(10),
    start_maps: &[],
    fixed_dims: Some(SOFTIRQ_NAMES.len() as u32),
};
pub static NETIFTXLAT_KIND: LatencyKind = LatencyKind {
    stages: &[(&NETIF_QUEUE, &NETIF_QUEUE_SLOW), (&NETIF_DRIVER, &NETIF_DRIVER_SLOW)],
    thresholds: [ms(10), ms(100)],
    event_threshold: ms(100),
    start_maps: &[start_map("queued", 8, 8)],
    fixed_dims: None,
};
pub static SOCKETLATENCY_KIND: LatencyKind = LatencyKind {
    stages: &[(&SOCKET_READ, &SOCKET_READ_SLOW), (&SOCKET_WRITE, &SOCKET_WRITE_SLOW)],
    thresholds: [ms(1), ms(100)],
    event_threshold: ms(100),
    start_maps: &[start_map("socks", 8, 16)],
    fixed_dims: None,
};
pub static KERNELLATENCY_KIND: LatencyKind = LatencyKind {
    stages: &[(&KERNEL_RX, &KERNEL_RX_SLOW), (&KERNEL_TX, &KERNEL_TX_SLOW)],
    thresholds: [ms(10), ms(100)],
    event_threshold: ms(10),
    start_maps: &[start_map("rx_start", 8, 8)],
    fixed_dims: None,
};
pub static VIRTCMDLATENCY_KIND: LatencyKind = LatencyKind {
    stages: &[(&VIRTCMD, &VIRTCMD_SLOW)],
    thresholds: [ms(10), ms(100)],
    event_threshold: ms(10),
    start_maps: &[start_map("inflight", 4, 8)],
    fixed_dims: None,
};
pub static BIOLATENCY_KIND: LatencyKind = LatencyKind {
    stages: &[(&BIO, &BIO_SLOW), (&BIO, &BIO_SLOW), (&BIO, &BIO_SLOW)],
    thresholds: [ms(10), ms(100)],
    event_threshold: ms(10),
    start_maps: &[start_map("started", 16, 32)],
    fixed_dims: None,
};

macro_rules! object {
    ($file:literal) => {
        aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/", $file))
    };
}

pub static SOFTIRQ: ProbeSpec = ProbeSpec {
    name: "softirq",
    object: object!("softirq.bpf.o"),
    flow_map: None,
    gaps: &[],
    hooks: &[
        (
            Hook::TpBtf,
            &[
                Attach::TpBtf { program: "softirq_raise_btf", event: "softirq_raise" },
                Attach::TpBtf { program: "softirq_entry_btf", event: "softirq_entry" },
                Attach::TpBtf { program: "softirq_exit_btf", event: "softirq_exit" },
            ],
        ),
        (
            Hook::Tracepoint,
            &[
                Attach::Tracepoint { program: "softirq_raise_tp", category: "irq", event: "softirq_raise" },
                Attach::Tracepoint { program: "softirq_entry_tp", category: "irq", event: "softirq_entry" },
                Attach::Tracepoint { program: "softirq_exit_tp", category: "irq", event: "softirq_exit" },
            ],
        ),
    ],
};

pub static NETIFTXLAT: ProbeSpec = ProbeSpec {
    name: "netiftxlat",
    object: object!("netiftxlat.bpf.o"),
    flow_map: None,
    gaps: &[],
    hooks: &[
        (
            Hook::TpBtf,
            &[
                Attach::TpBtf { program: "netiftxlat_queue_btf", event: "net_dev_queue" },
                Attach::TpBtf { program: "netiftxlat_start_btf", event: "net_dev_start_xmit" },
                Attach::TpBtf { program: "netiftxlat_xmit_btf", event: "net_dev_xmit" },
            ],
        ),
        (
            Hook::Tracepoint,
            &[
                Attach::Tracepoint { program: "netiftxlat_queue_tp", category: "net", event: "net_dev_queue" },
                Attach::Tracepoint { program: "netiftxlat_start_tp", category: "net", event: "net_dev_start_xmit" },
                Attach::Tracepoint { program: "netiftxlat_xmit_tp", category: "net", event: "net_dev_xmit" },
            ],
        ),
    ],
};

pub static SOCKETLATENCY: ProbeSpec = ProbeSpec {
    name: "socketlatency",
    object: object!("socketlatency.bpf.o"),
    flow_map: None,
    gaps: &[],
    hooks: &[
        (
            Hook::TpBtf,
            &[
                Attach::TpBtf { program: "socketlatency_ready_btf", event: "sk_data_ready" },
                Attach::TpBtf { program: "socketlatency_read_btf", event: "sock_recv_length" },
                Attach::TpBtf { program: "socketlatency_send_btf", event: "tcp_sendmsg_locked" },
                Attach::TpBtf { program: "socketlatency_xmit_btf", event: "net_dev_queue" },
                Attach::TpBtf { program: "socketlatency_destroy_btf", event: "tcp_destroy_sock" },
            ],
        ),
        (
            Hook::Kprobe,
            &[
                Attach::Kprobe { program: "socketlatency_ready_kprobe", function: "sock_def_readable" },
                Attach::Kprobe { program: "socketlatency_read_kprobe", function: "tcp_cleanup_rbuf" },
                Attach::Kprobe { program: "socketlatency_send_kprobe", function: "tcp_sendmsg_locked" },
                Attach::Kprobe { program: "socketlatency_xmit_kprobe", function: "tcp_write_xmit" },
                Attach::Kprobe { program: "socketlatency_destroy_kprobe", function: "tcp_v4_destroy_sock" },
            ],
        ),
    ],
};

pub static KERNELLATENCY: ProbeSpec = ProbeSpec {
    name: "kernellatency",
    object: object!("kernellatency.bpf.o"),
    flow_map: None,
    gaps: &[],
    hooks: &[
        (
            Hook::TpBtf,
            &[
                Attach::TpBtf { program: "kernellatency_rx_btf", event: "netif_receive_skb" },
                Attach::TpBtf { program: "kernellatency_tcp_btf", event: "tcp_probe" },
                Attach::TpBtf { program: "kernellatency_tx_btf", event: "net_dev_queue" },
            ],
        ),
        (
            Hook::Tracepoint,
            &[
                Attach::Tracepoint { program: "kernellatency_rx_tp", category: "net", event: "netif_receive_skb" },
                Attach::Tracepoint { program: "kernellatency_tcp_tp", category: "tcp", event: "tcp_probe" },
                Attach::Tracepoint { program: "kernellatency_tx_tp", category: "net", event: "net_dev_queue" },
            ],
        ),
    ],
};

pub static VIRTCMDLATENCY: ProbeSpec = ProbeSpec {
    name: "virtcmdlatency",
    object: object!("virtcmdlatency.bpf.o"),
    flow_map: None,
    gaps: &[],
    hooks: &[
        (
            Hook::Kprobe,
            &[
                Attach::Kprobe { program: "virtcmd_reply_kprobe", function: "virtnet_send_command_reply" },
                Attach::Kprobe { program: "virtcmd_reply_kretprobe", function: "virtnet_send_command_reply" },
            ],
        ),
        (
            Hook::Kprobe,
            &[
                Attach::Kprobe { program: "virtcmd_kprobe", function: "virtnet_send_command" },
                Attach::Kprobe { program: "virtcmd_kretprobe", function: "virtnet_send_command" },
            ],
        ),
    ],
};

pub static BIOLATENCY: ProbeSpec = ProbeSpec {
    name: "biolatency",
    object: object!("biolatency.bpf.o"),
    flow_map: None,
    gaps: &[],
    hooks: &[
        (
            Hook::TpBtf,
            &[
                Attach::TpBtf { program: "biolatency_start_btf", event: "block_io_start" },
                Attach::TpBtf { program: "biolatency_done_btf", event: "block_io_done" },
            ],
        ),
        (
            Hook::Tracepoint,
            &[
                Attach::Tracepoint { program: "biolatency_start_tp", category: "block", event: "block_io_start" },
                Attach::Tracepoint { program: "biolatency_done_tp", category: "block", event: "block_io_done" },
            ],
        ),
        (
            Hook::Tracepoint,
            &[
                Attach::Tracepoint { program: "biolatency_queue_tp", category: "block", event: "block_bio_queue" },
                Attach::Tracepoint { program: "biolatency_complete_tp", category: "block", event: "block_rq_complete" },
            ],
        ),
        (
            Hook::Kprobe,
            &[
                Attach::Kprobe { program: "biolatency_start_kprobe", function: "blk_account_io_start" },
                Attach::Kprobe { program: "biolatency_done_kprobe", function: "blk_account_io_done" },
            ],
        ),
    ],
};

/// A threshold as the `podnet.latency.threshold` value: `1ms`, `100ms`, `250us`, `2s`.
pub fn threshold_label(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns != 0 && ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

/// One CPU-summed series of a latency map.
#[derive(Clone, Debug)]
pub struct LatSeries {
    pub key: LatKey,
    pub hist: LatHist,
}

impl LatSeries {
    /// The kernel's buckets as an OTel-ready histogram.
    pub fn histogram(&self) -> Log2Histogram {
        let last = self.hist.slots.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1);
        Log2Histogram { zero: self.hist.zero, buckets: self.hist.slots[..last].to_vec(), sum: self.hist.sum_ns as f64 }
    }
}

/// Reads a probe's `latency` map, summed over CPUs.
pub fn read_series(probe: &LoadedProbe, fixed_dims: Option<u32>) -> Result<Vec<LatSeries>, String> {
    let Some(dims) = fixed_dims else {
        let list = crate::probes::per_cpu_with(probe, "latency", LatHist::sum)?;
        return Ok(list.into_iter().map(|(key, hist)| LatSeries { key, hist }).collect());
    };
    let m = probe.ebpf.map("latency").ok_or_else(|| format!("{}: map latency missing", probe.name))?;
    let a: PerCpuArray<&MapData, LatHist> = PerCpuArray::try_from(m).map_err(|e| format!("{}: map latency: {e}", probe.name))?;
    let mut out = Vec::new();
    for i in 0..a.len() {
        let hist = LatHist::sum(&a.get(&i, 0).map_err(|e| format!("{}: map latency: {e}", probe.name))?);
        if hist.slots.iter().any(|c| *c != 0) || hist.zero != 0 {
            out.push(LatSeries { key: LatKey { netns: 0, stage: i / dims, dim: i % dims }, hist });
        }
    }
    Ok(out)
}

/// Names the kernel recorded for dimensions (interfaces).
pub fn dim_names(probe: &LoadedProbe) -> HashMap<LatKey, String> {
    let Some(m) = probe.ebpf.map("dim_names") else { return HashMap::new() };
    let Ok(h) = BpfHashMap::<&MapData, LatKey, [u8; 16]>::try_from(m) else { return HashMap::new() };
    h.iter()
        .filter_map(Result::ok)
        .map(|(k, v)| {
            let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
            (k, String::from_utf8_lossy(&v[..end]).into_owned())
        })
        .collect()
}

/// Entries present in a map of start timestamps (key and value sizes as in the C).
pub fn present(probe: &LoadedProbe, map: &StartMap) -> u64 {
    fn count<const K: usize, const V: usize>(m: &aya::maps::Map) -> u64 {
        BpfHashMap::<&MapData, [u8; K], [u8; V]>::try_from(m).map(|h| h.keys().filter(Result::is_ok).count() as u64).unwrap_or(0)
    }
    let Some(m) = probe.ebpf.map(map.name) else { return 0 };
    match (map.key_size, map.value_size) {
        (8, 8) => count::<8, 8>(m),
        (8, 16) => count::<8, 16>(m),
        (4, 8) => count::<4, 8>(m),
        (16, 32) => count::<16, 32>(m),
        _ => 0,
    }
}

/// Block device names by the kernel's dev_t (major << 20 | minor), from /sys.
#[derive(Default)]
pub struct DiskNames(HashMap<u32, String>);

impl DiskNames {
    pub fn name(&mut self, dev: u32) -> String {
        self.0
            .entry(dev)
            .or_insert_with(|| {
                let (major, minor) = (dev >> 20, dev & 0xfffff);
                std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
                    .ok()
                    .and_then(|t| t.lines().find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string)))
                    .unwrap_or_else(|| format!("{major}:{minor}"))
            })
            .clone()
    }
}

/// The dimension attributes of one series.
pub fn dim_attrs(kind: ProbeKind, s: &LatSeries, names: &HashMap<LatKey, String>, disks: &mut DiskNames) -> Vec<KeyValue> {
    match kind {
        ProbeKind::Softirq => vec![kv_str(SOFTIRQ_TYPE, softirq_name(s.key.dim))],
        ProbeKind::Netiftxlat => {
            let name = names.get(&s.key).cloned().unwrap_or_else(|| format!("if{}", s.key.dim));
            vec![kv_str(INTERFACE, name)]
        }
        ProbeKind::Biolatency => {
            let direction = match s.key.stage {
                0 => "read",
                1 => "write",
                _ => "other",
            };
            vec![kv_str(DEVICE, disks.name(s.key.dim)), kv_str(DISK_DIRECTION, direction)]
        }
        _ => Vec::new(),
    }
}

/// The reclaimed start entries: started - completed - still present.
pub fn reclaimed(started: u64, completed: u64, present: u64) -> u64 {
    started.saturating_sub(completed).saturating_sub(present)
}

/// KubeSkoop's `GetHumanTimes`: `"<n> ms"` above 1 ms, `"<n> us"` above 1 µs, else ns.
pub fn human_time(ns: u64) -> String {
    if ns > 1_000_000 {
        format!("{} ms", ns / 1_000_000)
    } else if ns > 1_000 {
        format!("{} us", ns / 1_000)
    } else {
        format!("{ns} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_labels() {
        assert_eq!(threshold_label(ms(1)), "1ms");
        assert_eq!(threshold_label(ms(100)), "100ms");
        assert_eq!(threshold_label(Duration::from_micros(250)), "250us");
        assert_eq!(threshold_label(Duration::from_secs(2)), "2s");
        assert_eq!(threshold_label(Duration::from_nanos(7)), "7ns");
    }

    #[test]
    fn human_times_as_kubeskoop_prints_them() {
        assert_eq!(human_time(150_000_000), "150 ms");
        assert_eq!(human_time(1_000_000), "1000 us");
        assert_eq!(human_time(2_500), "2 us");
        assert_eq!(human_time(900), "900 ns");
    }

    #[test]
    fn kernel_buckets_become_a_histogram() {
        let mut hist = LatHist::default();
        // 3 values in (2^9, 2^10] ns, 1 in (2^27, 2^28] ns (150 ms).
        hist.slots[10] = 3;
        hist.slots[28] = 1;
        hist.zero = 2;
        hist.sum_ns = 3 * 1000 + 150_000_000;
        let s = LatSeries { key: LatKey { netns: 1, stage: 0, dim: 3 }, hist };
        let h = s.histogram();
        assert_eq!(h.buckets.len(), 29);
        assert_eq!(h.count(), 6);
        let dp = h.data_point(Vec::new(), 1, 2);
        let positive = dp.positive.unwrap();
        assert_eq!(positive.offset, 9, "bucket 10 is OTel index 9: (2^9, 2^10]");
        assert_eq!(positive.bucket_counts.len(), 19);
        assert_eq!(positive.bucket_counts[0], 3);
        assert_eq!(positive.bucket_counts[18], 1, "index 27: (2^27, 2^28] ns holds 150 ms");
        assert_eq!(dp.zero_count, 2);
        assert_eq!(dp.count, 6);
        assert_eq!(dp.scale, 0);
    }

    #[test]
    fn reclaimed_entries() {
        assert_eq!(reclaimed(10, 6, 3), 1);
        assert_eq!(reclaimed(3, 6, 3), 0, "never negative");
    }
}
