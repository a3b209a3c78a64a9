//! The crash directory scanner: turns the Go client's crash files
//! (`mapscope-crash-<startUnixNano>-<pid>.{log,json}`, see `crash.rs`) into
//! crash counts, misuse events and log lines, and removes them.
//!
//! It runs on the sidecar's sweeper timer (once per second, on a blocking
//! thread), never during a scrape. A map crash counts into the registry's
//! row of the same app, instance, map and labels (a reported map's, or a
//! crash-only row). Every decision compares what this scan sees with what
//! the previous one saw, so none needs a clock:
//!
//! - a non-empty `.log` whose size and modification time did not change
//!   since the previous scan is complete (the Go runtime writes the whole
//!   trace within milliseconds, then the process is gone): it is
//!   classified, recorded, and both files are removed;
//! - an empty `.log` belongs to a live process, or to one that exited
//!   without crashing: the pair is removed once a newer `.json` (a later
//!   `started_at`) of the same app and instance exists;
//! - unparseable metadata, or a file without its pair, is counted as
//!   `invalid` and logged once, after it has not changed for a scan (so a
//!   pair whose second file is being created is not mistaken for one),
//!   and removed;
//! - a pair that could not be removed is remembered and never counted
//!   twice.
//!
//! Each scan is bounded: [`CrashDirLimits`] caps the directory entries
//! looked at, the metadata files read, the crash logs read and the bytes
//! read of each.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::crash::{
    classify, parse_metadata, Classification, CrashFileResult, CrashMetadata, MAX_METADATA_BYTES,
};
use crate::registry::{CrashRecord, Registry, UNKNOWN_MAP};

/// What one scan may do at most.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CrashDirLimits {
    /// Directory entries looked at. Default 10,000.
    pub max_entries: usize,
    /// Metadata files read (unchanged ones are not read again). Default 256.
    pub max_metadata_files: usize,
    /// Crash logs read. Default 16.
    pub max_crash_logs: usize,
    /// Bytes read of one crash log: the crashing goroutine comes first, so
    /// its frames are at the start. Default 1 MiB.
    pub max_log_bytes: u64,
}

impl Default for CrashDirLimits {
    fn default() -> Self {
        CrashDirLimits {
            max_entries: 10_000,
            max_metadata_files: 256,
            max_crash_logs: 16,
            max_log_bytes: 1024 * 1024,
        }
    }
}

/// What one scan did, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanSummary {
    /// Map crashes recorded.
    pub map_crashes: usize,
    /// Crashes that were not a map's.
    pub other_crashes: usize,
    /// Invalid metadata or unpaired files.
    pub invalid: usize,
    /// Empty pairs removed because a newer process of the same app and
    /// instance started.
    pub superseded: usize,
    /// Pairs left for a later scan: live processes, logs still changing,
    /// and what the limits kept from this scan.
    pub waiting: usize,
    /// Metadata files read.
    pub metadata_read: usize,
}

/// Size and modification time: a file that keeps both across a scan is
/// not being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

/// The two files of one process, as one scan saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pair {
    log: Option<Stamp>,
    json: Option<Stamp>,
}

/// What the scanner remembers of a pair between scans.
#[derive(Debug, Default)]
struct Tracked {
    /// The pair at the previous scan.
    seen: Option<Pair>,
    /// The parsed metadata, and the stamp of the file it was read from.
    metadata: Option<(Stamp, Result<Arc<CrashMetadata>, String>)>,
    /// Counted (or superseded): only the removal is left.
    settled: bool,
    /// A failed removal was logged.
    warned_remove: bool,
}

/// `mapscope-crash-<startUnixNano>-<pid>`: ordered by start, then pid.
type Stem = (u64, u64);

fn parse_name(name: &str) -> Option<(Stem, bool)> {
    let rest = name.strip_prefix("mapscope-crash-")?;
    let (rest, is_log) = match rest.strip_suffix(".log") {
        Some(rest) => (rest, true),
        None => (rest.strip_suffix(".json")?, false),
    };
    let (start, pid) = rest.split_once('-')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some(((number(start)?, number(pid)?), is_log))
}

fn stem_name((start, pid): Stem) -> String {
    format!("mapscope-crash-{start}-{pid}")
}

/// Reads the Go client's crash files from one directory.
#[derive(Debug)]
pub struct CrashDir {
    dir: PathBuf,
    registry: Registry,
    limits: CrashDirLimits,
    tracked: HashMap<Stem, Tracked>,
    /// The directory could not be read at the last scan (logged once).
    unreadable: bool,
}

