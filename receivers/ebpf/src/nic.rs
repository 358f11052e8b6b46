//! The flow probe's nic mode (KubeSkoop's): its TC programs on the node's NIC(s), kept in
//! step with the devices as they come and go. A device is chosen by exact name, by a
//! prefix ending with `*`, or, with no name configured, as the device of the default
//! route. With tcx links (6.6+) nothing else on the device changes; with classic TC a
//! `clsact` qdisc is created only where there is none, and only a qdisc podnet created is
//! removed when the probe stops.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aya::programs::tc::{NlOptions, SchedClassifierLinkId, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};

use crate::loader::{Hook, LoadedProbe};

pub const INGRESS_PROGRAM: &str = "flow_tc_ingress";
pub const EGRESS_PROGRAM: &str = "flow_tc_egress";
const ARPHRD_ETHER: &str = "1";

/// Which devices the probe watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceMatch {
    Exact(String),
    Prefix(String),
    /// The device(s) of the default route(s), IPv4 and IPv6.
    DefaultRoute,
}

impl DeviceMatch {
    pub fn parse(interface_name: Option<&str>) -> DeviceMatch {
        match interface_name {
            None => DeviceMatch::DefaultRoute,
            Some(n) => match n.strip_suffix('*') {
                Some(prefix) => DeviceMatch::Prefix(prefix.to_string()),
                None => DeviceMatch::Exact(n.to_string()),
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            DeviceMatch::Exact(n) => format!("interface_name {n:?}"),
            DeviceMatch::Prefix(p) => format!("interface_name \"{p}*\""),
            DeviceMatch::DefaultRoute => "the default route's device".to_string(),
        }
    }
}

/// The devices of the default routes in `/proc/net/route` and `/proc/net/ipv6_route`
/// (the agent's own namespace: the node's, with host networking).
pub fn default_route_devices(route: &str, ipv6_route: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask …; RTF_UP = 1.
        let up = f.get(3).and_then(|v| u32::from_str_radix(v, 16).ok()).is_some_and(|fl| fl & 1 == 1);
        if f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000" && up {
            out.insert(f[0].to_string());
        }
    }
    for line in ipv6_route.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // dest prefixlen src srcprefixlen nexthop metric refcnt use flags device
        if f.len() == 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo" {
            out.insert(f[9].to_string());
        }
    }
    out
}

/// The agent namespace's devices: (name, ifindex).
fn devices() -> Vec<(String, u32)> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zeroed entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return out;
        }
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            let name = std::ffi::CStr::from_ptr((*p).if_name).to_string_lossy().into_owned();
            out.push((name, (*p).if_index));
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    out
}

fn is_ethernet(name: &str) -> bool {
    // Unreadable (no sysfs): try it; the program skips what is not IP over Ethernet.
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("type")).map_or(true, |t| t.trim() == ARPHRD_ETHER)
}

struct Attached {
    ifindex: u32,
    links: Vec<(&'static str, SchedClassifierLinkId)>,
}

/// The probe's attachments; dropping it removes the `clsact` qdiscs it created.
pub struct NicAttachments {
    matcher: DeviceMatch,
    tcx: bool,
    attached: BTreeMap<String, Attached>,
    created_clsact: BTreeSet<u32>,
    /// Devices that could not be attached, with why (reported once per device).
    failed: BTreeMap<String, String>,
}

impl NicAttachments {
    pub fn new(matcher: DeviceMatch, hook: Hook) -> NicAttachments {
        NicAttachments {
            matcher,
            tcx: hook == Hook::Tcx,
            attached: BTreeMap::new(),
            created_clsact: BTreeSet::new(),
            failed: BTreeMap::new(),
        }
    }

    /// The devices the programs are attached to now.
    pub fn devices(&self) -> Vec<&str> {
        self.attached.keys().map(String::as_str).collect()
    }

    fn wanted(&self, present: &[(String, u32)]) -> Result<BTreeMap<String, u32>, String> {
        let defaults = match self.matcher {
            DeviceMatch::DefaultRoute => {
                let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
                let d = default_route_devices(&read("/proc/net/route"), &read("/proc/net/ipv6_route"));
                if d.is_empty() {
                    return Err("the node has no default route: set probes::flow::interface_name to the NIC (or a prefix ending with *)"
                        .to_string());
                }
                d
            }
            _ => BTreeSet::new(),
        };
        Ok(present
            .iter()
            .filter(|(name, _)| name != "lo")
            .filter(|(name, _)| match &self.matcher {
                DeviceMatch::Exact(n) => name == n,
                DeviceMatch::Prefix(p) => name.starts_with(p.as_str()),
                DeviceMatch::DefaultRoute => defaults.contains(name),
            })
            .map(|(n, i)| (n.clone(), *i))
            .collect())
    }

