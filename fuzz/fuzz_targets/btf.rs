//! The kernel's BTF blob, read for the names of drop and reset reasons.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_receiver_ebpf::btf;

fuzz_target!(|data: &[u8]| {
    for name in ["colour", "skb_drop_reason", "sk_rst_reason"] {
        if let Ok(names) = btf::ReasonNames::from_btf(data, name, "SKB_DROP_REASON_") {
            drop(names.name(7));
        }
    }
});
