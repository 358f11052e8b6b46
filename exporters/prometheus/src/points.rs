//! Number points seen before go straight to their series. Every collection sends the same
//! series again with new values (at 100 pods ~54,000 of them, most flow counters with ~13
//! attributes): translating each point into Prometheus labels and looking the label text up
//! again was most of the agent's CPU, and allocations it did not need. A point is known by a
//! 128-bit hash of its resource, its metric (name, unit, description, metadata, type) and its
//! attributes, with two independently seeded hashers, so the chance that two of a million
//! series share a key is about 10^-27; the store's slot generation catches series that went.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use podnet_pipeline::pdata::{AnyValue, KeyValue, Metric, any_value, metric};

use crate::store::SlotRef;

#[derive(Default)]
pub struct PointCache {
    seeds: (foldhash::fast::RandomState, foldhash::fast::RandomState),
    slots: HashMap<u128, SlotRef, foldhash::fast::RandomState>,
}

/// Two hashers fed the same bytes.
pub struct Key(foldhash::fast::FoldHasher<'static>, foldhash::fast::FoldHasher<'static>);

impl Key {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }

    fn write_u64(&mut self, v: u64) {
        self.0.write_u64(v);
        self.1.write_u64(v);
    }

    /// Length first, so `("ab","c")` and `("a","bc")` differ.
    fn write_str(&mut self, s: &str) {
        self.write_u64(s.len() as u64);
        self.write(s.as_bytes());
    }

    fn finish(&self) -> u128 {
        (u128::from(self.0.finish()) << 64) | u128::from(self.1.finish())
    }

    fn attributes(&mut self, attrs: &[KeyValue]) {
        self.write_u64(attrs.len() as u64);
        for kv in attrs {
            self.write_str(&kv.key);
            self.write_u64(kv.key_strindex as u64);
            self.any(kv.value.as_ref());
        }
    }

    fn any(&mut self, v: Option<&AnyValue>) {
        match v.and_then(|v| v.value.as_ref()) {
            None => self.write_u64(0),
            Some(any_value::Value::StringValue(s)) => {
                self.write_u64(1);
                self.write_str(s);
            }
            Some(any_value::Value::BoolValue(b)) => {
                self.write_u64(2);
                self.write_u64(u64::from(*b));
            }
            Some(any_value::Value::IntValue(i)) => {
                self.write_u64(3);
                self.write_u64(*i as u64);
            }
            Some(any_value::Value::DoubleValue(d)) => {
                self.write_u64(4);
                self.write_u64(d.to_bits());
            }
            Some(any_value::Value::BytesValue(b)) => {
                self.write_u64(5);
                self.write_u64(b.len() as u64);
                self.write(b);
            }
            Some(any_value::Value::ArrayValue(a)) => {
                self.write_u64(6);
                self.write_u64(a.values.len() as u64);
                for v in &a.values {
                    self.any(Some(v));
                }
            }
            Some(any_value::Value::KvlistValue(l)) => {
                self.write_u64(7);
                self.attributes(&l.values);
            }
            Some(any_value::Value::StringValueStrindex(i)) => {
                self.write_u64(8);
                self.write_u64(*i as u64);
            }
        }
    }
}

impl PointCache {
    fn key(&self) -> Key {
        Key(self.seeds.0.build_hasher(), self.seeds.1.build_hasher())
    }

    /// What every point of a resource shares in its key.
    pub fn resource_key(&self, attrs: &[KeyValue]) -> u128 {
        let mut k = self.key();
        k.attributes(attrs);
        k.finish()
    }

    /// What every point of a metric of a resource shares in its key: everything the
    /// translation of its points reads besides their attributes and values.
    pub fn metric_key(&self, resource: u128, m: &Metric) -> u128 {
        let mut k = self.key();
        k.write(&resource.to_le_bytes());
        k.write_str(&m.name);
        k.write_str(&m.unit);
        k.write_str(&m.description);
        k.attributes(&m.metadata);
        let kind = match &m.data {
            Some(metric::Data::Sum(s)) => 1 + u64::from(s.is_monotonic) * 2 + (u64::from(s.aggregation_temporality as u32) << 8),
            Some(metric::Data::Gauge(_)) => 2,
            _ => 0,
        };
        k.write_u64(kind);
        k.finish()
    }

