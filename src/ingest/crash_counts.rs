//! Map crashes read from crash files, counted per map for the sidecar's
//! life.
//!
//! A crashed process never reports again, so these counts cannot live in
//! its source's maps: they are kept here, keyed by (app, map, labels), and
//! never reset by a source restart or removal. The snapshot merges them
//! into the reported map of the same identity, or exports them as a
//! misuse-only row.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use crate::detect::MisuseKind;
use crate::registry::UNKNOWN_MAP;

/// Most (app, map, labels) rows. A crash of a map past it counts under its
/// app's `_unknown` row instead.
pub(crate) const MAX_CRASH_ROWS: usize = 1000;

/// Most `_unknown` rows that may be created past [`MAX_CRASH_ROWS`], one per
/// app. Past both, a crash is counted only in `mapscope_crash_files_total`
/// (and logged): memory stays bounded whatever the files say.
pub(crate) const MAX_FOLD_ROWS: usize = 64;

/// (app, map name, sorted labels).
pub(crate) type CrashKey = (String, String, Vec<(String, String)>);

/// One map's crashes.
#[derive(Debug, Clone, Default)]
pub(crate) struct CrashRow {
    /// Crashes by [`MisuseKind::index`].
    pub(crate) counts: [u64; MisuseKind::ALL.len()],
    /// When each kind last rose: holds `condition_active` like client kinds.
    pub(crate) increased: [Option<Instant>; MisuseKind::ALL.len()],
    /// When each kind's last crash happened (the crash log's mtime).
    pub(crate) last_at: [Option<SystemTime>; MisuseKind::ALL.len()],
}

/// Every map crash so far.
#[derive(Debug, Default)]
pub(crate) struct CrashCounts {
    rows: BTreeMap<CrashKey, CrashRow>,
}

impl CrashCounts {
    /// Counts one crash. Returns the key it counted under (the map's own,
    /// or its app's `_unknown` past the row cap), or `None` when even that
    /// row could not be created.
    pub(crate) fn record(
        &mut self,
        key: CrashKey,
        kind: MisuseKind,
        at: SystemTime,
        now: Instant,
    ) -> Option<CrashKey> {
        let key = if self.rows.contains_key(&key) || self.rows.len() < MAX_CRASH_ROWS {
            key
        } else {
            let folded = (key.0, UNKNOWN_MAP.to_owned(), Vec::new());
            if !self.rows.contains_key(&folded) && self.rows.len() >= MAX_CRASH_ROWS + MAX_FOLD_ROWS
            {
                return None;
            }
            folded
        };
        let row = self.rows.entry(key.clone()).or_default();
        let i = kind.index();
        row.counts[i] += 1;
        row.increased[i] = Some(now);
        row.last_at[i] = Some(row.last_at[i].map_or(at, |last| last.max(at)));
        Some(key)
    }

    /// Every row, in key order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&CrashKey, &CrashRow)> {
        self.rows.iter()
    }

    /// How many rows there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: &str, map: &str) -> CrashKey {
        (
            app.into(),
            map.into(),
            vec![("tenant".into(), "acme".into())],
        )
    }

    #[test]
    fn counts_accumulate_per_map_and_kind() {
        let mut counts = CrashCounts::default();
        let now = Instant::now();
        let at = SystemTime::UNIX_EPOCH;
        for _ in 0..2 {
            counts.record(key("a", "m"), MisuseKind::ConcurrentWrite, at, now);
        }
        counts.record(key("a", "m"), MisuseKind::NilMapWrite, at, now);
        let (_, row) = counts.rows().next().unwrap();
        assert_eq!(row.counts[MisuseKind::ConcurrentWrite.index()], 2);
        assert_eq!(row.counts[MisuseKind::NilMapWrite.index()], 1);
        assert_eq!(counts.len(), 1);
    }

    #[test]
    fn rows_are_bounded_and_extras_fold_into_unknown() {
        let mut counts = CrashCounts::default();
        let (now, at) = (Instant::now(), SystemTime::UNIX_EPOCH);
        for i in 0..MAX_CRASH_ROWS {
            let k = key("a", &format!("m{i}"));
            assert_eq!(
                counts.record(k.clone(), MisuseKind::ConcurrentWrite, at, now),
                Some(k)
            );
        }
        // An existing row still counts under its own name.
        let k = key("a", "m0");
        assert_eq!(
            counts.record(k.clone(), MisuseKind::ConcurrentWrite, at, now),
            Some(k)
        );
        // A new one folds into its app's _unknown.
        let folded = ("a".to_owned(), UNKNOWN_MAP.to_owned(), Vec::new());
        assert_eq!(
            counts.record(key("a", "new"), MisuseKind::ConcurrentWrite, at, now),
            Some(folded.clone())
        );
        assert_eq!(
            counts.record(key("a", "newer"), MisuseKind::ConcurrentWrite, at, now),
            Some(folded)
        );
        assert_eq!(counts.len(), MAX_CRASH_ROWS + 1);
        // One _unknown row per app, up to MAX_FOLD_ROWS of them.
        for i in 1..MAX_FOLD_ROWS {
            assert!(counts
                .record(
                    key(&format!("app{i}"), "x"),
                    MisuseKind::ConcurrentWrite,
                    at,
                    now
                )
                .is_some());
        }
        assert_eq!(counts.len(), MAX_CRASH_ROWS + MAX_FOLD_ROWS);
        assert_eq!(
            counts.record(
                key("one-too-many", "x"),
                MisuseKind::ConcurrentWrite,
                at,
                now
            ),
            None
        );
        assert_eq!(counts.len(), MAX_CRASH_ROWS + MAX_FOLD_ROWS);
    }
}
