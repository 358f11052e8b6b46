//! Loads one probe's object and attaches its programs, trying the hooks this kernel may
//! have in order of cost (tp_btf, then classic tracepoints, then kprobes). A probe that
//! cannot attach anywhere is reported unsupported with every hook's reason; other probes
//! are not affected, as each probe is its own object.

use std::collections::BTreeMap;
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, KProbe, ProgramError, SchedClassifier, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use serde::{Deserialize, Serialize};

/// How a probe attaches to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// The cheapest that works: tp_btf, then tracepoint, then kprobe.
    Auto,
    TpBtf,
    Tracepoint,
    Kprobe,
    /// TC through a tcx link (Linux 6.6+): no qdisc, and other programs keep their place.
    Tcx,
    /// TC through a `clsact` qdisc and a netlink filter (older kernels).
    Tc,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Auto => "auto",
            Hook::TpBtf => "tp_btf",
            Hook::Tracepoint => "tracepoint",
            Hook::Kprobe => "kprobe",
            Hook::Tcx => "tcx",
            Hook::Tc => "tc",
        }
    }
}

/// One program and where it attaches.
#[derive(Clone, Copy, Debug)]
pub enum Attach {
    /// `tp_btf/<event>`.
    TpBtf { program: &'static str, event: &'static str },
    /// `tracepoint/<category>/<event>`.
    Tracepoint { program: &'static str, category: &'static str, event: &'static str },
    /// `kprobe/<function>` (or `kretprobe/<function>`: the program's section decides).
    Kprobe { program: &'static str, function: &'static str },
    /// A TC classifier, loaded here and attached to devices as they appear (the flow
    /// probe's nic mode, `crate::nic`). `tcx`: attached by tcx links, which need 6.6+.
    Tc { program: &'static str, ingress: bool, tcx: bool },
}

impl Attach {
    fn program(&self) -> &'static str {
        match self {
            Attach::TpBtf { program, .. }
            | Attach::Tracepoint { program, .. }
            | Attach::Kprobe { program, .. }
            | Attach::Tc { program, .. } => program,
        }
    }
    fn describe(&self) -> String {
        match self {
            Attach::TpBtf { event, .. } => format!("tp_btf/{event}"),
            Attach::Tracepoint { category, event, .. } => format!("tracepoint/{category}/{event}"),
            Attach::Kprobe { function, .. } => format!("kprobe/{function}"),
            Attach::Tc { ingress, tcx, .. } => {
                format!("{}/{}", if *tcx { "tcx" } else { "tc" }, if *ingress { "ingress" } else { "egress" })
            }
        }
    }
}

/// What a probe is built from.
pub struct ProbeSpec {
    pub name: &'static str,
    pub object: &'static [u8],
    /// The map holding the probe's flow table, sized from the config.
    pub flow_map: Option<&'static str>,
    /// Hook variants, each a full set of programs.
    pub hooks: &'static [(Hook, &'static [Attach])],
    /// Variants that attach but, on some kernels, miss part of what the probe counts.
    pub gaps: &'static [Gap],
}

/// A hook variant that, on kernels whose BTF lacks enum `unless_btf_enum`, does not see
/// `misses`: `auto` tries it only after the complete variants, and a probe that runs with it
/// says so (log and `/status`).
pub struct Gap {
    pub hook: Hook,
    pub unless_btf_enum: &'static str,
    pub misses: &'static str,
}

/// What the receiver sets in a probe before loading it.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub hook: Hook,
    pub events: bool,
    pub stack: bool,
    pub events_per_second: u32,
    pub wakeup_batch: u32,
    pub ring_buffer_bytes: u32,
    pub max_flows: u32,
    /// Latency probes only.
    pub latency: Option<LatencyGlobals>,
    /// A probe's own settings (`volatile const __u32` in its program).
    pub globals: Vec<(&'static str, u32)>,
}

/// What a latency probe is told at load time.
#[derive(Clone, Debug)]
pub struct LatencyGlobals {
    pub threshold_low_ns: u64,
    pub threshold_high_ns: u64,
    pub event_threshold_ns: u64,
    /// softirq: bit per vector.
    pub softirq_mask: u32,
    /// Size of each map of start timestamps.
    pub max_inflight: u32,
    /// Size of the histogram map; `None` for a probe whose series are a fixed array.
    pub max_series: Option<u32>,
    pub start_maps: &'static [crate::latency::StartMap],
}

