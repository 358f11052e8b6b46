//! How a receiver gets its namespace list: from the `netns` extension when it runs with the
//! same /proc, otherwise by scanning itself at each collection.

use std::path::PathBuf;
use std::sync::Arc;

use podnet_pipeline::Host;
use serde::{Deserialize, Serialize};

use crate::{Namespace, NetnsDirectory};

/// Which namespaces a receiver reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespaces {
    /// Every network namespace on the node (pods and the host).
    #[default]
    All,
    /// Only the host's (node level).
    Host,
}

pub struct NamespaceSource {
    pub scope: Namespaces,
    pub root_path: PathBuf,
    pub names_path: PathBuf,
    pub extension_id: String,
    pub host: Option<Arc<Host>>,
    /// A list given by the caller, used instead of any lookup (benchmarks, tests).
    fixed: Option<Arc<Vec<Namespace>>>,
    warned: bool,
}

impl NamespaceSource {
    pub fn new(scope: Namespaces, root_path: PathBuf, names_path: PathBuf, extension_id: String, host: Option<Arc<Host>>) -> Self {
        NamespaceSource { scope, root_path, names_path, extension_id, host, fixed: None, warned: false }
    }

    /// Always answers `list`, as the `netns` extension would between its rescans.
    pub fn set_fixed(&mut self, list: Arc<Vec<Namespace>>) {
        self.fixed = Some(list);
    }

    /// The namespaces to read now, host first.
    pub fn list(&mut self) -> Result<Arc<Vec<Namespace>>, String> {
        if let Some(list) = &self.fixed {
            return Ok(list.clone());
        }
        if self.scope == Namespaces::Host {
            return crate::host_namespace(&self.root_path).map(|h| Arc::new(vec![h]));
        }
        if let Some(dir) = self.host.as_ref().and_then(|h| h.extension::<NetnsDirectory>(&self.extension_id))
            && dir.root_path == self.root_path
        {
            return Ok(dir.namespaces());
        }
        if self.host.is_some() && !self.warned {
            tracing::info!(
                extension = %self.extension_id,
                "no running netns extension with this root_path; the receiver scans /proc itself each collection"
            );
            self.warned = true;
        }
        crate::scan(&self.root_path, &self.names_path).map(Arc::new)
    }
}
