//! Noticing config changes: a watch on the config file's directory, because a Kubernetes
//! ConfigMap update swaps the `..data` symlink (the file's inode goes away, so a watch on
//! the file itself would see only the first update).

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last file event before a reload, so an editor's
/// write-rename-chmod sequence or a ConfigMap swap becomes one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

pub struct ConfigWatcher {
    watcher: RecommendedWatcher,
    events: mpsc::Receiver<()>,
    config: PathBuf,
    watched: Vec<PathBuf>,
}

impl ConfigWatcher {
    /// Watches the directory of `path` and of its current symlink target.
    pub fn new(path: &Path) -> notify::Result<ConfigWatcher> {
        let (tx, events) = mpsc::channel(1);
        let config = path.to_path_buf();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res {
                // Reads (ours included) are not changes.
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                if event.paths.iter().any(|p| is_relevant(&config, p)) {
                    let _ = tx.try_send(());
                }
            }
        })?;
        let mut w = ConfigWatcher { watcher, events, config: path.to_path_buf(), watched: Vec::new() };
        w.refresh()?;
        Ok(w)
    }

    /// Follows the symlink to where it points now: a ConfigMap swap or a re-pointed link
    /// moves the file to another directory, which must be watched from then on.
    fn refresh(&mut self) -> notify::Result<()> {
        let mut wanted = vec![parent_dir(&self.config)];
        if let Ok(target) = std::fs::canonicalize(&self.config) {
            let d = parent_dir(&target);
            if !wanted.contains(&d) {
                wanted.push(d);
            }
        }
        for d in self.watched.iter().filter(|d| !wanted.contains(d)) {
            let _ = self.watcher.unwatch(d);
        }
        self.watched.retain(|d| wanted.contains(d));
        for d in wanted {
            if !self.watched.contains(&d) {
                self.watcher.watch(&d, RecursiveMode::NonRecursive)?;
                self.watched.push(d);
            }
        }
        Ok(())
    }

    /// Waits for the next change, debounced.
    pub async fn changed(&mut self) -> Option<()> {
        self.events.recv().await?;
        loop {
            match tokio::time::timeout(DEBOUNCE, self.events.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return None,
                Err(_) => break,
            }
        }
        if let Err(e) = self.refresh() {
            tracing::warn!(config = %self.config.display(), "cannot watch the config's new location: {e}; SIGHUP still reloads");
        }
        Some(())
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The config file, its current symlink target, or a ConfigMap `..data`-style entry.
fn is_relevant(config: &Path, changed: &Path) -> bool {
    let Some(name) = changed.file_name() else { return false };
    if name.to_string_lossy().starts_with("..") || Some(name) == config.file_name() {
        return true;
    }
    std::fs::canonicalize(config).ok().is_some_and(|t| t.file_name() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relevance() {
        let cfg = Path::new("/etc/podnet/config.yaml");
        assert!(is_relevant(cfg, Path::new("/etc/podnet/config.yaml")));
        assert!(is_relevant(cfg, Path::new("/etc/podnet/..data")));
        assert!(is_relevant(cfg, Path::new("/etc/podnet/..2026_11_23_10_00_00.123")));
        assert!(!is_relevant(cfg, Path::new("/etc/podnet/events.jsonl")));
    }
}
