//! The exporter's state: the last value of every series, when it was last updated, and
//! the text exposition. Series not updated within `metric_expiration` disappear (a deleted
//! pod's namespace stops reporting, so its series go).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use podnet_pipeline::pdata::is_stale_marker;
use podnet_prometheus_translator::{FamilyType, Labels, NativeHistogram, Sample, format_value_into};
use prost::Message as _;

use crate::protobuf;

#[derive(Debug)]
struct Family {
    help: String,
    kind: FamilyType,
    /// (suffix, the label set as exposition text: `a="x",b="y"`) → the series' slot. One
    /// string per series: flow series carry ~20 labels, and a pair of strings per label held
    /// ~2 KiB per series where the text takes ~250 bytes. Ordered, so a scrape walks it in
    /// exposition order: sorting ~10,000 flow series by their long label texts (common
    /// prefixes) on every scrape was a tenth of the agent's CPU, while lookups by label text
    /// happen only for series the exporter's point cache does not know yet.
    series: Series,
}

type Series = BTreeMap<(&'static str, String), u32>;

/// One series' value. Slots live in one vector; a freed slot is reused and its
/// generation bumped, so a [`SlotRef`] held by a caller (the exporter's point cache) to a
/// series that has since gone is recognised as stale instead of writing to another series.
#[derive(Debug)]
struct Slot {
    value: f64,
    at: Instant,
    /// The resource that wrote it last.
    resource: u64,
    generation: u32,
    live: bool,
}

/// A series' place in the store, valid until the series goes (expiry, staleness marker,
/// type change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRef {
    index: u32,
    generation: u32,
}

#[cfg(test)]
impl SlotRef {
    pub fn for_test(index: u32, generation: u32) -> SlotRef {
        SlotRef { index, generation }
    }

    pub fn index(self) -> u32 {
        self.index
    }
}

#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Slots {
    fn take(&mut self, value: f64, at: Instant, resource: u64) -> u32 {
        match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                (slot.value, slot.at, slot.resource, slot.live) = (value, at, resource, true);
                i
            }
            None => {
                self.slots.push(Slot { value, at, resource, generation: 0, live: true });
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        slot.live = false;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(i);
    }

    fn get(&self, i: u32) -> &Slot {
        &self.slots[i as usize]
    }

    fn reference(&self, i: u32) -> SlotRef {
        SlotRef { index: i, generation: self.slots[i as usize].generation }
    }

    fn live(&mut self, r: SlotRef) -> Option<&mut Slot> {
        self.slots.get_mut(r.index as usize).filter(|s| s.live && s.generation == r.generation)
    }

    fn holds(&self, r: SlotRef) -> bool {
        self.slots.get(r.index as usize).is_some_and(|s| s.live && s.generation == r.generation)
    }
}

impl Family {
    /// (suffix, label text, value) in exposition order: by suffix and label text.
    fn sorted<'a>(&'a self, slots: &Slots) -> Vec<(&'static str, &'a str, f64)> {
        self.series.iter().map(|((suffix, labels), i)| (*suffix, labels.as_str(), slots.get(*i).value)).collect()
    }
}

/// Native histograms of one family: label text → (the point, last update).
#[derive(Debug)]
struct NativeFamily {
    help: String,
    classic_family: String,
    series: BTreeMap<String, (NativeHistogram, Instant)>,
}