impl CrashDir {
    /// Watches `dir`, recording into `registry`, which starts exporting
    /// `mapscope_crash_files_total`.
    pub fn new(dir: impl Into<PathBuf>, registry: &Registry) -> Self {
        Self::with_limits(dir, registry, CrashDirLimits::default())
    }

    /// Like [`CrashDir::new`], with other limits.
    pub fn with_limits(
        dir: impl Into<PathBuf>,
        registry: &Registry,
        limits: CrashDirLimits,
    ) -> Self {
        registry.enable_crash_files(&CrashFileResult::ALL.map(CrashFileResult::as_str));
        CrashDir {
            dir: dir.into(),
            registry: registry.clone(),
            limits,
            tracked: HashMap::new(),
            unreadable: false,
        }
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One scan. Blocking file system work: run it on a blocking thread.
    /// A crash's misuse condition is held from the registry clock's now.
    pub fn scan(&mut self) -> ScanSummary {
        let mut summary = ScanSummary::default();
        let pairs = match self.list() {
            Ok(pairs) => {
                self.unreadable = false;
                pairs
            }
            Err(error) => {
                if !self.unreadable {
                    tracing::warn!(dir = %self.dir.display(), %error, "cannot read the crash directory (--crash-dir); crash files are not processed until it can be read");
                    self.unreadable = true;
                }
                return summary;
            }
        };
        self.tracked.retain(|stem, _| pairs.contains_key(stem));
        self.read_metadata(&pairs, &mut summary);
        // The newest start of each app and instance supersedes older empty
        // pairs: that process restarted (the container keeps the pod name).
        let mut newest: HashMap<(&str, &str), SystemTime> = HashMap::new();
        let metadata: HashMap<Stem, Arc<CrashMetadata>> = self
            .tracked
            .iter()
            .filter_map(|(stem, t)| match &t.metadata {
                Some((_, Ok(m))) => Some((*stem, m.clone())),
                _ => None,
            })
            .collect();
        for m in metadata.values() {
            let started = m.started();
            newest
                .entry((m.app.as_str(), m.instance.as_str()))
                .and_modify(|t| *t = (*t).max(started))
                .or_insert(started);
        }
        let mut logs_read = 0;
        let CrashDir {
            dir,
            registry,
            limits,
            tracked: all,
            ..
        } = self;
        for (stem, pair) in &pairs {
            let tracked = all.entry(*stem).or_default();
            let previous = tracked.seen.replace(*pair);
            if tracked.settled {
                remove(dir, *stem, *pair, tracked);
                continue;
            }
            let unchanged = previous == Some(*pair);
            let name = stem_name(*stem);
            let parsed = match &tracked.metadata {
                None => None,
                Some((_, Ok(_))) => metadata.get(stem).map(|m| Ok(m.clone())),
                Some((_, Err(e))) => Some(Err(e.clone())),
            };
            let result = match (pair.log, pair.json, parsed) {
                (Some(log), Some(_), Some(Ok(meta))) if log.len > 0 => {
                    let log_unchanged = previous.and_then(|p| p.log) == Some(log);
                    if !log_unchanged || logs_read >= limits.max_crash_logs {
                        summary.waiting += 1;
                        continue;
                    }
                    logs_read += 1;
                    process(dir, registry, limits.max_log_bytes, &name, &meta, log)
                }
                (Some(_), Some(_), Some(Ok(meta))) => {
                    let key = (meta.app.as_str(), meta.instance.as_str());
                    if newest.get(&key).is_some_and(|n| *n > meta.started()) {
                        tracing::debug!(file = %name, app = %meta.app, instance = %meta.instance, "removing the crash files of a process that exited without crashing");
                        summary.superseded += 1;
                        tracked.settled = true;
                        remove(dir, *stem, *pair, tracked);
                    } else {
                        summary.waiting += 1;
                    }
                    continue;
                }
                // Metadata not read this scan (the limit): wait for it.
                (Some(_), Some(_), None) => {
                    summary.waiting += 1;
                    continue;
                }
                (Some(_), Some(_), Some(Err(error))) => {
                    if !unchanged {
                        summary.waiting += 1;
                        continue;
                    }
                    tracing::warn!(file = %format!("{name}.json"), dir = %dir.display(), %error, "invalid crash metadata; removing the crash files");
                    CrashFileResult::Invalid
                }
                (log, _, _) => {
                    if !unchanged {
                        summary.waiting += 1;
                        continue;
                    }
                    let (present, missing) = if log.is_some() {
                        ("log", "json")
                    } else {
                        ("json", "log")
                    };
                    tracing::warn!(file = %format!("{name}.{present}"), dir = %dir.display(), "a crash file without its .{missing}: removing it (the Go client writes both; is something else writing to --crash-dir?)");
                    CrashFileResult::Invalid
                }
            };
            match result {
                CrashFileResult::MapCrash => summary.map_crashes += 1,
                CrashFileResult::OtherCrash => summary.other_crashes += 1,
                CrashFileResult::Invalid => summary.invalid += 1,
            }
            registry.count_crash_file(result.as_str());
            tracked.settled = true;
            remove(dir, *stem, *pair, tracked);
        }
        summary
    }

    /// The crash files in the directory, by process: regular files named
    /// `mapscope-crash-<digits>-<digits>.log` or `.json` (temporary files,
    /// symbolic links and anything else are ignored).
    fn list(&self) -> std::io::Result<BTreeMap<Stem, Pair>> {
        let mut pairs: BTreeMap<Stem, Pair> = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir)?.take(self.limits.max_entries) {
            let Ok(entry) = entry else { continue };
            let Some((stem, is_log)) = entry.file_name().to_str().and_then(parse_name) else {
                continue;
            };
            // DirEntry::metadata does not follow symbolic links.
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let stamp = Stamp {
                len: metadata.len(),
                modified: metadata.modified().ok(),
            };
            let pair = pairs.entry(stem).or_default();
            if is_log {
                pair.log = Some(stamp);
            } else {
                pair.json = Some(stamp);
            }
        }
        Ok(pairs)
    }

