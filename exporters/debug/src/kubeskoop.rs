//! KubeSkoop's event line format, `{"timestamp","type","labels","msg"}` (its file and
//! stderr sinks), for tools and people used to it. Unlike KubeSkoop, ports are in host
//! byte order, and every event carries its pod: `pod`, `namespace`, `node` come first
//! (so `labels[0]` is the pod, as KubeSkoop's own LogQL expects), and drop and
//! retransmit events add their tuple after them.

use podnet_pipeline::pdata::{KeyValue, LogRecord, Logs, any_value, attr_string, keys, kubeskoop_pod};
use serde::Serialize;

#[derive(Serialize)]
struct Label {
    name: &'static str,
    value: String,
}

/// Field order is KubeSkoop's (Go's encoding/json keeps struct order).
#[derive(Serialize)]
struct Event<'a> {
    timestamp: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    labels: Vec<Label>,
    msg: String,
}

/// `GetSkcStateStr` from an OTel `network.connection.state`.
fn state(attrs: &[KeyValue]) -> &'static str {
    match attr_string(attrs, keys::NETWORK_CONNECTION_STATE).as_deref() {
        Some("established") => "TCP_ESTABLISHED",
        Some("syn_sent") => "TCP_SYN_SENT",
        Some("syn_received") => "TCP_SYN_RECV",
        Some("listen") => "TCP_LISTEN",
        _ => "TCP_OTHER",
    }
}

fn protocol(attrs: &[KeyValue]) -> &'static str {
    match attr_string(attrs, "network.transport").as_deref() {
        Some("tcp") => "TCP",
        Some("udp") => "UDP",
        Some("icmp") => "ICMP",
        Some("icmpv6") => "ICMP6",
        _ => "IP",
    }
}

fn tuple(attrs: &[KeyValue]) -> [(&'static str, String); 5] {
    let get = |k: &str| attr_string(attrs, k).unwrap_or_default();
    let port = |k: &str| attr_string(attrs, k).unwrap_or_else(|| "0".into());
    [
        ("protocol", protocol(attrs).to_string()),
        ("src", get("source.address")),
        ("sport", port("source.port")),
        ("dst", get("destination.address")),
        ("dport", port("destination.port")),
    ]
}

fn body(rec: &LogRecord) -> String {
    match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => rec.body.as_ref().map(podnet_pipeline::pdata::any_value_to_string).unwrap_or_default(),
        None => String::new(),
    }
}

/// One event line (without the newline) for a record under a resource.
pub fn event_line(resource: &[KeyValue], rec: &LogRecord) -> String {
    let attrs = &rec.attributes;
    let mut labels = vec![
        Label { name: "pod", value: kubeskoop_pod(resource) },
        Label { name: "namespace", value: attr_string(resource, keys::K8S_NAMESPACE_NAME).unwrap_or_default() },
        Label { name: "node", value: attr_string(resource, keys::K8S_NODE_NAME).unwrap_or_default() },
    ];
    let t = tuple(attrs);
    let msg = match rec.event_name.as_str() {
        "PacketLoss" | "TCPRetrans" => {
            labels.extend(t.iter().map(|(n, v)| Label { name: n, value: v.clone() }));
            attr_string(attrs, "code.stacktrace").unwrap_or_default()
        }
        kind if kind.starts_with("TCPRESET_") => {
            // KubeSkoop's `"%s state:%s "` over a tuple that ends in a space.
            format!("protocol={} saddr={} sport={} daddr={} dport={}  state:{} ", t[0].1, t[1].1, t[2].1, t[3].1, t[4].1, state(attrs))
        }
        _ => body(rec),
    };
    let time = if rec.time_unix_nano != 0 { rec.time_unix_nano } else { rec.observed_time_unix_nano };
    let kind = if rec.event_name.is_empty() { "Log" } else { rec.event_name.as_str() };
    serde_json::to_string(&Event { timestamp: time, kind, labels, msg }).unwrap_or_default()
}

/// Every record of a batch, one line each, with `prefix` before each (`event: ` on stderr).
pub fn lines(logs: &Logs, prefix: &str) -> String {
    let mut out = String::new();
    for rl in logs.resources() {
        let resource: &[KeyValue] = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        for rec in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            out.push_str(prefix);
            out.push_str(&event_line(resource, rec));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_pipeline::pdata::{AnyValue, kv_bool, kv_int, kv_str};

    fn record(name: &str, attrs: Vec<KeyValue>) -> LogRecord {
        LogRecord {
            time_unix_nano: 1_723_012_345_678_901_234,
            event_name: name.into(),
            attributes: attrs,
            body: Some(AnyValue { value: Some(any_value::Value::StringValue("summary".into())) }),
            ..Default::default()
        }
    }

    fn tuple_attrs() -> Vec<KeyValue> {
        vec![
            kv_str("network.transport", "tcp"),
            kv_str("source.address", "10.0.0.5"),
            kv_int("source.port", 47873),
            kv_str("destination.address", "10.0.0.7"),
            kv_int("destination.port", 80),
        ]
    }

    #[test]
    fn reset_event_is_kubeskoops_line_with_correct_ports() {
        let resource =
            vec![kv_str(keys::K8S_NODE_NAME, "node-1"), kv_str(keys::K8S_NAMESPACE_NAME, "default"), kv_str(keys::K8S_POD_NAME, "web-0")];
        let line = event_line(&resource, &record("TCPRESET_NOSOCK", tuple_attrs()));
        assert_eq!(
            line,
            r#"{"timestamp":1723012345678901234,"type":"TCPRESET_NOSOCK","labels":[{"name":"pod","value":"web-0"},{"name":"namespace","value":"default"},{"name":"node","value":"node-1"}],"msg":"protocol=TCP saddr=10.0.0.5 sport=47873 daddr=10.0.0.7 dport=80  state:TCP_OTHER "}"#
        );
    }

    #[test]
    fn drop_event_has_pod_then_tuple_and_the_stack_as_msg() {
        let resource = vec![kv_str(keys::K8S_NODE_NAME, "n"), kv_int(keys::NETNS_INODE, 1), kv_bool(keys::NETNS_HOST, true)];
        let mut attrs = tuple_attrs();
        attrs.push(kv_str("code.stacktrace", "kfree_skb+0x1\ntcp_v4_rcv+0x91"));
        let v: serde_json::Value = serde_json::from_str(&event_line(&resource, &record("PacketLoss", attrs))).unwrap();
        assert_eq!(v["labels"][0], serde_json::json!({"name": "pod", "value": ""}), "host namespace: node level");
        assert_eq!(v["labels"][3], serde_json::json!({"name": "protocol", "value": "TCP"}));
        assert_eq!(v["labels"][7], serde_json::json!({"name": "dport", "value": "80"}));
        assert_eq!(v["msg"], "kfree_skb+0x1\ntcp_v4_rcv+0x91");
    }

    #[test]
    fn other_records_use_their_body() {
        let line = event_line(&[], &record("", vec![]));
        assert!(line.contains(r#""type":"Log""#) && line.contains(r#""msg":"summary""#), "{line}");
    }
}