#[derive(Debug, Default)]
pub struct Store {
    families: BTreeMap<String, Family>,
    slots: Slots,
    /// Exponential histograms kept as native histograms too (`exponential_histograms:
    /// native`), for scrapes in the protobuf format; text scrapes show their classic form.
    natives: BTreeMap<String, NativeFamily>,
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
            self.upsert(s, now, &mut refused);
        }
        refused
    }

    /// Stores one sample (as [`update`](Self::update)); returns its series' slot when the
    /// series is held after it (not refused, not ended by a staleness marker).
    pub fn upsert(&mut self, s: Sample, now: Instant, refused: &mut BTreeMap<String, u64>) -> Option<SlotRef> {
        if is_stale_marker(s.value) {
            // The series ended at its source: it goes now, not at expiration.
            if let Some(family) = self.families.get_mut(&s.family)
                && let Some(i) = family.series.remove(&(s.suffix, label_text(&s.labels)))
            {
                self.slots.release(i);
                self.count -= 1;
                if family.series.is_empty() {
                    self.families.remove(&s.family);
                }
            }
            return None;
        }
        let full = self.max_series > 0 && self.count >= self.max_series;
        if !self.families.contains_key(&s.family) {
            if full {
                *refused.entry(s.family).or_default() += 1;
                return None;
            }
            self.families.insert(s.family.clone(), Family { help: s.help.clone(), kind: s.kind, series: Series::default() });
        }
        let family = self.families.get_mut(&s.family)?;
        if family.kind != s.kind {
            // A metric changed type (e.g. a receiver upgrade): the new shape replaces the old.
            family.kind = s.kind;
            self.count -= family.series.len();
            for (_, i) in std::mem::take(&mut family.series) {
                self.slots.release(i);
            }
        }
        if !s.help.is_empty() {
            family.help = s.help;
        }
        let key = (s.suffix, label_text(&s.labels));
        match family.series.get(&key) {
            Some(&i) => {
                let slot = &mut self.slots.slots[i as usize];
                if slot.resource != s.resource {
                    *self.collisions.entry(s.family).or_default() += 1;
                }
                (slot.value, slot.at, slot.resource) = (s.value, now, s.resource);
                Some(self.slots.reference(i))
            }
            None if full => {
                *refused.entry(s.family).or_default() += 1;
                None
            }
            None => {
                let i = self.slots.take(s.value, now, s.resource);
                family.series.insert(key, i);
                self.count += 1;
                Some(self.slots.reference(i))
            }
        }
    }

    /// A new value for a series found earlier by [`upsert`](Self::upsert), without its
    /// labels. False when the series has gone since, or was last written by another
    /// resource: the caller then stores the point through `upsert`, which counts collisions.
    pub fn set(&mut self, slot: SlotRef, value: f64, now: Instant, resource: u64) -> bool {
        match self.slots.live(slot) {
            Some(s) if s.resource == resource => {
                (s.value, s.at) = (value, now);
                true
            }
            _ => false,
        }
    }

    /// Whether `slot` still holds the series it was handed out for.
    pub fn holds(&self, slot: SlotRef) -> bool {
        self.slots.holds(slot)
    }

    /// Stores native histograms as [`update`](Self::update) stores samples (same limit, same
    /// staleness rule); returns the refused new series per family.
    pub fn update_natives(&mut self, natives: Vec<NativeHistogram>, now: Instant) -> BTreeMap<String, u64> {
        let mut refused: BTreeMap<String, u64> = BTreeMap::new();
        for n in natives {
            let key = label_text(&n.labels);
            if n.stale {
                if let Some(family) = self.natives.get_mut(&n.family)
                    && family.series.remove(&key).is_some()
                {
                    self.count -= 1;
                    if family.series.is_empty() {
                        self.natives.remove(&n.family);
                    }
                }
                continue;
            }
            let full = self.max_series > 0 && self.count >= self.max_series;
            let family = self.natives.entry(n.family.clone()).or_insert_with(|| NativeFamily {
                help: n.help.clone(),
                classic_family: n.classic_family.clone(),
                series: BTreeMap::new(),
            });
            match family.series.get_mut(&key) {
                Some(v) => *v = (n, now),
                None if full => *refused.entry(n.family).or_default() += 1,
                None => {
                    family.series.insert(key, (n, now));
                    self.count += 1;
                }
            }
        }
        self.natives.retain(|_, f| !f.series.is_empty());
        refused
    }

    /// Drops series older than `ttl`; returns how many went.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> usize {
        let mut removed = 0;
        for family in self.natives.values_mut() {
            let before = family.series.len();
            family.series.retain(|_, (_, at)| now.saturating_duration_since(*at) <= ttl);
            removed += before - family.series.len();
        }
        self.natives.retain(|_, f| !f.series.is_empty());
        let slots = &mut self.slots;
        for family in self.families.values_mut() {
            family.series.retain(|_, i| {
                let keep = now.saturating_duration_since(slots.get(*i).at) <= ttl;
                if !keep {
                    slots.release(*i);
                    removed += 1;
                }
                keep
            });
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
        // The text is ~9 MB at 100 pods: grown by doubling it would hold up to twice that.
        // Values are estimated at 24 characters (a long one only grows the string).
        let estimate: usize = self
            .families
            .iter()
            .map(|(name, f)| {
                let per_series = name.len() + "_bucket_total{} ".len() + 24 + 1;
                2 * name.len() + f.help.len() * 2 + 32 + f.series.keys().map(|(_, labels)| labels.len() + per_series).sum::<usize>()
            })
            .sum();
        out.reserve_exact(estimate);
        for (name, family) in &self.families {
            let mut series = family.sorted(&self.slots);
            if matches!(family.kind, FamilyType::Histogram | FamilyType::Summary) {
                // Buckets in ascending `le` (quantiles in ascending order), then _sum and
                // _count, per label set.
                series.sort_by(|a, b| histogram_order(a).partial_cmp(&histogram_order(b)).unwrap_or(std::cmp::Ordering::Equal));
            }
            render_family(name, family.kind, &family.help, series.into_iter(), format, out);
        }
    }
}

