//! The exporter's state: the last value of every series, when it was last updated, and
//! the text exposition. Series not updated within `metric_expiration` disappear (a deleted
//! pod's namespace stops reporting, so its series go).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use podnet_pipeline::pdata::is_stale_marker;
use podnet_prometheus_translator::{FamilyType, Labels, Sample, format_value};

#[derive(Debug)]
struct Family {
    help: String,
    kind: FamilyType,
    /// (suffix, the label set as exposition text: `a="x",b="y"`) → (value, last update, the
    /// resource that wrote it). One string per series: flow series carry ~20 labels, and a
    /// pair of strings per label held ~2 KiB per series where the text takes ~250 bytes.
    series: BTreeMap<(&'static str, String), (f64, Instant, u64)>,
}

#[derive(Debug, Default)]
pub struct Store {
    families: BTreeMap<String, Family>,
    /// Series held now (kept in step by `update` and `expire`).
    count: usize,
    /// New series are refused past this many; 0: no limit.
    max_series: usize,
    /// Series written by a resource other than the one that wrote them last (two
    /// resources whose data lands on the same labels), per family, since the last take.
    collisions: BTreeMap<String, u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

impl Store {
    /// A store that holds at most `max_series` series (0: no limit).
    pub fn with_limit(max_series: usize) -> Store {
        Store { max_series, ..Store::default() }
    }

    /// Stores the samples: known series take their new value; a new series is refused when
    /// the store is full. Returns the refused new series per family.
    pub fn update(&mut self, samples: Vec<Sample>, now: Instant) -> BTreeMap<String, u64> {
        let mut refused: BTreeMap<String, u64> = BTreeMap::new();
        for s in samples {
            if is_stale_marker(s.value) {
                // The series ended at its source: it goes now, not at expiration.
                if let Some(family) = self.families.get_mut(&s.family)
                    && family.series.remove(&(s.suffix, label_text(&s.labels))).is_some()
                {
                    self.count -= 1;
                    if family.series.is_empty() {
                        self.families.remove(&s.family);
                    }
                }
                continue;
            }
            let full = self.max_series > 0 && self.count >= self.max_series;
            if !self.families.contains_key(&s.family) {
                if full {
                    *refused.entry(s.family).or_default() += 1;
                    continue;
                }
                self.families.insert(s.family.clone(), Family { help: s.help.clone(), kind: s.kind, series: BTreeMap::new() });
            }
            let Some(family) = self.families.get_mut(&s.family) else { continue };
            if family.kind != s.kind {
                // A metric changed type (e.g. a receiver upgrade): the new shape replaces the old.
                family.kind = s.kind;
                self.count -= family.series.len();
                family.series.clear();
            }
            if !s.help.is_empty() {
                family.help = s.help;
            }
            let key = (s.suffix, label_text(&s.labels));
            match family.series.get_mut(&key) {
                Some(v) => {
                    if v.2 != s.resource {
                        *self.collisions.entry(s.family).or_default() += 1;
                    }
                    *v = (s.value, now, s.resource);
                }
                None if full => *refused.entry(s.family).or_default() += 1,
                None => {
                    family.series.insert(key, (s.value, now, s.resource));
                    self.count += 1;
                }
            }
        }
        refused
    }

    /// Drops series older than `ttl`; returns how many went.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> usize {
        let mut removed = 0;
        for family in self.families.values_mut() {
            let before = family.series.len();
            family.series.retain(|_, (_, at, _)| now.saturating_duration_since(*at) <= ttl);
            removed += before - family.series.len();
        }
        self.families.retain(|_, f| !f.series.is_empty());
        self.count -= removed;
        removed
    }

    /// The collisions counted since the last call, per family.
    pub fn take_collisions(&mut self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.collisions)
    }

    pub fn series_count(&self) -> usize {
        self.count
    }

