//! Captures real netlink replies of this kernel into tests/fixtures (the golden files of the
//! parser tests). Run as root: `cargo run -p podnet-receiver-netlink --example capture_fixtures`.

use std::time::Duration;

use podnet_receiver_netlink::dump;

fn save(name: &str, messages: &[dump::RawMessage]) {
    let bytes: Vec<u8> = messages.iter().flat_map(|m| m.bytes.clone()).collect();
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(&path, bytes).expect("write fixture");
    println!("{path}: {} messages", messages.len());
}

fn main() {
    let t = Duration::from_secs(2);
    for (name, protocol, request) in podnet_receiver_netlink::fixture_requests() {
        let socket = dump::open(protocol, t).expect("netlink socket");
        save(name, &dump::dump(&socket, &request, t).expect("dump"));
    }
}
