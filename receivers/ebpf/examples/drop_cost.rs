//! Measures the added time per dropped packet of a packetloss object (a path, or the
//! committed one): for trying variants of the program against the same generator.
//! Usage (root): cargo run --release -p podnet-receiver-ebpf --example drop_cost [object.o]

use std::net::UdpSocket;
use std::time::Instant;

use podnet_receiver_ebpf::loader::{self, Hook, LoadOptions, ProbeSpec};
use podnet_receiver_ebpf::probes::PACKETLOSS;

fn ns_per_drop(n: usize) -> f64 {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let _ = udp.send_to(b"x", "127.0.0.1:9");
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let object: &'static [u8] = match std::env::args().nth(1) {
        Some(path) => Box::leak(std::fs::read(path).expect("read object").into_boxed_slice()),
        None => PACKETLOSS.object,
    };
    let spec = ProbeSpec { object, ..PACKETLOSS };
    let btf = aya::Btf::from_sys_fs().unwrap();
    let opts = LoadOptions {
        hook: Hook::TpBtf,
        events: false,
        stack: false,
        events_per_second: 0,
        wakeup_batch: 64,
        ring_buffer_bytes: 1 << 20,
        max_flows: 10240,
    };
    let (mut none, mut with) = (f64::MAX, f64::MAX);
    for _ in 0..9 {
        none = none.min(ns_per_drop(100_000));
        let _p = loader::load(&spec, &opts, Some(&btf)).unwrap_or_else(|e| panic!("{}", e.0));
        with = with.min(ns_per_drop(100_000));
    }
    println!("no probe {none:.0} ns, with {with:.0} ns, added {:.0} ns per drop", with - none);
}