    /// Reads the metadata files that are new or changed, oldest process
    /// first, up to the limit. A file that changed but was not read this
    /// scan drops its stale parse, so nothing decides on it.
    fn read_metadata(&mut self, pairs: &BTreeMap<Stem, Pair>, summary: &mut ScanSummary) {
        for (stem, pair) in pairs {
            let Some(stamp) = pair.json else { continue };
            let tracked = self.tracked.entry(*stem).or_default();
            if tracked.settled || tracked.metadata.as_ref().is_some_and(|(s, _)| *s == stamp) {
                continue;
            }
            if summary.metadata_read >= self.limits.max_metadata_files {
                tracked.metadata = None;
                continue;
            }
            summary.metadata_read += 1;
            let path = self.dir.join(format!("{}.json", stem_name(*stem)));
            let parsed = read_bounded(&path, MAX_METADATA_BYTES as u64 + 1)
                .map_err(|e| format!("cannot read it: {e}"))
                .and_then(|bytes| parse_metadata(&bytes).map_err(|e| e.to_string()))
                .map(Arc::new);
            tracked.metadata = Some((stamp, parsed));
        }
    }
}

/// Classifies and records one complete crash log.
fn process(
    dir: &Path,
    registry: &Registry,
    max_log_bytes: u64,
    name: &str,
    meta: &CrashMetadata,
    log: Stamp,
) -> CrashFileResult {
    let file = format!("{name}.log");
    let bytes = match read_bounded(&dir.join(&file), max_log_bytes) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%file, dir = %dir.display(), %error, "cannot read a crash log; removing the crash files");
            return CrashFileResult::Invalid;
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    // Without a modification time (no such platform in practice), the
    // scan's time is within a few seconds of the crash.
    let at = log.modified.unwrap_or_else(|| registry.system_now());
    let site_fields = |site: &Option<crate::registry::CodeSite>| match site {
        Some(site) => (
            site.function.clone(),
            format!("{}:{}", site.file, site.line),
        ),
        None => (String::new(), String::new()),
    };
    match classify(&text) {
        Classification::Map(crash) => {
            let (map, labels) = match crash.map_in(meta) {
                Some(m) => (
                    m.name.clone(),
                    m.labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                None => (UNKNOWN_MAP.to_owned(), Vec::new()),
            };
            let (function, location) = site_fields(&crash.site);
            let counted = registry.record_crash(CrashRecord {
                app: meta.app.clone(),
                instance: meta.instance.clone(),
                pid: meta.pid,
                kind: crash.kind,
                map: map.clone(),
                labels,
                site: crash.site,
                at,
            });
            tracing::warn!(
                app = %meta.app,
                instance = %meta.instance,
                pid = meta.pid,
                kind = %crash.kind,
                map = %counted.as_deref().unwrap_or(&map),
                function = %function,
                site = %location,
                "a Go process crashed on a map misuse"
            );
            if counted.is_none() {
                tracing::warn!(app = %meta.app, "too many maps with crashes; this one is counted only in mapscope_crash_files_total");
            }
            CrashFileResult::MapCrash
        }
        Classification::Other(other) => {
            let (function, location) = site_fields(&other.site);
            tracing::warn!(
                app = %meta.app,
                instance = %meta.instance,
                pid = meta.pid,
                crash = %other.summary,
                function = %function,
                site = %location,
                "a Go process crashed (not a map misuse)"
            );
            CrashFileResult::OtherCrash
        }
    }
}

