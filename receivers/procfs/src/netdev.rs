//! `/proc/<pid>/net/dev`: per-device byte, packet, error and drop counters.
//!
//! Parsed by hand rather than with procfs-core: the kernel prints `"%6s:%8llu"`, so a
//! receive-byte count of more than eight digits follows the colon with no space
//! (`eth0:123456789`), which a whitespace split reads as one token. node_exporter splits on
//! the colon for the same reason.

use podnet_pipeline::pdata::{KubeskoopName, MetricDef, MetricKind, keys};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

impl DeviceCounters {
    fn add(&mut self, o: &DeviceCounters) {
        self.rx_bytes = self.rx_bytes.wrapping_add(o.rx_bytes);
        self.rx_packets = self.rx_packets.wrapping_add(o.rx_packets);
        self.rx_errors = self.rx_errors.wrapping_add(o.rx_errors);
        self.rx_dropped = self.rx_dropped.wrapping_add(o.rx_dropped);
        self.tx_bytes = self.tx_bytes.wrapping_add(o.tx_bytes);
        self.tx_packets = self.tx_packets.wrapping_add(o.tx_packets);
        self.tx_errors = self.tx_errors.wrapping_add(o.tx_errors);
        self.tx_dropped = self.tx_dropped.wrapping_add(o.tx_dropped);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub counters: DeviceCounters,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetDevError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("no header: not a /proc/net/dev file")]
    NoHeader,
}

/// Number of counter columns per device: 8 receive, 8 transmit.
const COLUMNS: usize = 16;

/// Parses the whole file. Any malformed device line fails the file: a partial sum would
/// look like a counter reset.
pub fn parse(text: &str) -> Result<Vec<Device>, NetDevError> {
    let mut lines = text.lines().enumerate();
    let header_ok = matches!(lines.next(), Some((_, l)) if l.contains('|'));
    let header2_ok = matches!(lines.next(), Some((_, l)) if l.contains("bytes"));
    if !header_ok || !header2_ok {
        return Err(NetDevError::NoHeader);
    }
    let mut devices = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let err = |reason: String| NetDevError::Line { line: line_no, reason };
        let (name, rest) = line.split_once(':').ok_or_else(|| err("no ':' after the device name".to_string()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(err("empty device name".to_string()));
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() < COLUMNS {
            return Err(err(format!("device {name}: expected {COLUMNS} counters, found {}", fields.len())));
        }
        let mut values = [0u64; COLUMNS];
        for (slot, field) in values.iter_mut().zip(&fields) {
            *slot = field.parse().map_err(|_| err(format!("device {name}: counter \"{field}\" is not a number")))?;
        }
        devices.push(Device {
            name: name.to_string(),
            counters: DeviceCounters {
                rx_bytes: values[0],
                rx_packets: values[1],
                rx_errors: values[2],
                rx_dropped: values[3],
                tx_bytes: values[8],
                tx_packets: values[9],
                tx_errors: values[10],
                tx_dropped: values[11],
            },
        });
    }
    Ok(devices)
}

/// The sum over every device but loopback, as KubeSkoop reports a namespace.
pub fn sum_without_loopback(devices: &[Device]) -> DeviceCounters {
    let mut total = DeviceCounters::default();
    for d in devices.iter().filter(|d| d.name != "lo") {
        total.add(&d.counters);
    }
    total
}

pub const IO: MetricDef = MetricDef {
    name: "system.network.io",
    description: "Bytes received and transmitted by the namespace's network devices (loopback excluded).",
    unit: "By",
    kind: MetricKind::Counter,
    kubeskoop: Some(KubeskoopName::SplitBy {
        attribute: keys::NETWORK_IO_DIRECTION,
        names: &[("receive", "kubeskoop_netdev_rxbytes"), ("transmit", "kubeskoop_netdev_txbytes")],
    }),
};
pub const PACKETS: MetricDef = MetricDef {
    name: "system.network.packet.count",
    description: "Packets received and transmitted by the namespace's network devices (loopback excluded).",
    unit: "{packet}",
    kind: MetricKind::Counter,
    kubeskoop: Some(KubeskoopName::SplitBy {
        attribute: keys::NETWORK_IO_DIRECTION,
        names: &[("receive", "kubeskoop_netdev_rxpackets"), ("transmit", "kubeskoop_netdev_txpackets")],
    }),
};
pub const ERRORS: MetricDef = MetricDef {
    name: "system.network.errors",
    description: "Receive and transmit errors on the namespace's network devices (loopback excluded).",
    unit: "{error}",
    kind: MetricKind::Counter,
    kubeskoop: Some(KubeskoopName::SplitBy {
        attribute: keys::NETWORK_IO_DIRECTION,
        names: &[("receive", "kubeskoop_netdev_rxerrors"), ("transmit", "kubeskoop_netdev_txerrors")],
    }),
};
pub const DROPPED: MetricDef = MetricDef {
    name: "system.network.packet.dropped",
    description: "Packets dropped on receive and transmit by the namespace's network devices (loopback excluded).",
    unit: "{packet}",
    kind: MetricKind::Counter,
    kubeskoop: Some(KubeskoopName::SplitBy {
        attribute: keys::NETWORK_IO_DIRECTION,
        names: &[("receive", "kubeskoop_netdev_rxdropped"), ("transmit", "kubeskoop_netdev_txdropped")],
    }),
};

/// Each metric with its receive and transmit value.
pub fn points(c: &DeviceCounters) -> [(&'static MetricDef, u64, u64); 4] {
    [
        (&IO, c.rx_bytes, c.tx_bytes),
        (&PACKETS, c.rx_packets, c.tx_packets),
        (&ERRORS, c.rx_errors, c.tx_errors),
        (&DROPPED, c.rx_dropped, c.tx_dropped),
    ]
}

// Per-device series are separate metrics, so summing a namespace metric never counts a
// device twice.
pub const DEVICE_IO: MetricDef = MetricDef::counter("podnet.netdev.device.io", "Bytes received and transmitted per network device.", "By");
pub const DEVICE_PACKETS: MetricDef =
    MetricDef::counter("podnet.netdev.device.packet.count", "Packets received and transmitted per network device.", "{packet}");
pub const DEVICE_ERRORS: MetricDef =
    MetricDef::counter("podnet.netdev.device.errors", "Receive and transmit errors per network device.", "{error}");
pub const DEVICE_DROPPED: MetricDef =
    MetricDef::counter("podnet.netdev.device.packet.dropped", "Packets dropped per network device.", "{packet}");

/// Each per-device metric with its receive and transmit value.
pub fn device_points(c: &DeviceCounters) -> [(&'static MetricDef, u64, u64); 4] {
    [
        (&DEVICE_IO, c.rx_bytes, c.tx_bytes),
        (&DEVICE_PACKETS, c.rx_packets, c.tx_packets),
        (&DEVICE_ERRORS, c.rx_errors, c.tx_errors),
        (&DEVICE_DROPPED, c.rx_dropped, c.tx_dropped),
    ]
}
