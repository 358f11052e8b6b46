//! The agent's side of the control socket: a Unix socket (mode 0600, root's peers only;
//! never on the network) serving status, per-pod counters, events, and time-boxed probes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use podnet_pipeline::host::Host;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::protocol::{Answer, Request};

/// What only the main loop can do (it owns the running pipeline).
pub struct EnableCommand {
    pub probe: String,
    pub args: serde_json::Value,
    pub seconds: u64,
    pub extend: bool,
    pub asked_by: String,
    pub reply: oneshot::Sender<Result<u64, String>>,
}

pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
}

impl ControlServer {
    /// Binds `path` (its directory made 0700 if missing, a stale socket replaced) with mode
    /// 0600.
    pub fn bind(path: &Path) -> std::io::Result<ControlServer> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        if path.exists() {
            // Only a socket is replaced: a wrong path must not delete someone's file.
            use std::os::unix::fs::FileTypeExt;
            if !std::fs::symlink_metadata(path)?.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlServer { path: path.to_path_buf(), listener })
    }

    pub async fn serve(self, host: Arc<Host>, enable: mpsc::Sender<EnableCommand>, shutdown: tokio_util::sync::CancellationToken) {
        tracing::info!(socket = %self.path.display(), "control socket listening (podnet top, podnet events)");
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let (host, enable) = (host.clone(), enable.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_client(stream, host, enable).await {
                    tracing::debug!("control client: {e}");
                }
            });
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn send(w: &mut (impl AsyncWriteExt + Unpin), a: &Answer) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(a).unwrap_or_default();
    line.push(b'\n');
    w.write_all(&line).await
}

async fn serve_client(stream: UnixStream, host: Arc<Host>, enable: mpsc::Sender<EnableCommand>) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    // SAFETY: geteuid has no preconditions.
    let own_uid = unsafe { libc::geteuid() };
    if cred.uid() != 0 && cred.uid() != own_uid {
        let who = cred.uid();
        tracing::warn!(uid = who, pid = ?cred.pid(), "control socket: refused a peer that is neither root nor the agent's user");
        return send(&mut write, &Answer::error(format!("refused: the control socket serves root only (you are uid {who})"))).await;
    }
    let asked_by = format!("uid {} pid {}", cred.uid(), cred.pid().map_or("?".to_string(), |p| p.to_string()));
    let mut lines = BufReader::new(read).lines();
    let Some(line) = lines.next_line().await? else { return Ok(()) };
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => return send(&mut write, &Answer::error(format!("bad request: {e}"))).await,
    };
    let tap = podnet_exporter_control::tap();
    match request {
        Request::Status => {
            let status = serde_json::to_value(host.status.report()).ok();
            send(&mut write, &Answer { status, ..Answer::ok() }).await
        }
        Request::Pods => {
            let now = podnet_pipeline::pdata::now_unix_nanos();
            send(&mut write, &Answer { pods: Some(tap.pods()), time_unix_nano: Some(now), ..Answer::ok() }).await
        }
        Request::Events { since_unix_nano, follow, filter } => {
            // Subscribe first, so nothing falls between the kept events and the live ones.
            let mut live = tap.subscribe();
            let kept = tap.events_since(since_unix_nano);
            for e in kept.iter().map(|k| k.event()).filter(|e| filter.matches(e)) {
                send(&mut write, &Answer { event: Some(e), ..Answer::ok() }).await?;
            }
            // What arrived between subscribing and reading the kept ones comes twice: once.
            let sent: std::collections::HashSet<usize> = kept.iter().map(|k| Arc::as_ptr(k) as usize).collect();
            send(&mut write, &Answer::ok()).await?;
            if !follow {
                return Ok(());
            }
            // The client going away ends the stream (its reads see EOF as an error here).
            let mut closed = lines;
            loop {
                tokio::select! {
                    got = live.recv() => match got {
                        Ok(kept) if !sent.contains(&(Arc::as_ptr(&kept) as usize)) => {
                            let e = kept.event();
                            if filter.matches(&e) && e.time_unix_nano >= since_unix_nano {
                                send(&mut write, &Answer { event: Some(e), ..Answer::ok() }).await?;
                            }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            send(&mut write, &Answer::error(format!("{n} events skipped: the client read too slowly"))).await?;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                    },
                    more = closed.next_line() => if !matches!(more, Ok(Some(_))) { return Ok(()) },
                }
            }
        }
        Request::Enable { probe, args, seconds, extend } => {
            let (reply, answer) = oneshot::channel();
            let cmd = EnableCommand { probe, args, seconds, extend, asked_by, reply };
            if enable.send(cmd).await.is_err() {
                return send(&mut write, &Answer::error("the agent is shutting down")).await;
            }
            match answer.await {
                Ok(Ok(until)) => send(&mut write, &Answer { until_unix_nano: Some(until), ..Answer::ok() }).await,
                Ok(Err(e)) => send(&mut write, &Answer::error(e)).await,
                Err(_) => send(&mut write, &Answer::error("the agent is shutting down")).await,
            }
        }
    }
}
