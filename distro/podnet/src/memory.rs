//! The heap of a long-running agent. Every collection builds and drops a batch as large as
//! the node's series (tens of MiB with flow tables full), on whichever thread runs it, and
//! the exporters look up and rewrite every series' labels: allocation is a large part of the
//! agent's CPU. Measured on the whole agent at 100 pods (`scripts/bench`, `bench_agent`,
//! ~53,000 series, four runs of two interleaved rounds): CPU per 5 s cycle, the lower round
//! of each run, 405 / 388 / 402 / 383 ms on mimalloc against 652 / 663 / 522 / 643 ms on glibc
//! limited to two arenas and trimmed every 10 s (which spends its time consolidating free
//! lists); the higher rounds are close (650-860 ms either way). RSS at the end is ~10-15
//! MiB higher on mimalloc (134-138 against 116-123 MiB in the last run); glibc's defaults
//! take ~190-240 MiB. The agent allocates with mimalloc for the CPU; the choice is close
//! enough that the benchmark keeps measuring both.
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
