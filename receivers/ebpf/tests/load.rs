//! Every committed object loads and attaches on this kernel with each hook the kernel
//! has; a hook it lacks (kprobes on the CI machines) is reported unsupported with the
//! reason instead of failing the agent.

use podnet_pipeline::testing::{Lacks, skip};
use podnet_receiver_ebpf::loader::{self, Hook, LoadOptions};
use podnet_receiver_ebpf::probes::ProbeKind;

fn options(kind: ProbeKind, hook: Hook) -> LoadOptions {
    let latency = kind.latency().map(|l| loader::LatencyGlobals {
        threshold_low_ns: 1_000_000,
        threshold_high_ns: 100_000_000,
        event_threshold_ns: 10_000_000,
        softirq_mask: 0b1100,
        max_inflight: 256,
        max_series: l.fixed_dims.is_none().then_some(256),
        start_maps: l.start_maps,
    });
    // Latency events carry no stack.
    let stack = latency.is_none();
    LoadOptions {
        hook,
        events: true,
        stack,
        events_per_second: 100,
        wakeup_batch: 64,
        ring_buffer_bytes: 1 << 16,
        max_flows: 128,
        latency,
        globals: Vec::new(),
    }
}

fn has(kind: ProbeKind, hook: Hook) -> bool {
    kind.spec().hooks.iter().any(|(h, _)| *h == hook)
}

fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip(Lacks::Root, "loading eBPF programs needs root (CI runs as root)");
        return false;
    }
    true
}

#[test]
fn every_object_loads_with_tp_btf_and_with_classic_tracepoints() {
    if !privileged() {
        return;
    }
    let btf = aya::Btf::from_sys_fs().expect("this kernel has BTF");
    let mut tried = 0;
    for kind in ProbeKind::ALL {
        for hook in [Hook::TpBtf, Hook::Tracepoint].into_iter().filter(|h| has(kind, *h)) {
            let p = loader::load(kind.spec(), &options(kind, hook), Some(&btf))
                .unwrap_or_else(|e| panic!("{} with {}: {}", kind.spec().name, hook.as_str(), e.0));
            assert_eq!(p.hook, hook);
            assert!(p.events.is_some(), "events requested: the ring buffer is handed over");
            assert!(!p.programs.is_empty());
            tried += 1;
        }
        if has(kind, Hook::TpBtf) {
            let auto = loader::load(kind.spec(), &options(kind, Hook::Auto), Some(&btf)).unwrap();
            assert_eq!(auto.hook, Hook::TpBtf, "auto prefers the cheapest hook");
        }
    }
    assert_eq!(tried, 17, "tp_btf and tracepoint variants of the nine probes that have them");
}

#[test]
fn the_flow_probes_nic_mode_loads_for_tcx_and_for_classic_tc() {
    if !privileged() {
        return;
    }
    let btf = aya::Btf::from_sys_fs().expect("this kernel has BTF");
    let spec = ProbeKind::Flow.spec_for(true);
    // This kernel (6.6+) has tcx, so auto takes it; tc is the older kernels' way.
    let auto = loader::load(spec, &options(ProbeKind::Flow, Hook::Auto), Some(&btf)).unwrap_or_else(|e| panic!("{}", e.0));
    assert_eq!(auto.hook, Hook::Tcx);
    let tc = loader::load(spec, &options(ProbeKind::Flow, Hook::Tc), Some(&btf)).unwrap_or_else(|e| panic!("{}", e.0));
    assert_eq!(tc.programs.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>(), ["tc/ingress", "tc/egress"]);
    let err = loader::load(spec, &options(ProbeKind::Flow, Hook::TpBtf), Some(&btf)).err().unwrap();
    assert!(err.0.contains("hook tp_btf is not available"), "{}", err.0);
}

#[test]
fn a_kprobe_only_probe_is_unsupported_here_with_the_reason() {
    if !privileged() {
        return;
    }
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        skip(Lacks::Kernel, "this kernel has kprobes, so the kprobe variant attaches");
        return;
    }
    let btf = aya::Btf::from_sys_fs().expect("this kernel has BTF");
    for kind in ProbeKind::ALL.into_iter().filter(|k| has(*k, Hook::Kprobe)) {
        let err = match loader::load(kind.spec(), &options(kind, Hook::Kprobe), Some(&btf)) {
            Ok(_) => panic!("{}: kprobe attached on a kernel without kprobes", kind.spec().name),
            Err(e) => e.0,
        };
        assert!(err.starts_with("kprobe: kprobe/"), "{}: {err}", kind.spec().name);
        assert!(err.contains("attach"), "the load works, the attach fails: {err}");
    }
    // virtcmdlatency has nothing but kprobes: with `auto` it is unsupported, and says why.
    let err = loader::load(ProbeKind::Virtcmdlatency.spec(), &options(ProbeKind::Virtcmdlatency, Hook::Auto), Some(&btf)).err().unwrap();
    assert!(err.0.contains("kprobe/virtnet_send_command_reply") && err.0.contains("kprobe/virtnet_send_command "), "{}", err.0);
}

#[test]
fn a_probe_without_the_asked_hook_says_so() {
    let btf = match aya::Btf::from_sys_fs() {
        Ok(b) => b,
        Err(_) => return skip(Lacks::Kernel, "no kernel BTF"),
    };
    let err = loader::load(ProbeKind::Softirq.spec(), &options(ProbeKind::Softirq, Hook::Kprobe), Some(&btf)).err().unwrap();
    assert_eq!(err.0, "hook kprobe is not available for this probe");
}

#[test]
fn without_btf_every_probe_is_unsupported() {
    let err = loader::load(ProbeKind::Packetloss.spec(), &options(ProbeKind::Packetloss, Hook::Auto), None).err().unwrap();
    assert!(err.0.contains("no BTF"), "{}", err.0);
}
