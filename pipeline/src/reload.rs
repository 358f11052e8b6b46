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
    _watcher: RecommendedWatcher,
    events: mpsc::Receiver<()>,
}

impl ConfigWatcher {
    /// Watches the directory of `path` (and of its symlink target, if elsewhere).
    pub fn new(path: &Path) -> notify::Result<ConfigWatcher> {
        let (tx, events) = mpsc::channel(1);
        let config = path.to_path_buf();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res {
                if event.paths.iter().any(|p| is_relevant(&config, p)) {
                    let _ = tx.try_send(());
                }
            }
        })?;
        let mut dirs = vec![parent_dir(path)];
        if let Ok(target) = std::fs::canonicalize(path) {
            let d = parent_dir(&target);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        for d in &dirs {
            watcher.watch(d, RecursiveMode::NonRecursive)?;
        }
        Ok(ConfigWatcher { _watcher: watcher, events })
    }

    /// Waits for the next change, debounced.
    pub async fn changed(&mut self) -> Option<()> {
        self.events.recv().await?;
        loop {
            match tokio::time::timeout(DEBOUNCE, self.events.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return None,
                Err(_) => return Some(()),
            }
        }
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
