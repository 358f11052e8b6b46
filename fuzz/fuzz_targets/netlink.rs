//! Netlink replies: a datagram split into messages, then every typed parser over them
//! (sock_diag, rtnetlink links and qdiscs, ctnetlink statistics and events).
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_receiver_netlink::{conntrack, ctevents, dump, qdisc, tcpsummary};

fuzz_target!(|data: &[u8]| {
    let Ok(messages) = dump::split_messages(data) else { return };
    for m in &messages {
        drop(dump::attributes(&m.payload));
        drop(ctevents::parse(&m.bytes).map(|e| e.map(|e| (e.message(), e.record()))));
    }
    if let Ok(sockets) = tcpsummary::parse(&messages) {
        drop(tcpsummary::summarize(&sockets));
    }
    let names = qdisc::link_names(&messages).unwrap_or_default();
    drop(qdisc::parse_qdiscs(&messages, &names));
    drop(conntrack::parse_cpu(&messages));
    drop(conntrack::parse_global(&messages));
});