    pub fn point_key(&self, metric: u128, attrs: &[KeyValue]) -> u128 {
        let mut k = self.key();
        k.write(&metric.to_le_bytes());
        k.attributes(attrs);
        k.finish()
    }

    pub fn get(&self, key: u128) -> Option<SlotRef> {
        self.slots.get(&key).copied()
    }

    pub fn insert(&mut self, key: u128, slot: SlotRef) {
        self.slots.insert(key, slot);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Before a new key: when the table is full, forgets the keys of series that went
    /// (`holds` says which slots are still theirs) rather than doubling the table for them,
    /// and when few went, grows it at once, so a table full of live keys is not walked again
    /// at the next key.
    pub fn make_room(&mut self, holds: impl FnMut(SlotRef) -> bool) {
        if self.slots.len() < self.slots.capacity() {
            return;
        }
        self.retain(holds);
        let capacity = self.slots.capacity();
        if self.slots.len() > capacity - capacity / 8 {
            self.slots.reserve(capacity);
        }
    }

    /// Forgets points whose series went (`holds` says which slots are still theirs).
    pub fn retain(&mut self, mut holds: impl FnMut(SlotRef) -> bool) {
        self.slots.retain(|_, slot| holds(*slot));
        if self.slots.capacity() > 4 * self.slots.len().max(1024) {
            self.slots.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_pipeline::pdata::kv_str;

    #[test]
    fn room_is_made_from_gone_series_and_the_table_grows_only_for_live_ones() {
        let slot = |i: u32| crate::store::SlotRef::for_test(i, 0);
        let mut cache = PointCache::default();
        // Churn: every new key's series replaces one that went; the table stays its size.
        let mut walks = 0;
        for i in 0..1_000u32 {
            cache.make_room(|s| {
                walks += 1;
                s.index() + 100 > i
            });
            cache.insert(u128::from(i), slot(i));
        }
        let churned = cache.slots.capacity();
        assert!(churned < 512, "100 live keys, capacity {churned}");
        assert!(walks < 20 * churned, "{walks} slot checks for 1,000 keys");
        // Every key live: the table grows, and is walked about once per doubling.
        let mut walks = 0;
        let mut live = PointCache::default();
        for i in 0..10_000u32 {
            live.make_room(|_| {
                walks += 1;
                true
            });
            live.insert(u128::from(i), slot(i));
        }
        assert_eq!(live.len(), 10_000);
        assert!(walks < 2 * 16_384, "{walks} slot checks growing to 10,000 live keys");
    }

    #[test]
    fn keys_tell_points_apart_by_every_part_that_changes_their_series() {
        let c = PointCache::default();
        let r1 = c.resource_key(&[kv_str("k8s.pod.name", "a")]);
        let r2 = c.resource_key(&[kv_str("k8s.pod.name", "b")]);
        assert_ne!(r1, r2);
        let metric = |name: &str, unit: &str| Metric { name: name.into(), unit: unit.into(), ..Default::default() };
        let m1 = c.metric_key(r1, &metric("flow.bytes", "By"));
        assert_eq!(m1, c.metric_key(r1, &metric("flow.bytes", "By")), "the same metric of the same resource");
        assert_ne!(m1, c.metric_key(r2, &metric("flow.bytes", "By")));
        assert_ne!(m1, c.metric_key(r1, &metric("flow.bytes", "pkt")));
        assert_ne!(m1, c.metric_key(r1, &metric("flow.packets", "By")));
        let p = |attrs: &[KeyValue]| c.point_key(m1, attrs);
        assert_eq!(p(&[kv_str("src", "10.0.0.1")]), p(&[kv_str("src", "10.0.0.1")]));
        assert_ne!(p(&[kv_str("src", "10.0.0.1")]), p(&[kv_str("src", "10.0.0.2")]));
        assert_ne!(p(&[kv_str("ab", "c")]), p(&[kv_str("a", "bc")]), "lengths are part of the key");
        assert_ne!(p(&[]), p(&[kv_str("", "")]));
        let int =
            KeyValue { key: "port".into(), value: Some(AnyValue { value: Some(any_value::Value::IntValue(80)) }), ..Default::default() };
        let text = kv_str("port", "80");
        assert_ne!(p(std::slice::from_ref(&int)), p(std::slice::from_ref(&text)), "an int and a string that read alike");
    }
}
