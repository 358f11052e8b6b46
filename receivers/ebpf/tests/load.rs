//! Every committed object loads and attaches on this kernel with each hook the kernel
//! has; a hook it lacks (kprobes on the CI machines) is reported unsupported with the
//! reason instead of failing the agent.

use podnet_receiver_ebpf::loader::{self, Hook, LoadOptions};
use podnet_receiver_ebpf::probes::ProbeKind;

fn options(hook: Hook) -> LoadOptions {
    LoadOptions { hook, events: true, stack: true, events_per_second: 100, wakeup_batch: 64, ring_buffer_bytes: 1 << 16, max_flows: 128 }
}

fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: loading eBPF programs needs root (CI runs as root)");
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
    for kind in ProbeKind::ALL {
        for hook in [Hook::TpBtf, Hook::Tracepoint] {
            let p = loader::load(kind.spec(), &options(hook), Some(&btf))
                .unwrap_or_else(|e| panic!("{} with {}: {}", kind.spec().name, hook.as_str(), e.0));
            assert_eq!(p.hook, hook);
            assert!(p.events.is_some(), "events requested: the ring buffer is handed over");
            assert!(!p.programs.is_empty());
        }
        let auto = loader::load(kind.spec(), &options(Hook::Auto), Some(&btf)).unwrap();
        assert_eq!(auto.hook, Hook::TpBtf, "auto prefers the cheapest hook");
    }
}

#[test]
fn a_kprobe_only_probe_is_unsupported_here_with_the_reason() {
    if !privileged() {
        return;
    }
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        eprintln!("skipped: this kernel has kprobes, so the kprobe variant attaches");
        return;
    }
    let btf = aya::Btf::from_sys_fs().expect("this kernel has BTF");
    for kind in ProbeKind::ALL {
        let err = match loader::load(kind.spec(), &options(Hook::Kprobe), Some(&btf)) {
            Ok(_) => panic!("{}: kprobe attached on a kernel without kprobes", kind.spec().name),
            Err(e) => e.0,
        };
        assert!(err.starts_with("kprobe: kprobe/"), "{}: {err}", kind.spec().name);
        assert!(err.contains("attach"), "the load works, the attach fails: {err}");
    }
}

#[test]
fn without_btf_every_probe_is_unsupported() {
    let err = loader::load(ProbeKind::Packetloss.spec(), &options(Hook::Auto), None).err().unwrap();
    assert!(err.0.contains("no BTF"), "{}", err.0);
}
