//! Publishing a map's stats to observers without costing its owner.
//!
//! The owner writes with single-writer relaxed stores under a sequence
//! counter (a seqlock): no locks and no read-modify-writes, and it happens
//! only every `publish_every` writes and at growth start and finish. A
//! reader retries while a write is in flight, so a snapshot is always one
//! moment's stats and never mixes two (no entries beyond what the buckets
//! hold, no evacuated count above the old array's size).

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::map::{map_stats, Growth, GrowthKind, MapStats, PerKind};

/// How many times a reader retries while the writer keeps publishing
/// before it settles for the last complete copy it read.
const READ_ATTEMPTS: usize = 1000;

/// How a stat is laid out in the publication: a fixed number of `u64`
/// slots, the same for every value of its type.
trait Slots: Sized {
    const SLOTS: usize;
    /// Writes the value into exactly `SLOTS` slots.
    fn put(&self, slots: &mut [u64]);
    /// Reads a value back from what `put` wrote.
    fn get(slots: &[u64]) -> Self;
}

impl Slots for u64 {
    const SLOTS: usize = 1;
    fn put(&self, slots: &mut [u64]) {
        slots[0] = *self;
    }
    fn get(slots: &[u64]) -> Self {
        slots[0]
    }
}

impl Slots for usize {
    const SLOTS: usize = 1;
    fn put(&self, slots: &mut [u64]) {
        slots[0] = *self as u64;
    }
    fn get(slots: &[u64]) -> Self {
        slots[0] as usize
    }
}

impl Slots for f64 {
    const SLOTS: usize = 1;
    fn put(&self, slots: &mut [u64]) {
        slots[0] = self.to_bits();
    }
    fn get(slots: &[u64]) -> Self {
        f64::from_bits(slots[0])
    }
}

impl<T: Slots + Copy> Slots for PerKind<T> {
    const SLOTS: usize = GrowthKind::ALL.len() * T::SLOTS;
    fn put(&self, slots: &mut [u64]) {
        for ((_, value), slots) in self.iter().zip(slots.chunks_exact_mut(T::SLOTS)) {
            value.put(slots);
        }
    }
    fn get(slots: &[u64]) -> Self {
        PerKind::from_fn(|kind| T::get(&slots[kind.index() * T::SLOTS..][..T::SLOTS]))
    }
}

/// The kind (0 for none, else its index plus one), then the counts.
impl Slots for Option<Growth> {
    const SLOTS: usize = 5;
    fn put(&self, slots: &mut [u64]) {
        let values = match self {
            Some(g) => [
                g.kind.index() as u64 + 1,
                g.old_buckets as u64,
                g.evacuated_old_buckets as u64,
                g.entries_at_start as u64,
                g.helping_writes,
            ],
            None => [0; 5],
        };
        slots.copy_from_slice(&values);
    }
    fn get(slots: &[u64]) -> Self {
        let kind = GrowthKind::ALL.get((slots[0] as usize).checked_sub(1)?)?;
        Some(Growth {
            kind: *kind,
            old_buckets: slots[1] as usize,
            evacuated_old_buckets: slots[2] as usize,
            entries_at_start: slots[3] as usize,
            helping_writes: slots[4],
        })
    }
}

/// Hands out consecutive slots in declaration order, so no stat has a
/// hand-numbered position.
struct Cursor<T>(T);

impl<'a> Cursor<&'a mut [u64]> {
    fn next(&mut self, n: usize) -> &'a mut [u64] {
        let (head, rest) = std::mem::take(&mut self.0).split_at_mut(n);
        self.0 = rest;
        head
    }
}

