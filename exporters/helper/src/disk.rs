//! The on-disk queue: one file per batch in a directory, named by a sequence number so the
//! oldest goes first. A batch is written to a temporary name and renamed (a crash never
//! leaves half a batch under a real name), and deleted once delivered or dropped for good.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use podnet_pipeline::component::ComponentContext;
use podnet_pipeline::pdata::Signal;
use tokio::sync::Notify;

use crate::{Outcome, Persist, Request, RetryConfig, Transport, send_with_retry};

pub struct DiskQueue {
    dir: PathBuf,
    capacity: usize,
    /// Bytes of batch files before new batches are refused; 0: no limit.
    max_bytes: usize,
    next: AtomicU64,
    notify: Notify,
}

fn batch_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir)?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "batch")).collect();
    files.sort();
    Ok(files)
}

impl DiskQueue {
    pub fn open(dir: &Path, capacity: usize, max_bytes: usize) -> std::io::Result<DiskQueue> {
        std::fs::create_dir_all(dir)?;
        let last = batch_files(dir)?.last().and_then(|p| p.file_stem()?.to_str()?.parse::<u64>().ok()).unwrap_or(0);
        Ok(DiskQueue { dir: dir.to_path_buf(), capacity, max_bytes, next: AtomicU64::new(last + 1), notify: Notify::new() })
    }

    pub fn len(&self) -> usize {
        batch_files(&self.dir).map(|f| f.len()).unwrap_or(0)
    }

    /// `Ok(false)` when full.
    pub fn push<R: Persist>(&self, request: &Request<R>) -> std::io::Result<bool> {
        let files = batch_files(&self.dir)?;
        if files.len() >= self.capacity {
            return Ok(false);
        }
        if self.max_bytes > 0 && !files.is_empty() {
            let held: u64 = files.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
            if held + request.body.byte_len() as u64 > self.max_bytes as u64 {
                return Ok(false);
            }
        }
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        let mut bytes = Vec::new();
        bytes.push(match request.signal {
            Signal::Metrics => 0,
            Signal::Logs => 1,
        });
        bytes.extend((request.items as u64).to_le_bytes());
        bytes.extend(request.body.to_bytes());
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, self.dir.join(format!("{seq:020}.batch")))?;
        self.notify.notify_one();
        Ok(true)
    }

    /// The oldest batch; unreadable ones are removed with a log line.
    fn oldest<R: Persist>(&self) -> Option<(PathBuf, Request<R>)> {
        for path in batch_files(&self.dir).ok()? {
            let decoded = std::fs::read(&path).ok().and_then(|b| {
                let signal = match b.first()? {
                    0 => Signal::Metrics,
                    1 => Signal::Logs,
                    _ => return None,
                };
                let items = u64::from_le_bytes(b.get(1..9)?.try_into().ok()?) as usize;
                Some(Request { body: Arc::new(R::from_bytes(&b[9..])?), signal, items })
            });
            match decoded {
                Some(r) => return Some((path, r)),
                None => {
                    tracing::error!(file = %path.display(), "unreadable batch in the on-disk queue; removing it");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        None
    }
}

pub async fn consume<R: Persist + Send + Sync + 'static>(
    dq: Arc<DiskQueue>,
    retry: RetryConfig,
    ctx: ComponentContext,
    sender: Arc<dyn Transport<R>>,
    depth: Arc<std::sync::atomic::AtomicUsize>,
) {
    loop {
        if ctx.shutdown.is_cancelled() {
            return;
        }
        let Some((path, request)) = dq.oldest::<R>() else {
            tokio::select! {
                _ = dq.notify.notified() => continue,
                _ = ctx.shutdown.cancelled() => return,
            }
        };
        match send_with_retry(&request, &retry, &ctx, sender.as_ref()).await {
            // Kept for the next start.
            Outcome::Interrupted => return,
            Outcome::Delivered | Outcome::Dropped => {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::error!(file = %path.display(), "cannot remove a sent batch from the on-disk queue: {e}");
                    return;
                }
                let _ = depth.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| Some(d.saturating_sub(1)));
            }
        }
    }
}
