//! Start times for cumulative counters read from the kernel.
//!
//! Kernel counters are cumulative since an unknown origin (boot, namespace or device
//! creation). OTLP wants a start time per series, and a new start time when the counter
//! resets (a device was removed, so a per-namespace sum went down). Receivers keep one
//! tracker per probe and ask it for the start time of every point they emit.

use std::collections::HashMap;
use std::hash::Hash;

use crate::pdata::{KeyValue, Log2Histogram, MetricDef, MetricKind, ResourceMetricsBuilder, Value};

#[derive(Clone, Copy, Debug)]
struct Series {
    start: u64,
    last_value: u64,
    last_time: u64,
    seen_in_round: u64,
}

#[derive(Debug)]
pub struct CumulativeTracker<K> {
    /// foldhash: SipHash was ~4% of the agent's CPU here at 100 pods (a lookup per counter
    /// point, ~50,000 per collection); the keys come from the kernel, not from a peer.
    series: HashMap<K, Series, foldhash::fast::RandomState>,
    round: u64,
    resets: u64,
}

impl<K: Hash + Eq> Default for CumulativeTracker<K> {
    fn default() -> Self {
        CumulativeTracker { series: HashMap::default(), round: 0, resets: 0 }
    }
}

impl<K: Hash + Eq> CumulativeTracker<K> {
    /// Begins a collection round; series not observed before the next `end_round` are forgotten.
    pub fn begin_round(&mut self) {
        self.round += 1;
    }

    /// Records `value` for `key` at `now` and returns the series' start time.
    /// `origin` is the best known start for a series seen for the first time (boot time for
    /// the host, the owning process's start time for a pod namespace).
    pub fn observe(&mut self, key: K, value: u64, now: u64, origin: u64) -> u64 {
        let round = self.round;
        let s =
            self.series.entry(key).or_insert(Series { start: origin.min(now), last_value: value, last_time: now, seen_in_round: round });
        if value < s.last_value {
            // Reset between the previous observation and this one.
            s.start = s.last_time;
            self.resets += 1;
        }
        s.last_value = value;
        s.last_time = now;
        s.seen_in_round = round;
        s.start
    }

    /// Forgets series that vanished (a deleted namespace), so their memory is released and
    /// a namespace reusing the key starts afresh.
    pub fn end_round(&mut self) {
        let round = self.round;
        self.series.retain(|_, s| s.seen_in_round == round);
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
    /// Number of counter resets detected so far.
    pub fn resets(&self) -> u64 {
        self.resets
    }
}

/// A counter series: one 64-bit hash of its resource (namespace inode, 0 for node level),
/// metric name and attributes. A hash rather than the parts: a tracker holds one entry per
/// counter series (~50,000 at 100 pods), 40 bytes each this way against 64 with the parts
/// as the key, and two series meeting in 64 bits among a node's ~10^5 is a ~10^-10 chance.
pub type SeriesKey = u64;

/// Identifies a series without allocating (this runs for every counter point of every
/// namespace at every collection).
fn series_key(resource: u64, metric: &str, attrs: &[KeyValue]) -> SeriesKey {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x706f_646e_6574).build_hasher();
    h.write_u64(resource);
    h.write(metric.as_bytes());
    h.write_u8(0xfd);
    for kv in attrs {
        h.write(kv.key.as_bytes());
        h.write_u8(0xff);
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(crate::pdata::any_value::Value::StringValue(s)) => h.write(s.as_bytes()),
            Some(crate::pdata::any_value::Value::IntValue(i)) => h.write_i64(*i),
            Some(crate::pdata::any_value::Value::BoolValue(b)) => h.write_u8(u8::from(*b)),
            Some(other) => h.write(format!("{other:?}").as_bytes()),
            None => {}
        }
        h.write_u8(0xfe);
    }
    h.finish()
}

/// Writes the points of one resource, giving each counter its start time.
pub struct PointWriter<'a, 'b> {
    pub rb: &'a mut ResourceMetricsBuilder<'b>,
    pub counters: &'a mut CumulativeTracker<SeriesKey>,
    /// Keeps series of different resources apart (the namespace inode; 0 for the node).
    pub resource_key: u64,
    /// Start time of a series seen for the first time.
    pub origin: u64,
    pub now: u64,
}

impl PointWriter<'_, '_> {
    pub fn point(&mut self, def: &MetricDef, attrs: Vec<KeyValue>, value: u64) {
        let start = match def.kind {
            MetricKind::Gauge | MetricKind::Histogram => 0,
            // Up-down values fall as a matter of course: that is no reset.
            MetricKind::UpDownCounter => self.origin.min(self.now),
            MetricKind::Counter => self.counters.observe(series_key(self.resource_key, def.name, &attrs), value, self.now, self.origin),
        };
        self.rb.point(def, attrs, start, self.now, value.into());
    }