/// A probe attached to the kernel. Dropping it detaches every program.
pub struct LoadedProbe {
    pub name: &'static str,
    pub hook: Hook,
    /// (program, where it is attached)
    pub programs: Vec<(&'static str, String)>,
    pub ebpf: Ebpf,
    pub events: Option<RingBuf<MapData>>,
    pub stats: PerCpuArray<MapData, u64>,
    /// What this hook does not see on this kernel (a `Gap`), if anything.
    pub misses: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// Classic tracepoints need tracefs. A node agent runs with the host's /sys but tracefs
/// is often not mounted there; mounting it is what `perf` and `bpftrace` do too.
pub fn ensure_tracefs() -> Result<(), String> {
    let dir = std::path::Path::new("/sys/kernel/tracing");
    if dir.join("events").exists() || std::path::Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let src = c"tracefs";
    let target = c"/sys/kernel/tracing";
    // SAFETY: plain mount(2) with valid NUL-terminated strings and no data.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(format!("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The error and its causes (aya puts the errno in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

fn short(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    // Verifier logs can run to thousands of lines: the end says why.
    if s.len() > 400 { format!("…{}", &s[s.len() - 400..]) } else { s }
}

/// The call aya (like libbpf) puts where a CO-RE relocation found nothing in the running
/// kernel's BTF (0xbad2310): the verifier reaches it only when the code that reads the missing
/// field is live. Returns the source line the verifier printed before it.
const POISONED_CALL: &str = "call unknown#195896080";

fn unmatched_relocation(log: &str) -> Option<String> {
    let at = log.find(POISONED_CALL)?;
    let source = log[..at].lines().rev().find_map(|l| l.trim_start().strip_prefix("; ")).unwrap_or("(no source line in the log)");
    Some(source.trim().to_string())
}

fn program_error(attach: &Attach, step: &str, e: ProgramError) -> String {
    let detail = match &e {
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            if let Some(source) = unmatched_relocation(&log) {
                format!("load: reads a type or field this kernel's BTF does not have (a CO-RE relocation found no match) in `{source}`")
            } else if log.trim().is_empty() {
                format!("load: {io_error}")
            } else {
                format!("load: {io_error}: verifier: {}", short(&log))
            }
        }
        other => short(&chain(other)),
    };
    format!("{} ({}): {step}: {detail}", attach.describe(), attach.program())
}

fn attach_one(ebpf: &mut Ebpf, attach: &Attach, btf: &Btf) -> Result<(), String> {
    let program = ebpf.program_mut(attach.program()).ok_or_else(|| format!("{}: program missing from the object", attach.program()))?;
    match *attach {
        Attach::TpBtf { event, .. } => {
            let p: &mut BtfTracePoint = program.try_into().map_err(|e| program_error(attach, "type", e))?;
            p.load(event, btf).map_err(|e| program_error(attach, "load", e))?;
            p.attach().map_err(|e| program_error(attach, "attach", e))?;
        }
        Attach::Tracepoint { category, event, .. } => {
            ensure_tracefs().map_err(|e| format!("{}: {e}", attach.describe()))?;
            let p: &mut TracePoint = program.try_into().map_err(|e| program_error(attach, "type", e))?;
            p.load().map_err(|e| program_error(attach, "load", e))?;
            p.attach(category, event).map_err(|e| program_error(attach, "attach", e))?;
        }
        Attach::Kprobe { function, .. } => {
            let p: &mut KProbe = program.try_into().map_err(|e| program_error(attach, "type", e))?;
            p.load().map_err(|e| program_error(attach, "load", e))?;
            p.attach(function, 0).map_err(|e| program_error(attach, "attach", e))?;
        }
        Attach::Tc { tcx, .. } => {
            if tcx && !tcx_available() {
                return Err(format!("{}: tcx links need Linux 6.6 or later", attach.describe()));
            }
            let p: &mut SchedClassifier = program.try_into().map_err(|e| program_error(attach, "type", e))?;
            p.load().map_err(|e| program_error(attach, "load", e))?;
        }
    }
    Ok(())
}

fn tcx_available() -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
}

/// Why one attempt failed: the object itself (the same for every hook), or a hook.
enum Failure {
    Object(String),
    Hook(String),
}

fn load_with(spec: &ProbeSpec, opts: &LoadOptions, btf: &Btf, hook: Hook, attaches: &[Attach]) -> Result<LoadedProbe, Failure> {
    let (events, stack) = (u32::from(opts.events), u32::from(opts.stack));
    let mut loader = EbpfLoader::new();
    loader
        .btf(Some(btf))
        .override_global("emit_events", &events, true)
        .override_global("emit_stack", &stack, true)
        .override_global("events_per_second", &opts.events_per_second, true)
        .override_global("wakeup_batch", &opts.wakeup_batch, true)
        .map_max_entries("events", opts.ring_buffer_bytes);
    for (name, value) in &opts.globals {
        loader.override_global(name, value, true);
    }
    if let Some(map) = spec.flow_map {
        loader.map_max_entries(map, opts.max_flows);
    }
    if let Some(l) = &opts.latency {
        loader
            .override_global("threshold_low_ns", &l.threshold_low_ns, true)
            .override_global("threshold_high_ns", &l.threshold_high_ns, true)
            .override_global("event_threshold_ns", &l.event_threshold_ns, true)
            .override_global("softirq_mask", &l.softirq_mask, false);
        if let Some(n) = l.max_series {
            loader.map_max_entries("latency", n);
        }
        for map in l.start_maps {
            loader.map_max_entries(map.name, l.max_inflight);
        }
    }
    let mut ebpf = loader.load(spec.object).map_err(|e| {
        let text = chain(&e);
        let hint = if text.contains("Operation not permitted") { " (loading eBPF needs root, or CAP_BPF and CAP_PERFMON)" } else { "" };
        Failure::Object(format!("cannot load the object: {}{hint}", short(&text)))
    })?;
    let mut programs = Vec::new();
    for a in attaches {
        attach_one(&mut ebpf, a, btf).map_err(Failure::Hook)?;
        programs.push((a.program(), a.describe()));
    }
    let object = |e: &str| Failure::Object(e.to_string());
    let events = match opts.events {
        true => Some(
            ebpf.take_map("events")
                .ok_or(object("map events missing"))
                .and_then(|m| RingBuf::try_from(m).map_err(|_| object("map events is not a ring buffer")))?,
        ),
        false => None,
    };
    let stats = ebpf
        .take_map("stats")
        .ok_or(object("map stats missing"))
        .and_then(|m| PerCpuArray::try_from(m).map_err(|_| object("map stats is not a per-CPU array")))?;
    Ok(LoadedProbe { name: spec.name, hook, programs, ebpf, events, stats, misses: None })
}

/// Loads and attaches `spec` with the first hook that works.
pub fn load(spec: &ProbeSpec, opts: &LoadOptions, btf: Option<&Btf>) -> Result<LoadedProbe, Unsupported> {
    let btf =
        btf.ok_or_else(|| Unsupported("the kernel has no BTF (/sys/kernel/btf/vmlinux): CO-RE programs cannot be relocated".into()))?;
    let gap = |hook: Hook| {
        spec.gaps
            .iter()
            .find(|g| g.hook == hook && btf.id_by_type_name_kind(g.unless_btf_enum, aya_obj::btf::BtfKind::Enum).is_err())
            .map(|g| g.misses)
    };
    // The variants that see everything on this kernel first, in the spec's order.
    let (complete, partial): (Vec<_>, Vec<_>) = spec.hooks.iter().partition(|(hook, _)| gap(*hook).is_none());
    let mut reasons = Vec::new();
    for &(hook, attaches) in complete.into_iter().chain(partial) {
        if opts.hook != Hook::Auto && opts.hook != hook {
            continue;
        }
        match load_with(spec, opts, btf, hook, attaches) {
            Ok(mut p) => {
                p.misses = gap(hook);
                return Ok(p);
            }
            // No hook can do better than the object itself.
            Err(Failure::Object(e)) => return Err(Unsupported(e)),
            Err(Failure::Hook(e)) => reasons.push(format!("{}: {e}", hook.as_str())),
        }
    }
    if reasons.is_empty() {
        return Err(Unsupported(format!("hook {} is not available for this probe", opts.hook.as_str())));
    }
    Err(Unsupported(reasons.join("; ")))
}

impl LoadedProbe {
    /// The `stats` array summed over CPUs.
    pub fn stat(&self, index: u32) -> u64 {
        self.stats.get(&index, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// Kernel run statistics per program: (program, runs, run time). Zero unless BPF
    /// statistics are enabled (the receiver holds them on while it runs).
    pub fn program_stats(&self) -> BTreeMap<&'static str, (u64, Duration)> {
        let mut out = BTreeMap::new();
        for (name, _) in &self.programs {
            if let Some(Ok(info)) = self.ebpf.program(name).map(|p| p.info()) {
                out.insert(*name, (info.run_count(), info.run_time()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relocation_without_a_match_is_named_by_its_source_line() {
        // The verifier's log on Debian 12's 6.1 for kernellatency's tracepoint program.
        let log = "func#0 @0\n0: R1=ctx(off=0,imm=0) R10=fp0\n; int kernellatency_tcp_tp(struct trace_event_raw_tcp_probe *args)\n\
                   0: (bf) r6 = r1\n1: (85) call unknown#195896080\ninvalid func unknown#195896080\nprocessed 2 insns\n";
        assert_eq!(unmatched_relocation(log).as_deref(), Some("int kernellatency_tcp_tp(struct trace_event_raw_tcp_probe *args)"));
        assert_eq!(unmatched_relocation("R1 invalid mem access 'scalar'\n"), None);
    }
}
