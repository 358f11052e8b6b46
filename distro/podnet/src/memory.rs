//! The heap of a long-running agent: glibc's malloc, tuned. Every collection builds and
//! drops a batch as large as the node's series (tens of MiB with flow tables full), on
//! whichever thread runs it. Left alone, glibc gives each such thread its own arena (up to
//! 8 per core) and keeps their freed pages: measured on the whole agent at 100 pods
//! (`scripts/bench`, `bench_agent`), that is most of the resident memory. Two arenas, and
//! returning free pages to the kernel after the batches are gone, keep RSS near the live heap.
//!
//! `PODNET_MALLOC_ARENAS` (default 2; 0 keeps glibc's default) and
//! `PODNET_MALLOC_TRIM_INTERVAL` (seconds, default 10; 0 turns trimming off) tune it;
//! glibc's own `MALLOC_ARENA_MAX`, when set, wins over the first.
//!
//! Built with `--features mimalloc`, the agent allocates with mimalloc instead (for the
//! benchmark's allocator comparison) and none of this applies.

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
