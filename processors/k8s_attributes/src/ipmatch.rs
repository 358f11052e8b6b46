//! Without a container runtime to ask, a namespace is matched to the API's pod by
//! address: the pod IP the API reports is one of the namespace's own local addresses
//! (`/proc/<pid>/net/fib_trie`, read from the host: no setns).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::kube::ApiPod;
use crate::pods::Pod;

/// The local IPv4 addresses (`/32 host LOCAL`) in a fib_trie, loopback excluded.
pub fn local_addresses(fib_trie: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut last: Option<&str> = None;
    for line in fib_trie.lines() {
        let t = line.trim();
        if let Some(ip) = t.strip_prefix("|-- ") {
            last = Some(ip.trim());
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.starts_with("127.")
        {
            out.insert(ip.to_string());
        }
    }
    out
}

/// Pods by namespace inode, for the namespaces under `root` whose address is a pod's IP.
/// Host-network pods share the host's addresses and are never matched.
pub fn match_by_ip(root: &Path, names: &Path, api: &HashMap<String, ApiPod>) -> HashMap<u64, Pod> {
    let by_ip: HashMap<&str, &ApiPod> =
        api.values().filter(|p| !p.host_network && !p.pod.ip.is_empty()).map(|p| (p.pod.ip.as_str(), p)).collect();
    let mut out = HashMap::new();
    let Ok(namespaces) = podnet_netns::scan(root, names) else { return out };
    for ns in namespaces.iter().filter(|ns| !ns.is_host) {
        let Ok(text) = std::fs::read_to_string(ns.proc_dir.join("net/fib_trie")) else { continue };
        if let Some(p) = local_addresses(&text).iter().find_map(|ip| by_ip.get(ip.as_str())) {
            out.insert(ns.inode, p.pod.clone());
        }
    }
    out
}

/// Adds what only the API knows (the workload, annotations, the IP) to pods the runtime
/// found, matched by uid.
pub fn enrich(live: &mut HashMap<u64, Pod>, api: &HashMap<String, ApiPod>) {
    for pod in live.values_mut() {
        let Some(a) = api.get(&pod.uid) else { continue };
        if pod.workload.is_none() {
            pod.workload = a.pod.workload.clone();
        }
        if pod.ip.is_empty() {
            pod.ip = a.pod.ip.clone();
        }
        for (k, v) in &a.pod.labels {
            pod.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &a.pod.annotations {
            pod.annotations.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_of_a_pod_namespace() {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fib_trie.txt")).unwrap();
        assert_eq!(local_addresses(&text).into_iter().collect::<Vec<_>>(), vec!["10.244.1.7".to_string()]);
        assert!(local_addresses("garbage\n/32 host LOCAL\n").is_empty());
    }

    #[test]
    fn enrich_adds_the_workload_by_uid() {
        let mut live: HashMap<u64, Pod> = [(7, Pod { name: "web-1".into(), uid: "u1".into(), ..Default::default() })].into();
        let api: HashMap<String, ApiPod> = [(
            "u1".to_string(),
            ApiPod {
                pod: Pod {
                    uid: "u1".into(),
                    ip: "10.0.0.1".into(),
                    workload: Some(("k8s.deployment.name", "web".into())),
                    ..Default::default()
                },
                ..Default::default()
            },
        )]
        .into();
        enrich(&mut live, &api);
        assert_eq!(live[&7].workload, Some(("k8s.deployment.name", "web".to_string())));
        assert_eq!(live[&7].ip, "10.0.0.1");
    }
}