    pub fn render(&self, format: Format, out: &mut String) {
        for (name, family) in &self.families {
            let mut series: Vec<(&'static str, &str, f64)> =
                family.series.iter().map(|((suffix, labels), (v, _, _))| (*suffix, labels.as_str(), *v)).collect();
            if matches!(family.kind, FamilyType::Histogram | FamilyType::Summary) {
                // Buckets in ascending `le` (quantiles in ascending order), then _sum and
                // _count, per label set.
                series.sort_by(|a, b| histogram_order(a).partial_cmp(&histogram_order(b)).unwrap_or(std::cmp::Ordering::Equal));
            }
            render_family(name, family.kind, &family.help, series.into_iter(), format, out);
        }
    }
}

/// A label set as exposition text, escaped, in the sample's order.
fn label_text(labels: &Labels) -> String {
    let mut out = String::with_capacity(labels.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label_into(v, &mut out);
        out.push('"');
    }
    out
}

/// A histogram's (summary's) series order: by the labels other than `le` (`quantile`), then
/// buckets (quantiles) ascending, then `_sum`, then `_count`. The translator writes `le`
/// (`quantile`) last.
fn histogram_order<'a>((suffix, labels, _): &(&'static str, &'a str, f64)) -> (&'a str, u8, f64) {
    let last = |key: &str| labels.rfind(key).filter(|i| *i == 0 || labels.as_bytes()[i - 1] == b',').map(|i| (i, key.len()));
    let (base, le) = match last("le=\"").or_else(|| last("quantile=\"")) {
        Some((i, len)) => {
            let value = labels[i + len..].trim_end_matches('"');
            (labels[..i].trim_end_matches(','), Some(value))
        }
        None => (*labels, None),
    };
    let le = le.map(|v| if v == "+Inf" { f64::INFINITY } else { v.parse().unwrap_or(f64::INFINITY) });
    let rank = match *suffix {
        "_bucket" | "" => 0,
        "_sum" => 1,
        _ => 2,
    };
    (base, rank, le.unwrap_or(0.0))
}

/// Renders samples that are not stored (self-metrics computed at scrape time).
pub fn render_samples(samples: Vec<Sample>, format: Format, out: &mut String) {
    let mut store = Store::default();
    store.update(samples, Instant::now());
    store.render(format, out);
}