impl Store {
    /// The protobuf exposition (length-delimited `MetricFamily` messages): every family,
    /// exponential histograms as native histograms in place of their classic buckets.
    pub fn render_protobuf(&self, out: &mut Vec<u8>) {
        let replaced: std::collections::BTreeSet<&str> =
            self.natives.values().map(|f| f.classic_family.as_str()).filter(|classic| !self.natives.contains_key(*classic)).collect();
        let mut families: BTreeMap<&str, protobuf::MetricFamily> = BTreeMap::new();
        for (name, family) in self.families.iter().filter(|(name, _)| !replaced.contains(name.as_str())) {
            families.insert(name, protobuf::family(name, family.kind, &family.help, family.sorted(&self.slots).into_iter()));
        }
        for (name, native) in &self.natives {
            let mf = families.entry(name).or_insert_with(|| protobuf::MetricFamily {
                name: name.clone(),
                help: native.help.clone(),
                r#type: protobuf::HISTOGRAM,
                metric: Vec::new(),
            });
            for (labels, (n, _)) in &native.series {
                protobuf::add_native(mf, labels, n);
            }
        }
        for mf in families.values() {
            let _ = mf.encode_length_delimited(out);
        }
    }
}

/// Renders samples that are not stored (self-metrics) in the protobuf exposition.
pub fn render_samples_protobuf(samples: Vec<Sample>, out: &mut Vec<u8>) {
    let mut store = Store::default();
    store.update(samples, Instant::now());
    store.render_protobuf(out);
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
    let (base, le) = match split_last_label(labels, "le") {
        (_, None) => split_last_label(labels, "quantile"),
        found => found,
    };
    let le = le.map(|v| if v == "+Inf" { f64::INFINITY } else { v.parse().unwrap_or(f64::INFINITY) });
    let rank = match *suffix {
        "_bucket" | "" => 0,
        "_sum" => 1,
        _ => 2,
    };
    (base, rank, le.unwrap_or(0.0))
}

