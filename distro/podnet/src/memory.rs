//! The heap of a long-running agent. Every collection builds and drops a batch as large as
//! the node's series (tens of MiB with flow tables full), on whichever thread runs it, and
//! the exporters look up and rewrite every series' labels: allocation is a large part of the
//! agent's CPU. Measured on the whole agent at 100 pods (`scripts/bench`, `bench_agent`,
//! three runs of two interleaved rounds, ~53,000 series): CPU per 5 s cycle, medians of the
//! runs, 408 / 448 / 650 ms on mimalloc against 832 / 857 / 690 ms on glibc limited to two
//! arenas and trimmed every 10 s (which spends its time consolidating free lists), with
//! RSS at the end 115–146 MiB on mimalloc against 108–146 MiB; glibc's defaults take
//! 557–620 ms and 190–243 MiB. So the agent allocates with mimalloc.
//!
//! Built without it (`--no-default-features`), glibc is tuned instead:
//! `PODNET_MALLOC_ARENAS` (default 2; 0 keeps glibc's default) and
//! `PODNET_MALLOC_TRIM_INTERVAL` (seconds, default 10; 0 turns trimming off);
//! glibc's own `MALLOC_ARENA_MAX`, when set, wins over the first.

use std::time::Duration;

const DEFAULT_ARENAS: i32 = 2;
const DEFAULT_TRIM_SECS: u64 = 10;

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets the arena limit; call before the runtime starts its threads.
pub fn limit_arenas() {
    if cfg!(feature = "mimalloc") || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let arenas = env_number("PODNET_MALLOC_ARENAS").map(|n| n.min(64) as i32).unwrap_or(DEFAULT_ARENAS);
    if arenas > 0 {
        // SAFETY: mallopt only changes allocator parameters; no allocation is in flight here
        // that depends on them.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    }
}

/// Returns free heap pages to the kernel every interval, on a thread of its own (a trim
/// walks the arenas and takes their locks: never on the async workers).
pub fn spawn_trimmer() {
    let secs = env_number("PODNET_MALLOC_TRIM_INTERVAL").unwrap_or(DEFAULT_TRIM_SECS);
    if secs == 0 || cfg!(feature = "mimalloc") {
        return;
    }
    let spawned = std::thread::Builder::new().name("podnet-malloc-trim".into()).spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(secs));
            // SAFETY: malloc_trim has no preconditions.
            unsafe { libc::malloc_trim(0) };
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the heap trimmer thread: {e}; freed memory stays with the process");
    }
}
