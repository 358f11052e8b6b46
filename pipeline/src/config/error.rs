//! Config errors: each names its path (`receivers::procfs::collection_interval`); all of
//! a config's errors are reported together.

use std::fmt;

/// One problem in a config, at a path like `receivers::procfs/pods::collection_interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
    pub fn top(message: impl Into<String>) -> Self {
        ConfigError { path: String::new(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// All problems found in one config, reported together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file (or embedded config) the errors are in.
    pub origin: String,
    pub errors: Vec<ConfigError>,
    /// Context that helps fix the errors (environment overrides in effect).
    pub notes: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration {}:", self.origin)?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        for n in &self.notes {
            write!(f, "\nnote: {n}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// The messages alone, one per line (what tests assert).
    pub fn lines(&self) -> Vec<String> {
        self.errors.iter().map(ToString::to_string).collect()
    }
}