/// Label text without its last label when that label is `key` (the translator writes `le`
/// and `quantile` last), and that label's value.
pub(crate) fn split_last_label<'a>(text: &'a str, key: &str) -> (&'a str, Option<&'a str>) {
    let marker = format!("{key}=\"");
    match text.rfind(&marker) {
        Some(i) if i == 0 || text.as_bytes()[i - 1] == b',' => {
            (text[..i].trim_end_matches(','), Some(text[i + marker.len()..].trim_end_matches('"')))
        }
        _ => (text, None),
    }
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
        format_value_into(value, out);
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

    #[test]
    fn protobuf_exposition_has_native_histograms_in_place_of_their_classic_buckets() {
        use crate::protobuf::{self, MetricFamily};
        let mut store = Store::default();
        let now = Instant::now();
        let hist = |suffix: &'static str, le: Option<&str>, value: f64| {
            let mut labels = vec![("pod".to_string(), "a".to_string())];
            labels.extend(le.map(|le| ("le".to_string(), le.to_string())));
            Sample { suffix, labels, ..sample("lat_seconds", FamilyType::Histogram, &[], value) }
        };
        let samples = vec![
            sample("reqs_total", FamilyType::Counter, &[("pod", "a\"b")], 7.0),
            sample("temp", FamilyType::Gauge, &[], 21.5),
            hist("_bucket", Some("0.001"), 1.0),
            hist("_bucket", Some("+Inf"), 3.0),
            hist("_sum", None, 0.5),
            hist("_count", None, 3.0),
            Sample { labels: vec![("quantile".into(), "0.5".into())], ..sample("rpc_seconds", FamilyType::Summary, &[], 0.2) },
            Sample { suffix: "_sum", ..sample("rpc_seconds", FamilyType::Summary, &[], 2.0) },
            Sample { suffix: "_count", ..sample("rpc_seconds", FamilyType::Summary, &[], 4.0) },
        ];
        store.update(samples, now);
        let native = NativeHistogram {
            family: "lat_nanoseconds".into(),
            help: "latency".into(),
            classic_family: "lat_seconds".into(),
            labels: vec![("pod".into(), "a".into())],
            time_unix_nano: 1,
            schema: 3,
            zero_threshold: 0.0,
            zero_count: 1,
            count: 3,
            sum: 500_000.0,
            positive: vec![(10, 1), (11, 1)],
            negative: vec![],
            stale: false,
            resource: 0,
        };
        store.update_natives(vec![native.clone()], now);
        assert_eq!(store.series_count(), 10, "4 classic histogram series, a counter, a gauge, 3 summary series and the native one");
        let mut out = Vec::new();
        store.render_protobuf(&mut out);
        let mut buf = out.as_slice();
        let mut families = Vec::new();
        while !buf.is_empty() {
            families.push(MetricFamily::decode_length_delimited(&mut buf).unwrap());
        }
        let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["lat_nanoseconds", "reqs_total", "rpc_seconds", "temp"], "lat_seconds is replaced by its native form");
        let h = families[0].metric[0].histogram.as_ref().unwrap();
        assert_eq!((families[0].r#type, h.schema, h.sample_count, h.sample_sum, h.zero_count), (protobuf::HISTOGRAM, 3, 3, 500_000.0, 1));
        assert_eq!(
            (h.positive_span.len(), h.positive_span[0].offset, h.positive_span[0].length, h.positive_delta.clone()),
            (1, 10, 2, vec![1, 0])
        );
        assert_eq!(families[1].metric[0].label[0].value, "a\"b");
        assert_eq!(families[1].metric[0].counter.as_ref().unwrap().value, 7.0);
        let s = families[2].metric[0].summary.as_ref().unwrap();
        assert_eq!(
            (families[2].r#type, s.sample_count, s.sample_sum, s.quantile[0].quantile, s.quantile[0].value),
            (protobuf::SUMMARY, 4, 2.0, 0.5, 0.2)
        );
        // Text keeps the classic buckets only.
        let mut text = String::new();
        store.render(Format::Text, &mut text);
        assert!(text.contains("lat_seconds_bucket{pod=\"a\",le=\"+Inf\"} 3") && !text.contains("nanoseconds"), "{text}");
        // A stale native histogram goes at once.
        store.update_natives(vec![NativeHistogram { stale: true, ..native }], now);
        assert_eq!(store.series_count(), 9);
    }

    #[test]
    fn classic_histograms_without_natives_keep_their_buckets_in_protobuf() {
        use crate::protobuf::MetricFamily;
        let labels = |le: &str| vec![("le".to_string(), le.to_string())];
        let mut store = Store::default();
        store.update(
            vec![
                Sample { suffix: "_bucket", labels: labels("0.5"), ..sample("h", FamilyType::Histogram, &[], 2.0) },
                Sample { suffix: "_bucket", labels: labels("0.1"), ..sample("h", FamilyType::Histogram, &[], 1.0) },
                Sample { suffix: "_bucket", labels: labels("+Inf"), ..sample("h", FamilyType::Histogram, &[], 4.0) },
                Sample { suffix: "_count", ..sample("h", FamilyType::Histogram, &[], 4.0) },
                Sample { suffix: "_sum", ..sample("h", FamilyType::Histogram, &[], 9.0) },
            ],
            Instant::now(),
        );
        let mut out = Vec::new();
        store.render_protobuf(&mut out);
        let f = MetricFamily::decode_length_delimited(out.as_slice()).unwrap();
        let h = f.metric[0].histogram.as_ref().unwrap();
        let buckets: Vec<(f64, u64)> = h.bucket.iter().map(|b| (b.upper_bound, b.cumulative_count)).collect();
        assert_eq!(buckets, vec![(0.1, 1), (0.5, 2)], "ascending, +Inf implied by the count");
        assert_eq!((h.sample_count, h.sample_sum, h.schema, h.positive_span.len()), (4, 9.0, 0, 0));
    }

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
