//! Probes a receiver declares in a table (one entry each, as node_exporter registers its
//! collectors), configured by the names in that table.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::component::ProbeInfo;

/// A receiver's table of probes.
pub trait ProbeTable: 'static {
    type Spec: 'static;
    fn specs() -> &'static [Self::Spec];
    fn info(spec: &Self::Spec) -> &ProbeInfo;
}

/// A probe by name: always an entry of `T`'s table.
pub struct Probe<T: ProbeTable>(usize, PhantomData<fn() -> T>);

impl<T: ProbeTable> Probe<T> {
    pub fn named(name: &str) -> Option<Probe<T>> {
        T::specs().iter().position(|s| T::info(s).name == name).map(|i| Probe(i, PhantomData))
    }
    /// Every probe, in the table's order.
    pub fn all() -> Vec<Probe<T>> {
        (0..T::specs().len()).map(|i| Probe(i, PhantomData)).collect()
    }
    pub fn spec(self) -> &'static T::Spec {
        &T::specs()[self.0]
    }
    pub fn name(self) -> &'static str {
        T::info(self.spec()).name
    }
    /// The table's names, for messages.
    pub fn names() -> Vec<&'static str> {
        T::specs().iter().map(|s| T::info(s).name).collect()
    }
}

impl<T: ProbeTable> Clone for Probe<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ProbeTable> Copy for Probe<T> {}
impl<T: ProbeTable> PartialEq for Probe<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<T: ProbeTable> Eq for Probe<T> {}
impl<T: ProbeTable> std::hash::Hash for Probe<T> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h)
    }
}
impl<T: ProbeTable> fmt::Debug for Probe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<T: ProbeTable> Serialize for Probe<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de, T: ProbeTable> Deserialize<'de> for Probe<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Probe::named(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown value \"{name}\" (valid values: {})", Self::names().join(", "))))
    }
}

/// Declares `$table` as the [`ProbeTable`] over `$probes` (a `&'static [$spec]` whose
/// entries have an `info: ProbeInfo` field) and `$infos`, the same entries' infos as the
/// array `podnet components` lists.
#[macro_export]
macro_rules! probe_table {
    ($(#[$doc:meta])* $table:ident, $spec:ty, $probes:expr, $infos:ident) => {
        $(#[$doc])*
        pub struct $table;

        impl $crate::probe::ProbeTable for $table {
            type Spec = $spec;
            fn specs() -> &'static [$spec] {
                $probes
            }
            fn info(spec: &$spec) -> &$crate::component::ProbeInfo {
                &spec.info
            }
        }

        /// Every probe's info, in the table's order.
        pub const $infos: [$crate::component::ProbeInfo; $probes.len()] = {
            let mut out = [$probes[0].info; $probes.len()];
            let mut i = 0;
            while i < $probes.len() {
                out[i] = $probes[i].info;
                i += 1;
            }
            out
        };
    };
}
