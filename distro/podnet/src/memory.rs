//! The heap of a long-running agent. Every collection builds and drops a batch as large as
//! the node's series (tens of MiB with flow tables full), on whichever thread runs it:
//! allocation is a large part of the agent's CPU. Measured on the whole agent at 100 pods
//! (`scripts/bench`, `bench_agent`, ~53,600 series, two interleaved rounds of 90 s): CPU per
//! 5 s cycle 249 / 329 ms on mimalloc against 452 / 516 ms on glibc limited to two arenas
//! and trimmed every 10 s (which spends its time consolidating free lists); RSS at the end
//! 108 / 108 MiB on mimalloc purging freed pages at once, 121 / 150 MiB with mimalloc's
//! default 1 s purge delay, 86 / 117 MiB on tuned glibc; glibc's defaults took ~190-240 MiB
//! in earlier runs. The agent allocates with mimalloc for the CPU; the benchmark keeps
//! measuring the others.
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

/// mimalloc gives pages freed by a collection back to the kernel 1 s after they were freed
/// (its default); a collection frees a batch of tens of MiB at once, and by then the next
/// one is being built, so RSS stayed near the peak of two. Purging at once, in interleaved
/// runs at 100 pods (`bench_agent`): RSS at the end 108 / 108 against 121 / 150 MiB, the
/// highest 115 / 128 against 148 / 172 MiB, CPU per cycle 249 / 329 against 248 / 289 ms.
/// mimalloc's own `MIMALLOC_PURGE_DELAY` (ms), when set, wins.
#[cfg(feature = "mimalloc")]
const PURGE_DELAY_MS: std::ffi::c_long = 0;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (the Rust bindings name no
/// constant for it); the test below checks it by its default of 1000 ms.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the allocator's limits; call before the runtime starts its threads.
pub fn limit_arenas() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: sets an option's value unless the environment set it; mimalloc reads options
    // as it runs, and a changed purge delay applies to later frees.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS)
    };
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

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_podnet_sets() {
        // mimalloc's own variable, when set, wins over podnet's default.
        let from_env: Option<std::ffi::c_long> = std::env::var("MIMALLOC_PURGE_DELAY").ok().and_then(|v| v.trim().parse().ok());
        // SAFETY: reads and sets an allocator option; no preconditions.
        let (before, after) = unsafe {
            let before = libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY);
            limit_arenas();
            (before, libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY))
        };
        assert_eq!(before, from_env.unwrap_or(1000), "mimalloc's documented default purge delay: another option has index 15");
        assert_eq!(after, from_env.unwrap_or(PURGE_DELAY_MS));
    }
}
