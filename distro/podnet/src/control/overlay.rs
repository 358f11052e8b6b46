//! The agent's own additions to the config text, applied on every (re)load: the `control`
//! exporter in every pipeline (what `podnet top` and `podnet events` read), and the probes
//! switched on for a while through the control socket.

use serde_norway::{Mapping, Value};

/// A probe of the `ebpf` receiver switched on until `until_unix_nano`.
#[derive(Clone, Debug, PartialEq)]
pub struct Boxed {
    pub probe: String,
    /// The probe's settings, as under `receivers::ebpf::probes::<probe>`.
    pub args: serde_json::Value,
    pub until_unix_nano: u64,
    pub asked_by: String,
}

fn map<'a>(v: &'a mut Value, key: &str) -> &'a mut Mapping {
    let m = v.as_mapping_mut().expect("a mapping");
    if !m.get(key).is_some_and(Value::is_mapping) {
        m.insert(key.into(), Value::Mapping(Mapping::new()));
    }
    m.get_mut(key).and_then(Value::as_mapping_mut).expect("just made a mapping")
}

fn push_unique(list: &mut Value, id: &str) {
    if !list.is_sequence() {
        *list = Value::Sequence(Vec::new());
    }
    if let Some(seq) = list.as_sequence_mut()
        && !seq.iter().any(|v| v.as_str() == Some(id))
    {
        seq.push(id.into());
    }
}

fn is_type(id: &Value, ty: &str) -> bool {
    id.as_str().is_some_and(|id| id == ty || id.starts_with(&format!("{ty}/")))
}

/// A podnet pipeline's text (KubeSkoop's config already converted) with the agent's
/// additions. Text that is not a mapping is left for the loader, which says what is wrong.
pub fn apply(text: &str, boxed: &[Boxed]) -> Result<String, String> {
    let Ok(mut doc) = serde_norway::from_str::<Value>(text) else { return Ok(text.to_string()) };
    if !doc.is_mapping() {
        return Ok(text.to_string());
    }
    map(&mut doc, "exporters").entry("control".into()).or_insert(Value::Mapping(Mapping::new()));
    let ebpf_id = map(&mut doc, "receivers").keys().find(|k| is_type(k, "ebpf")).and_then(|k| k.as_str()).map(str::to_string);
    if !boxed.is_empty() {
        let id = ebpf_id.clone().unwrap_or_else(|| "ebpf".to_string());
        let receivers = map(&mut doc, "receivers");
        let receiver = receivers.entry(id.as_str().into()).or_insert(Value::Mapping(Mapping::new()));
        if receiver.is_null() {
            *receiver = Value::Mapping(Mapping::new());
        }
        let probes = map(receiver, "probes");
        for b in boxed {
            let args: Value = serde_norway::to_value(&b.args).map_err(|e| e.to_string())?;
            probes.entry(b.probe.as_str().into()).or_insert(args);
        }
    }
    let doc_map = doc.as_mapping_mut().expect("checked");
    let mut service = match doc_map.remove("service") {
        Some(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    };
    let mut pipelines = match service.remove("pipelines") {
        Some(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    };
    let mut ebpf_in_logs = false;
    for (name, p) in pipelines.iter_mut() {
        if !p.is_mapping() {
            continue;
        }
        let signal = name.as_str().unwrap_or_default().split('/').next().unwrap_or_default().to_string();
        let pm = p.as_mapping_mut().expect("checked");
        let exporters = pm.entry("exporters".into()).or_insert(Value::Sequence(Vec::new()));
        push_unique(exporters, "control");
        if signal == "logs"
            && let Some(id) = &ebpf_id
        {
            ebpf_in_logs |= pm.get("receivers").and_then(Value::as_sequence).is_some_and(|r| r.iter().any(|v| v.as_str() == Some(id)));
        }
    }
    // A probe switched on where the config has no eBPF receiver: a receiver of its own, in
    // pipelines of its own, so its metrics and events reach the tools.
    if !boxed.is_empty() {
        let id = ebpf_id.clone().unwrap_or_else(|| "ebpf".to_string());
        if ebpf_id.is_none() {
            let mut m = Mapping::new();
            m.insert("receivers".into(), Value::Sequence(vec![id.as_str().into()]));
            m.insert("exporters".into(), Value::Sequence(vec!["control".into()]));
            pipelines.insert("metrics/podnet-control".into(), Value::Mapping(m));
        }
        if !ebpf_in_logs {
            let mut m = Mapping::new();
            m.insert("receivers".into(), Value::Sequence(vec![id.as_str().into()]));
            m.insert("exporters".into(), Value::Sequence(vec!["control".into()]));
            pipelines.insert("logs/podnet-control".into(), Value::Mapping(m));
        }
    }
    service.insert("pipelines".into(), Value::Mapping(pipelines));
    doc.as_mapping_mut().expect("checked").insert("service".into(), Value::Mapping(service));
    serde_norway::to_string(&doc).map_err(|e| e.to_string())
}
