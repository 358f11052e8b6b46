//! Event records from the eBPF ring buffers, decoded with their lengths checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_receiver_ebpf::abi;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = abi::decode(data) {
        drop((record.event.name(), record.event.is_latency(), record.stack.len()));
        let _ = abi::ip(record.event.family, &record.event.saddr);
    }
});
