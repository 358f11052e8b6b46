//! KubeSkoop's event line format, `{"timestamp","type","labels","msg"}` (its file and
//! stderr sinks), for tools and people used to it. Unlike KubeSkoop, ports are in host
//! byte order, and every event carries its pod: `pod`, `namespace`, `node` come first
//! (so `labels[0]` is the pod, as KubeSkoop's own LogQL expects), and drop and
//! retransmit events add their tuple after them.

use std::fmt::Write as _;

use crate::pdata::{KeyValue, LogRecord, Logs, any_value, attr_int, attr_str, keys, kubeskoop_pod};

/// `GetSkcStateStr` from an OTel `network.connection.state`.
fn state(attrs: &[KeyValue]) -> &'static str {
    match attr_str(attrs, keys::NETWORK_CONNECTION_STATE) {
        Some("established") => "TCP_ESTABLISHED",
        Some("syn_sent") => "TCP_SYN_SENT",
        Some("syn_received") => "TCP_SYN_RECV",
        Some("listen") => "TCP_LISTEN",
        _ => "TCP_OTHER",
    }
}

fn protocol(attrs: &[KeyValue]) -> &'static str {
    match attr_str(attrs, "network.transport") {
        Some("tcp") => "TCP",
        Some("udp") => "UDP",
        Some("icmp") => "ICMP",
        Some("icmpv6") => "ICMP6",
        _ => "IP",
    }
}

/// A JSON string as Go's encoding/json writes it (`<`, `>`, `&` escaped too). Runs that
/// need no escaping are copied whole.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b'<' => "\\u003c",
            b'>' => "\\u003e",
            b'&' => "\\u0026",
            b if b < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escaped);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

fn push_label(out: &mut String, first: &mut bool, name: &str, value: &str) {
    if !std::mem::take(first) {
        out.push(',');
    }
    out.push_str("{\"name\":");
    push_json_str(out, name);
    out.push_str(",\"value\":");
    push_json_str(out, value);
    out.push('}');
}

/// The pod labels of a resource, computed once for all its records.
struct PodLabels {
    pod: String,
    namespace: String,
    node: String,
}

impl PodLabels {
    fn of(resource: &[KeyValue]) -> PodLabels {
        PodLabels {
            pod: kubeskoop_pod(resource),
            namespace: attr_str(resource, keys::K8S_NAMESPACE_NAME).unwrap_or_default().to_string(),
            node: attr_str(resource, keys::K8S_NODE_NAME).unwrap_or_default().to_string(),
        }
    }
}

fn port(attrs: &[KeyValue], key: &str) -> i64 {
    attr_int(attrs, key).unwrap_or(0)
}

/// Appends one event line (without the newline); field order is KubeSkoop's.
fn push_event(out: &mut String, pod: &PodLabels, rec: &LogRecord) {
    let attrs = &rec.attributes;
    let time = if rec.time_unix_nano != 0 { rec.time_unix_nano } else { rec.observed_time_unix_nano };
    let kind = if rec.event_name.is_empty() { "Log" } else { rec.event_name.as_str() };
    let _ = write!(out, "{{\"timestamp\":{time},\"type\":");
    push_json_str(out, kind);
    out.push_str(",\"labels\":[");
    let mut first = true;
    push_label(out, &mut first, "pod", &pod.pod);
    push_label(out, &mut first, "namespace", &pod.namespace);
    push_label(out, &mut first, "node", &pod.node);
    let (src, dst) = (attr_str(attrs, "source.address").unwrap_or_default(), attr_str(attrs, "destination.address").unwrap_or_default());
    let (sport, dport) = (port(attrs, "source.port"), port(attrs, "destination.port"));
    let msg = match kind {
        "PacketLoss" | "TCPRetrans" => {
            push_label(out, &mut first, "protocol", protocol(attrs));
            push_label(out, &mut first, "src", src);
            push_label(out, &mut first, "sport", &sport.to_string());
            push_label(out, &mut first, "dst", dst);
            push_label(out, &mut first, "dport", &dport.to_string());
            attr_str(attrs, "code.stacktrace").unwrap_or_default().to_string()
        }
        // KubeSkoop's `"%s state:%s "` over a tuple that ends in a space.
        k if k.starts_with("TCPRESET_") => {
            format!("protocol={} saddr={src} sport={sport} daddr={dst} dport={dport}  state:{} ", protocol(attrs), state(attrs))
        }
        // KubeSkoop labels softirq events with the softirq's name.
        k if k.starts_with("SOFTIRQ_") => {
            push_label(out, &mut first, "type", attr_str(attrs, "podnet.softirq.type").unwrap_or_default());
            body(rec)
        }
        _ => body(rec),
    };
    out.push_str("],\"msg\":");
    push_json_str(out, &msg);
    out.push('}');
}

fn body(rec: &LogRecord) -> String {
    match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => rec.body.as_ref().map(crate::pdata::any_value_to_string).unwrap_or_default(),
        None => String::new(),
    }
}

/// One event line (without the newline) for a record under a resource.
pub fn event_line(resource: &[KeyValue], rec: &LogRecord) -> String {
    let mut out = String::with_capacity(256);
    push_event(&mut out, &PodLabels::of(resource), rec);
    out
}

/// Every record of a batch, one line each, with `prefix` before each (`event: ` on stderr).
pub fn lines(logs: &Logs, prefix: &str) -> String {
    let mut out = String::with_capacity(logs.record_count() * 256);
    lines_into(&mut out, logs, prefix);
    out
}

/// As [`lines`], appending to `out` (a buffer reused from batch to batch).
pub fn lines_into(out: &mut String, logs: &Logs, prefix: &str) {
    for rl in logs.resources() {
        let resource: &[KeyValue] = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        let pod = PodLabels::of(resource);
        for rec in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            out.push_str(prefix);
            push_event(out, &pod, rec);
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::{AnyValue, kv_bool, kv_int, kv_str};

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
    fn strings_are_escaped_as_go_does() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"b\\c\nd<e>&\u{1}");
        assert_eq!(out, r#""a\"b\\c\nd\u003ce\u003e\u0026\u0001""#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, "a\"b\\c\nd<e>&\u{1}");
    }

    #[test]
    fn other_records_use_their_body() {
        let line = event_line(&[], &record("", vec![]));
        assert!(line.contains(r#""type":"Log""#) && line.contains(r#""msg":"summary""#), "{line}");
    }
}
