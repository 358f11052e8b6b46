//! Pods from the container runtime: ListPodSandbox, then a verbose PodSandboxStatus for
//! each sandbox not seen before (its pid, hence its network namespace inode). Statuses
//! are asked for concurrently, each with its own timeout, so one slow sandbox does not
//! hold up the others; a sandbox whose status failed is asked again next poll.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::cri::{CriClient, CriError, PodSandboxStatusResponse, SANDBOX_READY, sandbox_pid};
use crate::pods::Pod;

/// What one sandbox became: a pod in a namespace of its own, or a host-network pod (node
/// level: its data is the host's).
#[derive(Clone, Debug)]
enum Sandbox {
    Pod(u64, Pod),
    HostNetwork(Pod),
}

pub struct CriSource {
    client: CriClient,
    root_path: PathBuf,
    host_inode: Option<u64>,
    known: HashMap<String, Sandbox>,
}

fn pod_of(resp: &PodSandboxStatusResponse) -> Pod {
    let status = resp.status.clone().unwrap_or_default();
    let meta = status.metadata.unwrap_or_default();
    Pod {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        ip: status.network.map(|n| n.ip).unwrap_or_default(),
        labels: status.labels.into_iter().collect(),
        annotations: status.annotations.into_iter().collect(),
        workload: None,
    }
}

impl CriSource {
    pub fn new(client: CriClient, root_path: PathBuf) -> CriSource {
        let host_inode = podnet_netns::host_namespace(&root_path).ok().map(|ns| ns.inode);
        CriSource { client, root_path, host_inode, known: HashMap::new() }
    }

    /// The live pods by namespace inode. Errors only when the sandbox list itself fails.
    pub async fn poll(&mut self) -> Result<(HashMap<u64, Pod>, Vec<String>), CriError> {
        let list = self.client.list_pod_sandboxes().await?;
        let ready: Vec<String> = list.iter().filter(|s| s.state == SANDBOX_READY).map(|s| s.id.clone()).collect();
        let ready_set: HashSet<&String> = ready.iter().collect();
        self.known.retain(|id, _| ready_set.contains(id));
        let mut tasks = tokio::task::JoinSet::new();
        for id in ready.iter().filter(|id| !self.known.contains_key(*id)) {
            let mut client = self.client.clone();
            let id = id.clone();
            tasks.spawn(async move {
                let r = client.pod_sandbox_status(&id).await;
                (id, r)
            });
        }
        let mut errors = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((id, result)) = joined else { continue };
            let resp = match result {
                Ok(r) => r,
                Err(e) => {
                    errors.push(format!("sandbox {id}: {e}"));
                    continue;
                }
            };
            let Some(pid) = sandbox_pid(&resp) else {
                errors.push(format!("sandbox {id}: the runtime's verbose status has no pid"));
                continue;
            };
            match podnet_netns::netns_inode(&self.root_path.join(pid.to_string())) {
                Ok(inode) if Some(inode) == self.host_inode => {
                    self.known.insert(id, Sandbox::HostNetwork(pod_of(&resp)));
                }
                Ok(inode) => {
                    self.known.insert(id, Sandbox::Pod(inode, pod_of(&resp)));
                }
                // The sandbox stopped between the list and the status: next poll knows.
                Err(e) => errors.push(format!("sandbox {id}: {e}")),
            }
        }
        let live = self
            .known
            .values()
            .filter_map(|s| match s {
                Sandbox::Pod(inode, pod) => Some((*inode, pod.clone())),
                Sandbox::HostNetwork(_) => None,
            })
            .collect();
        Ok((live, errors))
    }

    /// The host-network pods of the last poll, by UID.
    pub fn host_network(&self) -> HashMap<String, Pod> {
        self.known
            .values()
            .filter_map(|s| match s {
                Sandbox::HostNetwork(p) => Some((p.uid.clone(), p.clone())),
                Sandbox::Pod(..) => None,
            })
            .collect()
    }
}