impl<'a> Cursor<&'a [u64]> {
    fn next(&mut self, n: usize) -> &'a [u64] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// The publication's layout, from the declaration (`map_stats!`): the
/// slots of every gauge and counter in declaration order (derived stats
/// are recomputed, not published), then the growth's start time.
macro_rules! publication {
    (
        gauges { $( $(#[cfg($gcfg:meta)])? $(#[doc = $gdoc:literal])* $g:ident: $gty:ty, fold $gfold:ident
            $(, json $gjson:literal)? $(, wire $gwire:ident)? $(, metric $gmetric:literal $ghelp:literal)?; )* }
        derived { $( $(#[cfg($dcfg:meta)])? $(#[doc = $ddoc:literal])* $d:ident: $dty:ty = $dfn:path
            $(, json $djson:literal)? $(, metric $dmetric:literal $dhelp:literal)?; )* }
        counters { $( $(#[cfg($ccfg:meta)])? $(#[doc = $cdoc:literal])* $c:ident: $cty:ty
            $(, json $cjson:literal)? $(, wire $cwire:ident)? $(, metric $cmetric:literal $chelp:literal)?; )* }
    ) => {
        /// Slots of the stats, then one for when the current growth started.
        const FIELDS: usize = {
            let mut slots = 1;
            $( $(#[cfg($gcfg)])? { slots += <$gty as Slots>::SLOTS; } )*
            $( $(#[cfg($ccfg)])? { slots += <$cty as Slots>::SLOTS; } )*
            slots
        };

        fn encode(stats: &MapStats, growth_started_ns: u64) -> [u64; FIELDS] {
            let mut values = [0; FIELDS];
            let mut cursor = Cursor(&mut values[..]);
            $( $(#[cfg($gcfg)])? stats.$g.put(cursor.next(<$gty as Slots>::SLOTS)); )*
            $( $(#[cfg($ccfg)])? stats.$c.put(cursor.next(<$cty as Slots>::SLOTS)); )*
            cursor.next(1)[0] = growth_started_ns;
            values
        }

        fn decode(values: &[u64; FIELDS]) -> Published {
            let mut cursor = Cursor(&values[..]);
            let mut stats = MapStats {
                $( $(#[cfg($gcfg)])? $g: Slots::get(cursor.next(<$gty as Slots>::SLOTS)), )*
                $( $(#[cfg($dcfg)])? $d: Default::default(), )*
                $( $(#[cfg($ccfg)])? $c: Slots::get(cursor.next(<$cty as Slots>::SLOTS)), )*
            };
            $( $(#[cfg($dcfg)])? { stats.$d = $dfn(&stats); } )*
            (stats, cursor.next(1)[0])
        }
    };
}

map_stats!(publication);

/// A map's last published stats.
#[derive(Debug)]
pub(crate) struct SharedStats {
    seq: AtomicU64,
    fields: [AtomicU64; FIELDS],
}

impl Default for SharedStats {
    fn default() -> Self {
        SharedStats {
            seq: AtomicU64::new(0),
            fields: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The published stats plus when the current growth started, in
/// nanoseconds since the registry's epoch (0: none).
pub(crate) type Published = (MapStats, u64);

impl SharedStats {
    /// Publishes. Only the map's owner calls this, so plain loads and
    /// stores of the sequence counter suffice (no read-modify-write).
    pub(crate) fn store(&self, stats: &MapStats, growth_started_ns: u64) {
        let values = encode(stats, growth_started_ns);
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Readers that see any of the stores below also see the odd sequence.
        fence(Ordering::Release);
        for (field, value) in self.fields.iter().zip(values) {
            field.store(value, Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Reads one consistent copy, or `None` if the writer kept publishing
    /// through every attempt (the caller keeps its previous copy).
    pub(crate) fn load(&self) -> Option<Published> {
        let mut values = [0u64; FIELDS];
        for attempt in 0..READ_ATTEMPTS {
            if attempt > 0 {
                if attempt % 64 == 0 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                continue;
            }
            for (value, field) in values.iter_mut().zip(&self.fields) {
                *value = field.load(Ordering::Relaxed);
            }
            // The field loads above complete before the re-check below.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(decode(&values));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let mut map = crate::InstrumentedMap::new();
        for i in 0..6_657u64 {
            map.insert(i, i);
        }
        map.remove(&3);
        map.insert(5, 0);
        let stats = map.stats();
        assert!(stats.growth.is_some());
        let shared = SharedStats::default();
        shared.store(&stats, 42);
        assert_eq!(shared.load(), Some((stats, 42)));
    }
}
