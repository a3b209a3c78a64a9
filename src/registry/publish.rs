//! Publishing a map's stats to observers without costing its owner.
//!
//! The owner writes with single-writer relaxed stores under a sequence
//! counter (a seqlock): no locks and no read-modify-writes, and it happens
//! only every `publish_every` writes and at growth start and finish. A
//! reader retries while a write is in flight, so a snapshot is always one
//! moment's stats and never mixes two (no entries beyond what the buckets
//! hold, no evacuated count above the old array's size).

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::map::{Growth, GrowthKind, MapStats};

/// How many times a reader retries while the writer keeps publishing
/// before it settles for the last complete copy it read.
const READ_ATTEMPTS: usize = 1000;

const FIELDS: usize = 24;

/// A map's last published stats.
#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    seq: AtomicU64,
    fields: [AtomicU64; FIELDS],
}

/// The published stats plus when the current growth started, in
/// nanoseconds since the registry's epoch (0: none).
pub(crate) type Published = (MapStats, u64);

fn encode(stats: &MapStats, growth_started_ns: u64) -> [u64; FIELDS] {
    let (kind, old, evacuated, at_start, helping) = match stats.growth {
        Some(g) => (
            g.kind.index() as u64 + 1,
            g.old_buckets as u64,
            g.evacuated_old_buckets as u64,
            g.entries_at_start as u64,
            g.helping_writes,
        ),
        None => (0, 0, 0, 0, 0),
    };
    [
        stats.entries as u64,
        stats.peak_entries as u64,
        stats.buckets as u64,
        stats.overflow_buckets as u64,
        stats.memory_bytes as u64,
        kind,
        old,
        evacuated,
        at_start,
        helping,
        stats.growths_double,
        stats.growths_same_size,
        stats.shrinks,
        stats.growth_seconds_double.to_bits(),
        stats.growth_seconds_same_size.to_bits(),
        stats.growth_seconds_shrink.to_bits(),
        stats.evacuated_buckets_total,
        stats.inserts,
        stats.updates,
        stats.removes,
        stats.max_overflow_chain as u64,
        growth_started_ns,
        0,
        0,
    ]
}

fn decode(f: &[u64; FIELDS]) -> Published {
    let entries = f[0] as usize;
    let buckets = f[2] as usize;
    let growth = match f[5] {
        0 => None,
        k => Some(Growth {
            kind: GrowthKind::ALL[(k as usize - 1).min(2)],
            old_buckets: f[6] as usize,
            evacuated_old_buckets: f[7] as usize,
            entries_at_start: f[8] as usize,
            helping_writes: f[9],
        }),
    };
    let stats = MapStats {
        entries,
        peak_entries: f[1] as usize,
        buckets,
        overflow_buckets: f[3] as usize,
        load_factor: if buckets == 0 {
            0.0
        } else {
            entries as f64 / buckets as f64
        },
        memory_bytes: f[4] as usize,
        growth,
        growths_double: f[10],
        growths_same_size: f[11],
        shrinks: f[12],
        growth_seconds_double: f64::from_bits(f[13]),
        growth_seconds_same_size: f64::from_bits(f[14]),
        growth_seconds_shrink: f64::from_bits(f[15]),
        evacuated_buckets_total: f[16],
        inserts: f[17],
        updates: f[18],
        removes: f[19],
        max_overflow_chain: f[20] as usize,
    };
    (stats, f[21])
}

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
