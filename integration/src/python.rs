//! The OpenTelemetry Python SDK (an OTLP implementation independent of podnet's) in the
//! virtualenv scripts/test.sh makes at `target/py`, and the sender script that drives it.

use std::path::PathBuf;
use std::process::{Command, Output};

use podnet_pipeline::testing::{Lacks, skip};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The virtualenv's python with the SDK importable, or a recorded skip.
pub fn otel_python() -> Option<PathBuf> {
    let python = workspace().join("target/py/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(
            Lacks::Tool,
            "the OpenTelemetry Python SDK in target/py (python3 -m venv target/py && target/py/bin/pip install -r integration/python/requirements.txt)",
        );
        return None;
    }
    Some(python)
}

/// Runs `integration/python/send_otlp.py` with `args`.
pub fn send_otlp(python: &PathBuf, args: &[&str]) -> Output {
    Command::new(python)
        .arg(workspace().join("integration/python/send_otlp.py"))
        .args(args)
        // requests lets these override the CA the SDK is given (`certificate_file`).
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("run send_otlp.py")
}
