//! What is known about the pods on this node, by network namespace inode, and how a
//! resource is tagged with it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use podnet_pipeline::pdata::{KeyValue, any_value, attr_str, keys, kv_str};

/// One pod, from whichever source knew it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// (`k8s.deployment.name`-style key, workload name), from owner references.
    pub workload: Option<(&'static str, String)>,
}

/// Pods by namespace inode; pods that left stay for a grace period so late data (events
/// in flight, the last collection) still carries their name.
#[derive(Clone, Debug, Default)]
pub struct PodIndex {
    pub by_netns: HashMap<u64, Pod>,
    pub departed: HashMap<u64, (Pod, Instant)>,
    /// Host-network pods by UID: their data is found by the UID of their processes'
    /// cgroup (io, fd), as they have no namespace of their own.
    pub host_network: HashMap<String, Pod>,
}

impl PodIndex {
    pub fn get(&self, inode: u64) -> Option<&Pod> {
        self.by_netns.get(&inode).or_else(|| self.departed.get(&inode).map(|(p, _)| p))
    }

    /// Replaces the live set; what left moves to `departed` until `grace` has passed.
    pub fn replace(&mut self, live: HashMap<u64, Pod>, grace: Duration, now: Instant) {
        let old = std::mem::replace(&mut self.by_netns, live);
        for (inode, pod) in old {
            if !self.by_netns.contains_key(&inode) {
                self.departed.insert(inode, (pod, now + grace));
            }
        }
        self.departed.retain(|inode, (_, until)| *until > now && !self.by_netns.contains_key(inode));
    }
}

/// A label or annotation to copy onto the resource.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldExtract {
    pub key: String,
    /// The attribute name; default `k8s.pod.labels.<key>` / `k8s.pod.annotations.<key>`.
    #[serde(default)]
    pub tag_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Extract {
    pub labels: Vec<FieldExtract>,
    pub annotations: Vec<FieldExtract>,
}

/// KubeSkoop's `additionalLabels` entry `name=prefix_${labels:app}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Additional {
    pub name: String,
    template: String,
}

impl Additional {
    pub fn parse(entry: &str) -> Result<Additional, String> {
        let (name, template) =
            entry.split_once('=').ok_or_else(|| format!("\"{entry}\": expected name=value, e.g. app=${{labels:app}}"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("\"{entry}\": the label name must be letters, digits and _"));
        }
        Ok(Additional { name: name.to_string(), template: template.to_string() })
    }

    /// The template with every `${labels:<key>}` replaced (empty when the pod lacks it).
    pub fn render(&self, pod: Option<&Pod>) -> String {
        let mut out = String::new();
        let mut rest = self.template.as_str();
        while let Some(start) = rest.find("${labels:") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 9..];
            match after.find('}') {
                Some(end) => {
                    let key = &after[..end];
                    out.push_str(pod.and_then(|p| p.labels.get(key)).map(String::as_str).unwrap_or(""));
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// How resources are tagged.
#[derive(Clone, Debug, Default)]
pub struct Tagger {
    pub node: String,
    pub extract: Extract,
    pub additional: Vec<Additional>,
}

fn set(attrs: &mut Vec<KeyValue>, key: &str, value: &str) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => *kv = kv_str(key, value),
        None => attrs.push(kv_str(key, value)),
    }
}

fn attr_i64(attrs: &[KeyValue], key: &str) -> Option<i64> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    })
}

fn is_host(attrs: &[KeyValue]) -> bool {
    attrs.iter().any(|kv| {
        kv.key == keys::NETNS_HOST && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(any_value::Value::BoolValue(true)))
    })
}

impl Tagger {
    fn extract_name(f: &FieldExtract, kind: &str) -> String {
        f.tag_name.clone().unwrap_or_else(|| format!("k8s.pod.{kind}.{}", f.key))
    }

    /// The attributes `kubeskoop` naming shows as labels: extracted fields, then
    /// additional labels.
    fn extra_labels(&self) -> String {
        let mut names: Vec<String> = self.extract.labels.iter().map(|f| Self::extract_name(f, "labels")).collect();
        names.extend(self.extract.annotations.iter().map(|f| Self::extract_name(f, "annotations")));
        names.extend(self.additional.iter().map(|a| a.name.clone()));
        names.join(",")
    }