fn render_family<'a>(
    name: &str,
    kind: FamilyType,
    help: &str,
    series: impl Iterator<Item = (&'static str, &'a str, f64)>,
    format: Format,
    out: &mut String,
) {
    // OpenMetrics names counter samples `<family>_total`. A counter whose name does not end
    // in `_total` (KubeSkoop's names) would get a new name, so it is declared `unknown` there
    // to keep the name users query.
    let (family_name, type_word, sample_suffix) = match (format, kind) {
        (Format::OpenMetrics, FamilyType::Counter) => match name.strip_suffix("_total") {
            Some(base) => (base, "counter", "_total"),
            None => (name, "unknown", ""),
        },
        _ => (name, kind.as_str(), ""),
    };
    if !help.is_empty() {
        let _ = writeln!(out, "# HELP {family_name} {}", escape_help(help));
    }
    let _ = writeln!(out, "# TYPE {family_name} {type_word}");
    for (suffix, labels, value) in series {
        out.push_str(family_name);
        out.push_str(suffix);
        out.push_str(sample_suffix);
        if !labels.is_empty() {
            out.push('{');
            out.push_str(labels);
            out.push('}');
        }
        out.push(' ');
        out.push_str(&format_value(value));
        out.push('\n');
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(family: &str, kind: FamilyType, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            family: family.into(),
            help: "Help \\ with\nnewline".into(),
            kind,
            suffix: "",
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            value,
            time_unix_nano: 0,
            resource: 0,
        }
    }

    #[test]
    fn text_exposition() {
        let mut s = Store::default();
        s.update(
            vec![sample("kubeskoop_netdev_rxbytes", FamilyType::Counter, &[("k8s_node", "n1"), ("k8s_pod", "a\"b")], 7.0)],
            Instant::now(),
        );
        let mut out = String::new();
        s.render(Format::Text, &mut out);
        assert_eq!(
            out,
            "# HELP kubeskoop_netdev_rxbytes Help \\\\ with\\nnewline\n# TYPE kubeskoop_netdev_rxbytes counter\nkubeskoop_netdev_rxbytes{k8s_node=\"n1\",k8s_pod=\"a\\\"b\"} 7\n"
        );
    }

    #[test]
    fn openmetrics_counters() {
        let mut s = Store::default();
        s.update(
            vec![sample("a_total", FamilyType::Counter, &[], 1.0), sample("kubeskoop_x", FamilyType::Counter, &[], 2.0)],
            Instant::now(),
        );
        let mut out = String::new();
        s.render(Format::OpenMetrics, &mut out);
        assert!(out.contains("# TYPE a counter\na_total 1\n"), "{out}");
        assert!(out.contains("# TYPE kubeskoop_x unknown\nkubeskoop_x 2\n"), "{out}");
    }

    fn gauge(family: &str, pod: &str, value: f64) -> Sample {
        Sample {
            family: family.into(),
            help: String::new(),
            kind: FamilyType::Gauge,
            suffix: "",
            labels: vec![("pod".into(), pod.into())],
            value,
            time_unix_nano: 0,
            resource: 0,
        }
    }

    #[test]
    fn new_series_past_the_limit_are_refused_and_known_ones_still_update() {
        let mut s = Store::with_limit(3);
        let t0 = Instant::now();
        let refused = s
            .update(vec![gauge("a", "1", 1.0), gauge("a", "2", 1.0), gauge("b", "1", 1.0), gauge("b", "2", 1.0), gauge("c", "1", 1.0)], t0);
        assert_eq!(refused, BTreeMap::from([("b".to_string(), 1), ("c".to_string(), 1)]));
        assert_eq!(s.series_count(), 3);
        let refused = s.update(vec![gauge("a", "1", 7.0), gauge("a", "3", 1.0)], t0);
        assert_eq!(refused, BTreeMap::from([("a".to_string(), 1)]));
        let mut out = String::new();
        s.render(Format::Text, &mut out);
        assert!(out.contains("a{pod=\"1\"} 7") && !out.contains("pod=\"3\"") && !out.contains("\nc{"), "{out}");
        // Expiry makes room again.
        assert_eq!(s.expire(t0 + Duration::from_secs(10), Duration::from_secs(1)), 3);
        assert_eq!(s.series_count(), 0);
        assert!(s.update(vec![gauge("c", "1", 1.0)], t0 + Duration::from_secs(10)).is_empty());
        assert_eq!(s.series_count(), 1);
    }

    #[test]
    fn a_staleness_marker_ends_its_series_and_creates_none() {
        let mut s = Store::default();
        let t0 = Instant::now();
        let stale = f64::from_bits(podnet_pipeline::pdata::STALE_NAN_BITS);
        s.update(vec![gauge("flow", "a", 5.0), gauge("flow", "b", 6.0)], t0);
        s.update(vec![gauge("flow", "a", stale), gauge("flow", "never-seen", stale)], t0);
        assert_eq!(s.series_count(), 1);
        let mut out = String::new();
        s.render(Format::Text, &mut out);
        assert!(!out.contains("pod=\"a\"") && out.contains("flow{pod=\"b\"} 6") && !out.contains("never-seen"), "{out}");
        s.update(vec![gauge("flow", "b", stale)], t0);
        assert_eq!(s.series_count(), 0);
        out.clear();
        s.render(Format::Text, &mut out);
        assert!(!out.contains("flow"), "an emptied family goes too: {out}");
    }

    #[test]
    fn a_series_written_by_two_resources_is_counted_as_a_collision() {
        let mut s = Store::default();
        let t0 = Instant::now();
        let from = |resource, value| Sample { resource, ..gauge("m", "p", value) };
        s.update(vec![from(1, 1.0)], t0);
        s.update(vec![from(1, 2.0)], t0);
        assert!(s.take_collisions().is_empty(), "one resource updating its series");
        s.update(vec![from(2, 9.0)], t0);
        assert_eq!(s.take_collisions(), BTreeMap::from([("m".to_string(), 1)]));
        assert!(s.take_collisions().is_empty(), "taken");
    }

    #[test]
    fn histogram_buckets_in_ascending_order() {
        let mut s = Store::default();
        let mk = |suffix, le: Option<&str>, v| Sample {
            family: "h".into(),
            help: String::new(),
            kind: FamilyType::Histogram,
            suffix,
            labels: le.map(|l| vec![("le".to_string(), l.to_string())]).unwrap_or_default(),
            value: v,
            time_unix_nano: 0,
            resource: 0,
        };
        s.update(
            vec![
                mk("_count", None, 3.0),
                mk("_bucket", Some("+Inf"), 3.0),
                mk("_bucket", Some("10"), 2.0),
                mk("_bucket", Some("0.5"), 1.0),
                mk("_sum", None, 4.0),
            ],
            Instant::now(),
        );
        let mut out = String::new();
        s.render(Format::Text, &mut out);
        assert_eq!(out, "# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"10\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4\nh_count 3\n");
    }

    #[test]
    fn expiration_removes_stale_series_only() {
        let t0 = Instant::now();
        let mut s = Store::default();
        s.update(vec![sample("m", FamilyType::Gauge, &[("pod", "gone")], 1.0)], t0);
        s.update(vec![sample("m", FamilyType::Gauge, &[("pod", "live")], 1.0)], t0 + Duration::from_secs(50));
        assert_eq!(s.expire(t0 + Duration::from_secs(70), Duration::from_secs(60)), 1);
        let mut out = String::new();
        s.render(Format::Text, &mut out);
        assert!(out.contains("pod=\"live\"") && !out.contains("gone"), "{out}");
        assert_eq!(s.expire(t0 + Duration::from_secs(200), Duration::from_secs(60)), 1);
        assert_eq!(s.series_count(), 0);
    }
}
