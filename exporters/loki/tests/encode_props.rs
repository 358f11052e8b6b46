//! Loki push requests carry every stream's labels and every entry exactly: the protobuf
//! form's label string parses back (as Loki parses it: a selector of Go string literals) to
//! the labels it was made from, and the JSON form decodes to the same streams.

use std::collections::BTreeMap;

use podnet_exporter_loki::proto::PushRequest;
use podnet_exporter_loki::{Entry, Format, encode};
use proptest::prelude::*;
use prost::Message;

type Streams = BTreeMap<Vec<(String, String)>, Vec<Entry>>;

/// `{a="x", b="y\n"}` → pairs, with Go's escapes (`\\ \" \n \t \r \xNN \uNNNN \UNNNNNNNN`).
fn parse_selector(s: &str) -> Result<Vec<(String, String)>, String> {
    let body = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')).ok_or("no braces")?;
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') || chars.peek() == Some(&',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return Err(format!("no =\" after {name}"));
        }
        let mut value = String::new();
        loop {
            match chars.next().ok_or("unterminated value")? {
                '"' => break,
                '\\' => match chars.next().ok_or("dangling backslash")? {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    'r' => value.push('\r'),
                    e @ ('x' | 'u' | 'U') => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n).filter_map(|_| chars.next()).collect();
                        let code = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                        value.push(char::from_u32(code).ok_or("not a char")?);
                    }
                    other => return Err(format!("unknown escape \\{other}")),
                },
                c if (c as u32) < 0x20 || c == '\u{7f}' => return Err(format!("raw control character {:?} in a literal", c)),
                c => value.push(c),
            }
        }
        out.push((name, value));
    }
}

/// Any text, with the characters a label value must escape made common.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z\\\\\"\n\t\r\u{1}\u{7f}é✓]{0,12}"]
}

fn streams() -> impl Strategy<Value = Streams> {
    let labels = proptest::collection::btree_map("[a-z_][a-z0-9_]{0,8}", text(), 1..4).prop_map(|m| m.into_iter().collect::<Vec<_>>());
    let entry = (0u64..4_000_000_000_000_000_000, any::<String>(), proptest::collection::btree_map("[a-z_]{1,6}", any::<String>(), 0..3))
        .prop_map(|(time_unix_nano, line, metadata)| Entry { time_unix_nano, line, metadata: metadata.into_iter().collect() });
    proptest::collection::btree_map(labels, proptest::collection::vec(entry, 1..4), 0..4)
}

/// (labels, entries as (time, line, metadata)) per stream.
type Flat = Vec<(Vec<(String, String)>, Vec<(u64, String, Vec<(String, String)>)>)>;

fn flat(streams: &Streams) -> Flat {
    streams
        .iter()
        .map(|(labels, entries)| (labels.clone(), entries.iter().map(|e| (e.time_unix_nano, e.line.clone(), e.metadata.clone())).collect()))
        .collect()
}

proptest! {
    #[test]
    fn protobuf_requests_carry_labels_and_entries_exactly(input in streams()) {
        let (body, content_type) = encode(input.clone(), Format::Protobuf);
        prop_assert_eq!(content_type, "application/x-protobuf");
        let raw = snap::raw::Decoder::new().decompress_vec(&body).expect("valid snappy");
        let req = PushRequest::decode(raw.as_slice()).expect("valid PushRequest");
        let mut decoded = Vec::new();
        for s in req.streams {
            let labels = parse_selector(&s.labels).map_err(|e| TestCaseError::fail(format!("{}: {e}", s.labels)))?;
            let entries = s.entries.into_iter().map(|e| {
                let t = e.timestamp.expect("timestamp");
                (t.seconds as u64 * 1_000_000_000 + t.nanos as u64, e.line, e.structured_metadata.into_iter().map(|m| (m.name, m.value)).collect())
            }).collect();
            decoded.push((labels, entries));
        }
        prop_assert_eq!(decoded, flat(&input));
    }

    #[test]
    fn json_requests_carry_labels_and_entries_exactly(input in streams()) {
        let (body, content_type) = encode(input.clone(), Format::Json);
        prop_assert_eq!(content_type, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        let mut decoded = Vec::new();
        for s in v["streams"].as_array().expect("streams") {
            let labels = s["stream"].as_object().expect("stream").iter().map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string())).collect();
            let entries = s["values"].as_array().expect("values").iter().map(|e| {
                let md = e[2].as_object().expect("metadata").iter().map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string())).collect();
                (e[0].as_str().expect("time").parse().expect("nanoseconds"), e[1].as_str().expect("line").to_string(), md)
            }).collect();
            decoded.push((labels, entries));
        }
        prop_assert_eq!(decoded, flat(&input));
    }
}