    /// A cumulative histogram: its count is the monotonic value that tells a reset.
    pub fn histogram(&mut self, def: &MetricDef, attrs: Vec<KeyValue>, h: &Log2Histogram) {
        let start = self.counters.observe(series_key(self.resource_key, def.name, &attrs), h.count(), self.now, self.origin);
        self.rb.histogram(def, attrs, start, self.now, h);
    }

    /// The series ended (its flow left the kernel's table): exporters end it now rather
    /// than at their expiration.
    pub fn ended(&mut self, def: &MetricDef, attrs: Vec<KeyValue>) {
        self.rb.ended(def, attrs, self.now);
    }

    /// A kernel value that may be negative (a setting like MaxConn = -1): gauges keep the
    /// sign; counters are never negative.
    pub fn signed(&mut self, def: &MetricDef, attrs: Vec<KeyValue>, value: i64) {
        match def.kind {
            MetricKind::Gauge => self.rb.point(def, attrs, 0, self.now, Value::Int(value)),
            _ => self.point(def, attrs, value.max(0) as u64),
        }
    }

    /// A gauge with a fractional value (a ratio).
    pub fn ratio(&mut self, def: &MetricDef, attrs: Vec<KeyValue>, value: f64) {
        self.rb.point(def, attrs, 0, self.now, Value::Double(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keys_tell_apart_resources_metrics_and_attributes() {
        use crate::pdata::{kv_int, kv_str};
        let a = vec![kv_str("direction", "receive"), kv_int("port", 80)];
        let key = |resource, metric, attrs: &[KeyValue]| series_key(resource, metric, attrs);
        assert_eq!(key(7, "drops", &a), key(7, "drops", &a.clone()));
        assert_ne!(key(7, "drops", &a), key(8, "drops", &a), "another namespace");
        assert_ne!(key(7, "drops", &a), key(7, "resets", &a), "another metric");
        assert_ne!(key(7, "drops", &a), key(7, "drops", &a[..1]), "fewer attributes");
        assert_ne!(key(7, "drops", &a), key(7, "drops", &[kv_str("direction", "receive"), kv_str("port", "80")]), "int vs string");
        // The name and the attributes do not run into each other.
        assert_ne!(key(7, "ab", &[kv_str("c", "d")]), key(7, "a", &[kv_str("bc", "d")]));
    }

    #[test]
    fn start_time_is_origin_then_moves_on_reset() {
        let mut t = CumulativeTracker::default();
        t.begin_round();
        assert_eq!(t.observe("a", 100, 1_000, 10), 10);
        t.end_round();
        t.begin_round();
        assert_eq!(t.observe("a", 150, 2_000, 10), 10);
        t.end_round();
        t.begin_round();
        assert_eq!(t.observe("a", 5, 3_000, 10), 2_000, "reset starts at the previous observation");
        assert_eq!(t.resets(), 1);
        t.end_round();
    }

    #[test]
    fn vanished_series_are_forgotten() {
        let mut t = CumulativeTracker::default();
        t.begin_round();
        t.observe("a", 1, 1, 0);
        t.observe("b", 1, 1, 0);
        t.end_round();
        t.begin_round();
        t.observe("a", 2, 2, 0);
        t.end_round();
        assert_eq!(t.len(), 1);
        t.begin_round();
        assert_eq!(t.observe("b", 1, 3, 3), 3, "a reappearing key starts afresh");
    }

    #[test]
    fn a_histogram_keeps_its_start_until_its_count_falls() {
        use crate::pdata::{Log2Histogram, MetricsBuilder, metric};
        const H: MetricDef = MetricDef::histogram("lat", "", "ns");
        let mut counters = CumulativeTracker::default();
        let mut starts = Vec::new();
        for (now, count) in [(100u64, 3u64), (200, 5), (300, 2)] {
            let mut b = MetricsBuilder::new("t");
            let mut rb = b.resource(Vec::new());
            counters.begin_round();
            let mut w = PointWriter { rb: &mut rb, counters: &mut counters, resource_key: 1, origin: 10, now };
            w.histogram(&H, Vec::new(), &Log2Histogram { zero: 0, buckets: vec![0, count], sum: 2.0 * count as f64 });
            counters.end_round();
            let m = b.finish();
            let Some(metric::Data::ExponentialHistogram(e)) = &m.resources()[0].scope_metrics[0].metrics[0].data else { panic!() };
            assert_eq!(e.data_points[0].count, count);
            starts.push(e.data_points[0].start_time_unix_nano);
        }
        assert_eq!(starts, vec![10, 10, 200], "the count fell at 300: a reset since the observation at 200");
    }

    #[test]
    fn origin_after_now_is_clamped() {
        let mut t = CumulativeTracker::default();
        t.begin_round();
        assert_eq!(t.observe("a", 1, 5, 9), 5);
    }
}