    /// Attaches to devices that appeared and forgets those that left. Returns what is
    /// wrong now (no device matches; a device refused), for the collection's errors.
    pub fn sync(&mut self, probe: &mut LoadedProbe) -> Vec<String> {
        let present = devices();
        let wanted = match self.wanted(&present) {
            Ok(w) => w,
            Err(e) => return vec![e],
        };
        let mut problems = Vec::new();
        if wanted.is_empty() && self.matcher != DeviceMatch::DefaultRoute {
            let names: Vec<&str> = present.iter().map(|(n, _)| n.as_str()).collect();
            problems.push(format!("no device matches {} (devices: {})", self.matcher.describe(), names.join(", ")));
        }
        // Gone, or the same name on a new device: the kernel removed the old links with it.
        let stale: Vec<String> = self.attached.iter().filter(|(n, a)| wanted.get(*n) != Some(&a.ifindex)).map(|(n, _)| n.clone()).collect();
        for name in stale {
            if let Some(a) = self.attached.remove(&name) {
                for (program, id) in a.links {
                    if let Some(p) = program_mut(probe, program) {
                        let _ = p.detach(id);
                    }
                }
                self.created_clsact.remove(&a.ifindex);
                tracing::info!(probe = "flow", device = %name, "device gone: detached");
            }
        }
        self.failed.retain(|n, _| wanted.contains_key(n));
        for (name, ifindex) in wanted {
            if self.attached.contains_key(&name) {
                continue;
            }
            match self.attach(probe, &name, ifindex) {
                Ok(a) => {
                    tracing::info!(probe = "flow", device = %name, hook = if self.tcx { "tcx" } else { "tc" }, "attached ingress and egress");
                    self.failed.remove(&name);
                    self.attached.insert(name, a);
                }
                Err(e) => {
                    if self.failed.insert(name.clone(), e.clone()).is_none() {
                        tracing::warn!(probe = "flow", device = %name, "cannot attach: {e}");
                    }
                    problems.push(format!("{name}: {e}"));
                }
            }
        }
        problems
    }

    fn attach(&mut self, probe: &mut LoadedProbe, name: &str, ifindex: u32) -> Result<Attached, String> {
        if !is_ethernet(name) {
            return Err("not an Ethernet device (nic mode reads Ethernet frames; use mode: pods for other devices)".to_string());
        }
        if !self.tcx {
            match aya::programs::tc::qdisc_add_clsact(name) {
                Ok(()) => {
                    self.created_clsact.insert(ifindex);
                }
                Err(e) if is_exists(&e) => {}
                Err(e) => return Err(format!("cannot add a clsact qdisc: {e}")),
            }
        }
        let mut links = Vec::new();
        for (program, kind) in [(INGRESS_PROGRAM, TcAttachType::Ingress), (EGRESS_PROGRAM, TcAttachType::Egress)] {
            let options =
                if self.tcx { TcAttachOptions::TcxOrder(LinkOrder::default()) } else { TcAttachOptions::Netlink(NlOptions::default()) };
            let result = match program_mut(probe, program) {
                Some(p) => p.attach_with_options(name, kind, options).map_err(|e| e.to_string()),
                None => Err(format!("program {program} missing from the object")),
            };
            match result {
                Ok(id) => links.push((program, id)),
                Err(e) => {
                    for (program, id) in links {
                        if let Some(p) = program_mut(probe, program) {
                            let _ = p.detach(id);
                        }
                    }
                    return Err(format!("{program}: {e}"));
                }
            }
        }
        Ok(Attached { ifindex, links })
    }
}

impl Drop for NicAttachments {
    fn drop(&mut self) {
        for ifindex in std::mem::take(&mut self.created_clsact) {
            if let Err(e) = delete_clsact(ifindex) {
                tracing::warn!(probe = "flow", ifindex, "cannot remove the clsact qdisc podnet added: {e}");
            }
        }
    }
}

fn program_mut<'a>(probe: &'a mut LoadedProbe, name: &str) -> Option<&'a mut SchedClassifier> {
    probe.ebpf.program_mut(name)?.try_into().ok()
}

fn is_exists(e: &aya::programs::tc::TcError) -> bool {
    use aya::programs::tc::TcError;
    match e {
        TcError::AlreadyAttached => true,
        TcError::NetlinkError(n) => n.raw_os_error() == Some(libc::EEXIST),
        TcError::IoError(io) => io.raw_os_error() == Some(libc::EEXIST),
        _ => false,
    }
}

/// `tc qdisc del dev <ifindex> clsact`, by rtnetlink (aya has no call for it).
fn delete_clsact(ifindex: u32) -> std::io::Result<()> {
    const RTM_DELQDISC: u16 = 37;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
    const CLSACT_HANDLE: u32 = 0xFFFF_0000;
    // nlmsghdr (16) + tcmsg (20) + TCA_KIND "clsact\0" (4 + 7, padded to 12).
    let mut msg = Vec::with_capacity(48);
    msg.extend_from_slice(&48u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_DELQDISC.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[0u8, 0, 0, 0]); // family, pad
    msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    msg.extend_from_slice(&CLSACT_HANDLE.to_ne_bytes());
    msg.extend_from_slice(&TC_H_CLSACT.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // tcm_info
    msg.extend_from_slice(&11u16.to_ne_bytes()); // rta_len
    msg.extend_from_slice(&1u16.to_ne_bytes()); // TCA_KIND
    msg.extend_from_slice(b"clsact\0\0");
    debug_assert_eq!(msg.len(), 48);
    // SAFETY: plain socket calls on a fd this function owns and closes.
    unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let result = (|| {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            if libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of_val(&addr) as u32,
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            let mut buf = [0u8; 1024];
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // NLMSG_ERROR (2) carries the result: 0 is the ack.
            if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == 2 {
                let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
                // ENOENT/EINVAL: the device or the qdisc is already gone.
                if code != 0 && code != -libc::ENOENT && code != -libc::EINVAL {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
            }
            Ok(())
        })();
        libc::close(fd);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_devices_from_proc() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                     eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
                     wg0\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0\n";
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth1\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n\
                  fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n";
        let d = default_route_devices(route, v6);
        assert_eq!(
            d,
            BTreeSet::from(["eth0".to_string(), "eth1".to_string()]),
            "wg0's route is down; lo's unreachable default is not a NIC"
        );
    }

    #[test]
    fn device_patterns() {
        assert_eq!(DeviceMatch::parse(Some("eth*")), DeviceMatch::Prefix("eth".into()));
        assert_eq!(DeviceMatch::parse(Some("eth0")), DeviceMatch::Exact("eth0".into()));
        assert_eq!(DeviceMatch::parse(None), DeviceMatch::DefaultRoute);
    }
}