    /// Adds the pod's attributes to a resource; returns whether a pod was found. Node-level
    /// resources (the host namespace, no namespace at all) get only the node and the
    /// additional labels' empty values.
    pub fn tag(&self, attrs: &mut Vec<KeyValue>, index: &PodIndex) -> bool {
        if !self.node.is_empty() && !attrs.iter().any(|kv| kv.key == keys::K8S_NODE_NAME) {
            attrs.push(kv_str(keys::K8S_NODE_NAME, self.node.clone()));
        }
        let pod = match attr_i64(attrs, keys::NETNS_INODE) {
            Some(inode) if !is_host(attrs) => index.get(inode as u64),
            _ => attr_str(attrs, keys::K8S_POD_UID).and_then(|uid| index.host_network.get(uid)),
        };
        for a in &self.additional {
            set(attrs, &a.name, &a.render(pod));
        }
        // Every resource gets the same extra labels (empty where unknown), as KubeSkoop's
        // series do.
        let extra = self.extra_labels();
        if !extra.is_empty() {
            set(attrs, keys::KUBESKOOP_LABELS, &extra);
        }
        let Some(pod) = pod else { return false };
        set(attrs, keys::K8S_POD_NAME, &pod.name);
        set(attrs, keys::K8S_NAMESPACE_NAME, &pod.namespace);
        if !pod.uid.is_empty() {
            set(attrs, "k8s.pod.uid", &pod.uid);
        }
        if !pod.ip.is_empty() {
            set(attrs, "k8s.pod.ip", &pod.ip);
        }
        if let Some((key, name)) = &pod.workload {
            set(attrs, key, name);
        }
        for f in &self.extract.labels {
            if let Some(v) = pod.labels.get(&f.key) {
                set(attrs, &Self::extract_name(f, "labels"), v);
            }
        }
        for f in &self.extract.annotations {
            if let Some(v) = pod.annotations.get(&f.key) {
                set(attrs, &Self::extract_name(f, "annotations"), v);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_pipeline::pdata::{attr_string, kv_bool, kv_int};

    fn pod(name: &str) -> Pod {
        Pod {
            name: name.into(),
            namespace: "default".into(),
            uid: "u-1".into(),
            ip: "10.88.0.3".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn tags_a_pod_namespace_and_leaves_the_host_node_level() {
        let mut index = PodIndex::default();
        index.replace([(7, pod("web-0"))].into(), Duration::from_secs(30), Instant::now());
        let t = Tagger {
            node: "n1".into(),
            extract: Extract { labels: vec![FieldExtract { key: "app".into(), tag_name: Some("app".into()) }], annotations: vec![] },
            additional: vec![Additional::parse("team=t-${labels:app}").unwrap()],
        };
        let mut attrs = vec![kv_int(keys::NETNS_INODE, 7)];
        assert!(t.tag(&mut attrs, &index));
        for (k, v) in [
            (keys::K8S_POD_NAME, "web-0"),
            (keys::K8S_NAMESPACE_NAME, "default"),
            ("k8s.pod.ip", "10.88.0.3"),
            ("app", "web"),
            ("team", "t-web"),
            (keys::K8S_NODE_NAME, "n1"),
        ] {
            assert_eq!(attr_string(&attrs, k).as_deref(), Some(v), "{k}");
        }
        let mut host = vec![kv_int(keys::NETNS_INODE, 7), kv_bool(keys::NETNS_HOST, true)];
        assert!(!t.tag(&mut host, &index), "the host namespace stays node level");
        index.host_network.insert("u-9".into(), pod("agent-x"));
        let mut host_pod = vec![kv_int(keys::NETNS_INODE, 1), kv_bool(keys::NETNS_HOST, true), kv_str(keys::K8S_POD_UID, "u-9")];
        assert!(t.tag(&mut host_pod, &index), "a host-network pod's processes, by UID");
        assert_eq!(attr_string(&host_pod, keys::K8S_POD_NAME).as_deref(), Some("agent-x"));
        assert_eq!(attr_string(&host, "team").as_deref(), Some("t-"));
        assert_eq!(attr_string(&host, keys::KUBESKOOP_LABELS).as_deref(), Some("app,team"), "same labels on every series");
        let mut unknown = vec![kv_int(keys::NETNS_INODE, 9)];
        assert!(!t.tag(&mut unknown, &index));
        assert_eq!(attr_string(&unknown, keys::K8S_POD_NAME), None);
    }

    #[test]
    fn departed_pods_keep_their_name_for_the_grace_period() {
        let mut index = PodIndex::default();
        let t0 = Instant::now();
        index.replace([(7, pod("web-0"))].into(), Duration::from_secs(10), t0);
        index.replace(HashMap::new(), Duration::from_secs(10), t0 + Duration::from_secs(1));
        assert_eq!(index.get(7).map(|p| p.name.as_str()), Some("web-0"));
        index.replace(HashMap::new(), Duration::from_secs(10), t0 + Duration::from_secs(12));
        assert_eq!(index.get(7), None);
    }

    #[test]
    fn additional_labels_render_like_kubeskoop() {
        let a = Additional::parse("n1=prefix_${labels:l1}_${labels:l2}_suffix").unwrap();
        let mut p = pod("x");
        p.labels = [("l1".to_string(), "v1".to_string()), ("l2".to_string(), "v2".to_string())].into();
        assert_eq!(a.render(Some(&p)), "prefix_v1_v2_suffix");
        assert_eq!(a.render(None), "prefix___suffix");
        assert!(Additional::parse("novalue").is_err());
        assert!(Additional::parse("bad-name=x").is_err());
    }
}
