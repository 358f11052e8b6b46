//! Honest skips for tests: a test that cannot run here calls [`skip`], which says so on
//! stderr and, when `PODNET_TEST_SKIPS` names a file (scripts/test.sh sets it), records the
//! test there, so the suite's closing line counts it as skipped, not passed, and CI can
//! refuse a skip that should not happen on its machines.

use std::io::Write as _;

/// What the test lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lacks {
    /// Root (or the capabilities it stands for): CI runs as root, so there it is a failure.
    Root,
    /// A tool the test script installs: in CI, a missing install step, so a failure.
    Tool,
    /// A kernel feature this machine may rightly not have (or a variant it rightly has).
    Kernel,
}

impl Lacks {
    fn as_str(self) -> &'static str {
        match self {
            Lacks::Root => "root",
            Lacks::Tool => "tool",
            Lacks::Kernel => "kernel",
        }
    }
}

/// Reports the calling test as skipped for `reason`; the caller then returns.
pub fn skip(lacks: Lacks, reason: &str) {
    eprintln!("skipped: {reason}");
    let Ok(path) = std::env::var("PODNET_TEST_SKIPS") else { return };
    // libtest names each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("unknown").to_string();
    let line = format!("{}\t{test}\t{}\n", lacks.as_str(), reason.replace(['\t', '\n'], " "));
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = f.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_recorded_with_its_test_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("skips.txt");
        // SAFETY: set before any thread of this test reads the environment; other tests of
        // this crate do not read this variable.
        unsafe { std::env::set_var("PODNET_TEST_SKIPS", &file) };
        skip(Lacks::Kernel, "no\tBTF here");
        unsafe { std::env::remove_var("PODNET_TEST_SKIPS") };
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, "kernel\ttesting::tests::a_skip_is_recorded_with_its_test_and_reason\tno BTF here\n");
    }
}
