//! A file that rotates by size: `path` is written until the next write would pass
//! `max_bytes`, then `path.1` … `path.<max_backups>` shift up one (the oldest goes) and
//! `path` starts empty. A node agent writing events to the host must not fill its disk.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    /// 0: never rotate.
    max_bytes: u64,
    max_backups: u32,
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn backup(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, max_backups: u32) -> std::io::Result<RotatingFile> {
        let file = open(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile { path: path.to_path_buf(), file, size, max_bytes, max_backups })
    }

    /// Appends `bytes` whole to the current file (a batch is never split across files).
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.max_bytes > 0 && self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        if self.max_backups == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.max_backups).rev() {
                let from = backup(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, backup(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, backup(&self.path, 1))?;
        }
        self.file = open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    pub fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut f = RotatingFile::open(&path, 10, 2).unwrap();
        for line in ["aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n", "ffff\n", "gggg\n"] {
            f.write_all(line.as_bytes()).unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(path.clone()), "gggg\n");
        assert_eq!(read(backup(&path, 1)), "eeee\nffff\n");
        assert_eq!(read(backup(&path, 2)), "cccc\ndddd\n");
        assert!(!backup(&path, 3).exists(), "aaaa and bbbb went with the oldest backup");
    }

    #[test]
    fn a_batch_larger_than_the_limit_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e");
        let mut f = RotatingFile::open(&path, 4, 1).unwrap();
        f.write_all(b"0123456789").unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(std::fs::read_to_string(backup(&path, 1)).unwrap(), "0123456789");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
    }

    #[test]
    fn no_limit_never_rotates_and_an_existing_file_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e");
        std::fs::write(&path, "12345").unwrap();
        let mut f = RotatingFile::open(&path, 8, 1).unwrap();
        f.write_all(b"6789").unwrap();
        assert_eq!(std::fs::read_to_string(backup(&path, 1)).unwrap(), "12345", "5 bytes were there: 9 would pass 8");
        let mut g = RotatingFile::open(&dir.path().join("n"), 0, 1).unwrap();
        for _ in 0..100 {
            g.write_all(b"0123456789").unwrap();
        }
        assert!(!backup(&dir.path().join("n"), 1).exists());
    }
}