/// The first `limit` bytes of a file.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Removes the files of a pair the listing saw (never a symbolic link or
/// anything else under a crash file's name), the log first: a metadata
/// file left behind alone is reported as unpaired, a lone log would be
/// too. A failed removal is logged once and retried at every scan; the
/// pair stays settled, so it is never counted again.
fn remove(dir: &Path, stem: Stem, pair: Pair, tracked: &mut Tracked) {
    let present = [("log", pair.log.is_some()), ("json", pair.json.is_some())];
    for extension in present.iter().filter(|(_, p)| *p).map(|(e, _)| e) {
        let path = dir.join(format!("{}.{extension}", stem_name(stem)));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                if !tracked.warned_remove {
                    tracing::warn!(file = %path.display(), %error, "cannot remove a processed crash file; the sidecar needs write access to --crash-dir");
                    tracked.warned_remove = true;
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::MisuseKind;
    use crate::registry::{Event, ManualClock};

    /// A fresh directory under the target's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("mapscope-crash-dir-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, bytes: &[u8]) {
            std::fs::write(self.0.join(name), bytes).unwrap();
        }

        fn append(&self, name: &str, bytes: &[u8]) {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(self.0.join(name))
                .unwrap()
                .write_all(bytes)
                .unwrap();
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/crashes")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn metadata(app: &str, instance: &str, started_at: &str) -> Vec<u8> {
        format!(
            r#"{{"version":1,"app":"{app}","instance":"{instance}","started_at":"{started_at}","pid":7,"maps":[]}}"#
        )
        .into_bytes()
    }

    fn registry() -> Registry {
        Registry::builder().clock(ManualClock::new()).build()
    }

    fn scanner(dir: &TempDir) -> (CrashDir, Registry) {
        let registry = registry();
        (CrashDir::new(&dir.0, &registry), registry)
    }

    fn crash_files(registry: &Registry) -> BTreeMap<String, u64> {
        registry
            .snapshot()
            .ingest
            .expect("ingest stats")
            .crash_files
    }

    #[test]
    fn names_are_parsed_strictly() {
        assert_eq!(
            parse_name("mapscope-crash-12-34.log"),
            Some(((12, 34), true))
        );
        assert_eq!(
            parse_name("mapscope-crash-12-34.json"),
            Some(((12, 34), false))
        );
        for other in [
            "mapscope-crash-12-34.json.tmp",
            "mapscope-crash-12-34.tmp",
            "mapscope-crash--34.log",
            "mapscope-crash-1x-34.log",
            "mapscope-crash-12.log",
            "mapscope-crash-99999999999999999999999-1.log",
            "other.log",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_crash_is_processed_once_stable_then_removed() {
        let dir = TempDir::new("stable");
        let (mut scanner, registry) = scanner(&dir);
        let log = fixture("go1.27.3-system-write_str.log");
        // The process is running: its log is empty.
        dir.write("mapscope-crash-100-7.log", b"");
        dir.write(
            "mapscope-crash-100-7.json",
            &fixture("go1.27.3-system-write_str.json"),
        );
        assert_eq!(scanner.scan().waiting, 1);
        // It crashed: the runtime is still writing.
        dir.append("mapscope-crash-100-7.log", &log[..log.len() / 2]);
        let summary = scanner.scan();
        assert_eq!((summary.map_crashes, summary.waiting), (0, 1), "incomplete");
        dir.append("mapscope-crash-100-7.log", &log[log.len() / 2..]);
        assert_eq!(scanner.scan().map_crashes, 0, "changed since the last scan");
        assert_eq!(dir.names().len(), 2);
        let summary = scanner.scan();
        assert_eq!(summary.map_crashes, 1, "{summary:?}");
        assert!(dir.names().is_empty(), "{:?}", dir.names());
        assert_eq!(crash_files(&registry)["map_crash"], 1);
        // Nothing more happens.
        assert_eq!(scanner.scan(), ScanSummary::default());

        let snapshot = registry.snapshot();
        let map = snapshot.map("sessions").expect("a crash-only row");
        assert!(map.misuse_only);
        assert_eq!(map.id.source.as_deref(), Some("checkout"));
        assert_eq!(map.id.instance.as_deref(), Some("checkout-7d9f-x2k4"));
        assert_eq!(
            map.id.labels.to_vec(),
            vec![("tenant".to_owned(), "acme".to_owned())]
        );
        assert_eq!(map.misuse_count(MisuseKind::ConcurrentWrite), 1);
        assert!(map.is_active(MisuseKind::ConcurrentWrite));
        assert_eq!(
            snapshot.maps_registered, 0,
            "a crash row is no registered map"
        );
        let Some(Event::Misuse(event)) = snapshot.recent_events.last().map(|r| &r.event) else {
            panic!("a misuse event")
        };
        let site = event.site.as_ref().expect("a site");
        assert_eq!(
            (site.function.as_str(), site.file.as_str(), site.line),
            ("main.writeStr", "/tmp/gocrash/main.go", 57)
        );
        let metadata =
            crate::ingest::crash::parse_metadata(&fixture("go1.27.3-system-write_str.json"))
                .unwrap();
        assert_eq!(event.pid, Some(metadata.pid));
        assert!(
            event.details.contains("checkout-7d9f-x2k4"),
            "{}",
            event.details
        );
    }

    #[test]
    fn other_crashes_are_counted_and_removed() {
        let dir = TempDir::new("other");
        let (mut scanner, registry) = scanner(&dir);
        dir.write(
            "mapscope-crash-1-2.log",
            &fixture("go1.27.3-system-nil_pointer.log"),
        );
        dir.write(
            "mapscope-crash-1-2.json",
            &fixture("go1.27.3-system-nil_pointer.json"),
        );
        scanner.scan();
        assert_eq!(scanner.scan().other_crashes, 1);
        assert!(dir.names().is_empty());
        assert_eq!(crash_files(&registry)["other_crash"], 1);
        assert!(registry.snapshot().maps.is_empty());
    }

    #[test]
    fn empty_pairs_are_removed_once_superseded_and_kept_while_live() {
        let dir = TempDir::new("superseded");
        let (mut scanner, registry) = scanner(&dir);
        dir.write("mapscope-crash-100-7.log", b"");
        dir.write(
            "mapscope-crash-100-7.json",
            &metadata("a", "pod-1", "2026-11-22T10:00:00Z"),
        );
        // Another instance, and another app, are not newer processes of pod-1.
        dir.write("mapscope-crash-200-8.log", b"");
        dir.write(
            "mapscope-crash-200-8.json",
            &metadata("a", "pod-2", "2026-11-22T11:00:00Z"),
        );
        dir.write("mapscope-crash-300-9.log", b"");
        dir.write(
            "mapscope-crash-300-9.json",
            &metadata("b", "pod-1", "2026-11-22T11:00:00Z"),
        );
        for _ in 0..3 {
            assert_eq!(scanner.scan().waiting, 3);
        }
        assert_eq!(dir.names().len(), 6);
        // pod-1 of app a restarted.
        dir.write("mapscope-crash-400-10.log", b"");
        dir.write(
            "mapscope-crash-400-10.json",
            &metadata("a", "pod-1", "2026-11-22T12:00:00Z"),
        );
        let summary = scanner.scan();
        assert_eq!((summary.superseded, summary.waiting), (1, 3));
        assert!(!dir
            .names()
            .iter()
            .any(|n| n.starts_with("mapscope-crash-100-7")));
        assert_eq!(dir.names().len(), 6);
        // Nothing was counted.
        assert_eq!(crash_files(&registry).values().sum::<u64>(), 0);
    }

    #[test]
    fn invalid_and_unpaired_files_are_counted_once_after_a_stable_scan() {
        let dir = TempDir::new("invalid");
        let (mut scanner, registry) = scanner(&dir);
        dir.write("mapscope-crash-1-1.log", b"");
        dir.write("mapscope-crash-1-1.json", b"{not json");
        dir.write("mapscope-crash-2-2.log", b"goroutine 1 [running]:\n");
        dir.write(
            "mapscope-crash-3-3.json",
            &metadata("a", "pod-1", "2026-11-22T10:00:00Z"),
        );
        // Temporary and foreign files are never touched.
        dir.write("mapscope-crash-4-4.json.tmp", b"{");
        dir.write("notes.txt", b"x");
        let first = scanner.scan();
        assert_eq!((first.invalid, first.waiting), (0, 3), "not stable yet");
        let second = scanner.scan();
        assert_eq!(second.invalid, 3, "{second:?}");
        assert_eq!(crash_files(&registry)["invalid"], 3);
        assert_eq!(dir.names(), ["mapscope-crash-4-4.json.tmp", "notes.txt"]);
        assert_eq!(scanner.scan(), ScanSummary::default());
        assert_eq!(crash_files(&registry)["invalid"], 3);
    }

    #[test]
    fn a_pair_completed_between_scans_is_not_unpaired() {
        let dir = TempDir::new("race");
        let (mut scanner, registry) = scanner(&dir);
        dir.write("mapscope-crash-1-1.log", b"");
        assert_eq!(scanner.scan().waiting, 1);
        dir.write(
            "mapscope-crash-1-1.json",
            &metadata("a", "pod-1", "2026-11-22T10:00:00Z"),
        );
        for _ in 0..3 {
            assert_eq!(scanner.scan().waiting, 1);
        }
        assert_eq!(crash_files(&registry)["invalid"], 0);
        assert_eq!(dir.names().len(), 2);
    }

    #[test]
    fn scans_are_bounded() {
        let dir = TempDir::new("bounds");
        let registry = registry();
        let limits = CrashDirLimits {
            max_metadata_files: 2,
            max_crash_logs: 1,
            max_log_bytes: 300,
            ..CrashDirLimits::default()
        };
        let mut scanner = CrashDir::with_limits(&dir.0, &registry, limits);
        let log = fixture("go1.24.11-system-write_str.log");
        let json = fixture("go1.24.11-system-write_str.json");
        for i in 0..3 {
            dir.write(&format!("mapscope-crash-{i}-1.log"), &log);
            dir.write(&format!("mapscope-crash-{i}-1.json"), &json);
        }
        let first = scanner.scan();
        assert_eq!((first.metadata_read, first.waiting), (2, 3), "{first:?}");
        let second = scanner.scan();
        assert_eq!(
            (second.metadata_read, second.map_crashes, second.waiting),
            (1, 1, 2),
            "{second:?}"
        );
        let third = scanner.scan();
        assert_eq!((third.map_crashes, third.waiting), (1, 1), "{third:?}");
        assert_eq!(scanner.scan().map_crashes, 1);
        // 300 bytes hold the crashing goroutine's first frames: still a map
        // crash, if without the site further down.
        assert_eq!(crash_files(&registry)["map_crash"], 3);
        assert!(dir.names().is_empty());

        // Metadata over 64 KiB is invalid, not truncated.
        dir.write("mapscope-crash-9-9.log", b"");
        dir.write(
            "mapscope-crash-9-9.json",
            &vec![b' '; MAX_METADATA_BYTES + 1],
        );
        scanner.scan();
        assert_eq!(scanner.scan().invalid, 1);
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_ignored() {
        let dir = TempDir::new("symlink");
        let (mut scanner, _) = scanner(&dir);
        dir.write("target.log", &fixture("go1.27.3-system-write_str.log"));
        std::os::unix::fs::symlink(
            dir.0.join("target.log"),
            dir.0.join("mapscope-crash-1-1.log"),
        )
        .unwrap();
        dir.write(
            "mapscope-crash-1-1.json",
            &fixture("go1.27.3-system-write_str.json"),
        );
        scanner.scan();
        let summary = scanner.scan();
        assert_eq!(
            (summary.map_crashes, summary.invalid),
            (0, 1),
            "the .json is unpaired"
        );
        assert_eq!(dir.names(), ["mapscope-crash-1-1.log", "target.log"]);
    }

    #[test]
    fn a_missing_directory_is_reported_not_fatal() {
        let dir = TempDir::new("missing");
        let (mut scanner, _) = scanner(&dir);
        let path = dir.0.clone();
        drop(dir);
        assert_eq!(scanner.scan(), ScanSummary::default());
        assert!(scanner.unreadable);
        std::fs::create_dir_all(&path).unwrap();
        scanner.scan();
        assert!(!scanner.unreadable);
        let _ = std::fs::remove_dir_all(&path);
    }
}
