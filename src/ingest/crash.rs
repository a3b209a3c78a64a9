//! Go crash files: the metadata the Go client writes next to its crash
//! output, and the classification of that output. Pure functions of bytes;
//! the directory scanner that feeds them is `crash_dir.rs`.
//!
//! Go's `fatal error: concurrent map writes` cannot be recovered: it kills
//! the process before any reporter can say so. The Go client's
//! `CaptureCrashes()` therefore points `runtime/debug.SetCrashOutput` at
//! `mapscope-crash-<startUnixNano>-<pid>.log` in a directory shared with the
//! sidecar, raises the traceback level to `system` (so runtime frames and
//! their arguments are printed), and writes
//! `mapscope-crash-<startUnixNano>-<pid>.json` ([`CrashMetadata`]) next to
//! it. The crash output holds the goroutine traces, the crashing goroutine
//! first, but not the `fatal error: …` line (that goes to stderr only), so
//! [`classify`] reads the kind of crash from the frames.
//!
//! ```
//! use mapscope::ingest::crash::{classify, parse_metadata, Classification};
//! use mapscope::MisuseKind;
//!
//! let log = "\ngoroutine 20 gp=0xc000084540 m=2 mp=0xc000046708 [running]:
//! runtime.fatal({0x4b5171?, 0x4ae660?})
//! \t/go/src/runtime/panic.go:1094 +0x48 fp=0xc00003d6e8 sp=0xc00003d6b8 pc=0x431b08
//! runtime.mapassign_faststr(0x49f7a0, 0xc00009a300, {0x552540, 0x1})
//! \t/go/src/runtime/map_faststr.go:232 +0x4f fp=0xc00003d758 sp=0xc00003d6e8 pc=0x46394f
//! main.writer(0x1, 0x0?)
//! \t/src/app/main.go:15 +0xb7 fp=0xc00003d7c0 sp=0xc00003d758 pc=0x492297
//! ";
//! let metadata = parse_metadata(br#"{"version":1,"app":"checkout","instance":"pod-1",
//!     "started_at":"2026-11-22T10:00:00Z","pid":4242,
//!     "maps":[{"name":"sessions","labels":{"tenant":"acme"},"address":"0xc00009a300"}]}"#).unwrap();
//! let Classification::Map(crash) = classify(log) else { panic!("a map crash") };
//! assert_eq!(crash.kind, MisuseKind::ConcurrentWrite);
//! let site = crash.site.as_ref().unwrap();
//! assert_eq!((site.function.as_str(), site.file.as_str(), site.line), ("main.writer", "/src/app/main.go", 15));
//! assert_eq!(crash.map_in(&metadata).unwrap().name, "sessions");
//! ```

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Deserialize;

use super::protocol::MAX_SOURCE_CHARS;
use crate::detect::MisuseKind;
use crate::registry::{validate, CodeSite, RegisterError};
use crate::timestamp::parse_rfc3339;

/// The metadata format version this sidecar reads.
pub const METADATA_VERSION: u32 = 1;

/// Largest metadata file, in bytes: a few hundred maps' names, labels and
/// addresses. A larger file is invalid, not truncated.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// The Go client's package: its frames are never the site of a crash (the
/// site is the application code that called it).
pub const GO_CLIENT_PACKAGE: &str = "github.com/mapscope/mapscope/clients/go";

/// `mapscope-crash-<startUnixNano>-<pid>.json`: who crashed, and the maps it
/// observed with their runtime header addresses. Unknown fields are
/// ignored, so newer clients work with this sidecar.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct CrashMetadata {
    /// The format version; this sidecar reads [`METADATA_VERSION`].
    pub version: u32,
    /// The application: the `source` label of its crash counts.
    pub app: String,
    /// The process's instance (pod name): a restarted container keeps it.
    pub instance: String,
    /// When the process started (RFC 3339).
    pub started_at: String,
    /// The process id.
    pub pid: u32,
    /// The client SDK, for people (`mapscope-go/0.1.0 (go1.27.3; swiss)`).
    #[serde(default)]
    pub sdk: Option<String>,
    /// The Go version, for people.
    #[serde(default)]
    pub go_version: Option<String>,
    /// The maps the process observed.
    #[serde(default)]
    pub maps: Vec<CrashMap>,
}

/// One observed map in [`CrashMetadata`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct CrashMap {
    /// The map's name (its `map` label).
    pub name: String,
    /// The map's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The runtime header address, `0x` and hex digits (`0xc000094300`).
    pub address: String,
}

impl CrashMap {
    /// The address as a number; `None` when it is not `0x` + hex digits.
    pub fn address(&self) -> Option<u64> {
        parse_hex(&self.address)
    }
}

impl CrashMetadata {
    /// When the process started. `parse_metadata` checked the timestamp.
    pub fn started(&self) -> SystemTime {
        parse_rfc3339(&self.started_at).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// Why a metadata file is unusable. Each message names the field and what
/// to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Over [`MAX_METADATA_BYTES`].
    #[error("the metadata is {bytes} bytes; the limit is {limit}: observe fewer maps with CaptureCrashes")]
    TooLarge {
        /// The file's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or not the expected shape.
    #[error("{field}: {message}: the Go client writes this file; check that it is mapscope's")]
    Json {
        /// The JSON path of the problem (`.` for the whole document).
        field: String,
        /// The parser's message.
        message: String,
    },
    /// A version this sidecar does not read.
    #[error(
        "version {0} is not supported (this sidecar reads version 1): upgrade the mapscope sidecar"
    )]
    Version(u32),
    /// A field with a value the sidecar cannot use.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`app`, `maps[2].labels.tenant`).
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> MetadataError {
    MetadataError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses and checks a metadata file. App and instance follow the report
/// protocol's rules (1 to 128 bytes, no control characters, no `/` in the
/// app), and map names and labels those of reported maps, because they
/// become the same Prometheus labels.
pub fn parse_metadata(bytes: &[u8]) -> Result<CrashMetadata, MetadataError> {
    if bytes.len() > MAX_METADATA_BYTES {
        return Err(MetadataError::TooLarge {
            bytes: bytes.len(),
            limit: MAX_METADATA_BYTES,
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let metadata: CrashMetadata =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            // serde_path_to_error says `?` for the root (a missing field).
            let field = match e.path().to_string() {
                path if path == "?" => ".".to_owned(),
                path => path,
            };
            MetadataError::Json {
                field,
                message: e.into_inner().to_string(),
            }
        })?;
    deserializer.end().map_err(|e| MetadataError::Json {
        field: ".".into(),
        message: format!("trailing data: {e}"),
    })?;
    if metadata.version != METADATA_VERSION {
        return Err(MetadataError::Version(metadata.version));
    }
    for (field, value) in [("app", &metadata.app), ("instance", &metadata.instance)] {
        if value.is_empty()
            || value.chars().nth(MAX_SOURCE_CHARS).is_some()
            || value.chars().any(char::is_control)
        {
            return Err(invalid(
                field,
                format!("must be 1 to {MAX_SOURCE_CHARS} characters without control characters (set MAPSCOPE_APP / MAPSCOPE_INSTANCE)"),
            ));
        }
    }
    if metadata.app.contains('/') {
        return Err(invalid(
            "app",
            "must not contain '/' (the source label joins app and instance with it)",
        ));
    }
    if let Err(error) = parse_rfc3339(&metadata.started_at) {
        return Err(invalid("started_at", error.to_string()));
    }
    for (i, map) in metadata.maps.iter().enumerate() {
        let labels: Vec<(String, String)> = map
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        validate(&map.name, &labels).map_err(|e| {
            let field = match &e {
                RegisterError::InvalidLabelName { name }
                | RegisterError::ReservedLabel { name }
                | RegisterError::InvalidLabelValue { name }
                | RegisterError::DuplicateLabel { name } => format!("maps[{i}].labels.{name}"),
                RegisterError::TooManyLabels { .. } => format!("maps[{i}].labels"),
                _ => format!("maps[{i}].name"),
            };
            invalid(field, e.to_string())
        })?;
        if map.address().is_none() {
            return Err(invalid(
                format!("maps[{i}].address"),
                format!(
                    "{:?} is not an address like \"0xc000094300\" (0x and hex digits)",
                    map.address
                ),
            ));
        }
    }
    Ok(metadata)
}

/// What a crash file's crash was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Classification {
    /// A map misuse killed the process.
    Map(MapCrash),
    /// Something else did (a nil pointer, an explicit panic, a fatal error
    /// whose frames show no map).
    Other(OtherCrash),
}

/// A crash caused by a map.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapCrash {
    /// `concurrent_write` (concurrent writes, or a read racing a write),
    /// `iterate_while_mutating` (a write during an iteration) or
    /// `nil_map_write` (an unrecovered write to a nil map).
    pub kind: MisuseKind,
    /// The application frame that did it: the first one below the runtime's
    /// that is not in `runtime.`, `internal/` or the Go client's package.
    pub site: Option<CodeSite>,
    /// Map header addresses the runtime's map frames show as their map
    /// argument, exactly (values the traceback marks `?` are left out).
    pub addresses: Vec<u64>,
}

impl MapCrash {
    /// The map of `metadata` whose address a runtime map frame shows, if
    /// any. Without one, the crash counts under
    /// [`UNKNOWN_MAP`](crate::registry::UNKNOWN_MAP).
    pub fn map_in<'a>(&self, metadata: &'a CrashMetadata) -> Option<&'a CrashMap> {
        self.addresses
            .iter()
            .find_map(|address| metadata.maps.iter().find(|m| m.address() == Some(*address)))
    }
}

/// A crash that was not a map's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtherCrash {
    /// The panic line, or a description of the fatal error.
    pub summary: String,
    /// The application frame it happened in, as for [`MapCrash::site`].
    pub site: Option<CodeSite>,
}

/// One frame of a goroutine trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame<'a> {
    function: &'a str,
    args: &'a str,
    location: Option<(&'a str, u32)>,
}

impl Frame<'_> {
    /// The runtime's own frames, above the code that called into it.
    /// `panic` is how tracebacks print `runtime.gopanic`.
    fn is_runtime(&self) -> bool {
        self.function.starts_with("runtime.")
            || self.function.starts_with("internal/")
            || self.function == "panic"
    }

    fn is_go_client(&self) -> bool {
        self.function
            .strip_prefix(GO_CLIENT_PACKAGE)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('/'))
    }

    /// A runtime map function. Go ≥ 1.24 (swiss maps) adds
    /// `internal/runtime/maps` and renames the iterator entry points.
    fn is_map(&self) -> bool {
        const MAP_FUNCTIONS: [&str; 9] = [
            "runtime.mapassign",
            "runtime.mapdelete",
            "runtime.mapaccess",
            "runtime.mapiternext",
            "runtime.mapiterinit",
            "runtime.mapIterNext",
            "runtime.mapIterStart",
            "runtime.mapclear",
            "runtime.mapclone",
        ];
        self.function.starts_with("internal/runtime/maps.")
            || MAP_FUNCTIONS.iter().any(|f| self.function.starts_with(f))
    }

    fn is_iteration(&self) -> bool {
        const ITERATION: [&str; 5] = [
            "runtime.mapiternext",
            "runtime.mapiterinit",
            "runtime.mapIterNext",
            "runtime.mapIterStart",
            "internal/runtime/maps.(*Iter).",
        ];
        ITERATION.iter().any(|f| self.function.starts_with(f))
    }

    /// The `n`th argument (from 0) as printed: a top-level comma-separated
    /// item (`{0x552540, 0x1}` is one argument, a string).
    fn arg(&self, n: usize) -> Option<&str> {
        let mut depth = 0usize;
        let mut start = 0;
        let mut index = 0;
        for (i, c) in self.args.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    if index == n {
                        return Some(self.args[start..i].trim());
                    }
                    index += 1;
                    start = i + 1;
                }
                _ => {}
            }
        }
        (index == n).then(|| self.args[start..].trim())
    }

    /// The runtime map functions take the map type first and the map
    /// header second (`mapassign_faststr(t, h, key)`,
    /// `mapIterStart(t, m, it)`). A value the traceback is unsure of
    /// (`0xc000…?`, a spilled register) is not trusted.
    fn map_address(&self) -> Option<u64> {
        if !self.function.starts_with("runtime.map") {
            return None;
        }
        parse_hex(self.arg(1)?).filter(|a| *a != 0)
    }
}

fn parse_hex(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x")?;
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// `runtime.mapassign_faststr(0x49f7a0, 0xc00009a300, {0x552540, 0x1})`:
/// the function is everything before the last `(` (names themselves hold
/// parentheses: `main.(*cart).add`), the arguments what is inside it.
fn parse_call(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_end();
    let body = line.strip_suffix(')')?;
    let open = body.rfind('(')?;
    let function = &body[..open];
    (!function.is_empty()).then(|| (function, &body[open + 1..]))
}

/// `\t/src/app/main.go:15 +0xb7 fp=0xc… sp=0xc… pc=0x…`: file and line.
/// The file may hold spaces and colons; the line is after the last colon.
fn parse_location(line: &str) -> Option<(&str, u32)> {
    let line = line.strip_prefix('\t')?;
    let line = line.split(" fp=").next().unwrap_or(line);
    let line = match line.rfind(" +0x") {
        Some(i) => &line[..i],
        None => line,
    };
    let (file, number) = line.trim_end().rsplit_once(':')?;
    Some((file, number.parse().ok()?))
}

/// The text before the first goroutine (a panic's message), and the frames
/// of the first goroutine, which is the one that crashed.
fn first_goroutine(log: &str) -> (Vec<&str>, Vec<Frame<'_>>) {
    let mut lines = log.lines();
    let mut header = Vec::new();
    for line in lines.by_ref() {
        if line.starts_with("goroutine ") && line.trim_end().ends_with(':') {
            break;
        }
        header.push(line);
    }
    let mut frames: Vec<Frame<'_>> = Vec::new();
    for line in lines {
        if line.trim().is_empty() || line.starts_with("created by ") {
            break;
        }
        if line.starts_with('\t') {
            if let Some(frame) = frames.last_mut().filter(|f| f.location.is_none()) {
                frame.location = parse_location(line);
            }
        } else if let Some((function, args)) = parse_call(line) {
            frames.push(Frame {
                function,
                args,
                location: None,
            });
        }
    }
    (header, frames)
}

/// The Go runtime's fatal-error messages for maps, should the crash output
/// carry one (it does not from `SetCrashOutput`, but stderr captured into
/// the file would).
fn fatal_message_kind(header: &[&str]) -> Option<MisuseKind> {
    header.iter().find_map(|line| {
        let message = line.trim().strip_prefix("fatal error: ")?;
        match message.trim() {
            "concurrent map iteration and map write" => Some(MisuseKind::IterateWhileMutating),
            "concurrent map writes"
            | "concurrent map read and map write"
            | "concurrent map clone and map write" => Some(MisuseKind::ConcurrentWrite),
            _ => None,
        }
    })
}

/// Classifies a crash file's content, from the first goroutine block (and
/// the panic message above it) only:
///
/// - `internal/runtime/maps.fatal` (Go ≥ 1.24), or `runtime.fatal` /
///   `runtime.throw` directly above a runtime map frame: a map fatal error,
///   `iterate_while_mutating` when an iterator frame is among the runtime
///   frames, else `concurrent_write` (writes, and a read racing a write;
///   also when the default traceback level hides the runtime's map frames);
/// - an unrecovered `panic: assignment to entry in nil map`, or a panic
///   whose runtime frames show a map assign with a nil (`0x0`) map:
///   `nil_map_write`;
/// - anything else is not a map crash.
///
/// With the default traceback level, Go < 1.24 and `GOEXPERIMENT=noswissmap`
/// builds print no runtime frames for a fatal error at all, so their map
/// crashes cannot be told from other fatal errors: that is why the Go
/// client raises the level to `system`.
pub fn classify(log: &str) -> Classification {
    let (header, frames) = first_goroutine(log);
    let runtime_frames = frames.iter().take_while(|f| f.is_runtime()).count();
    let (runtime, below) = frames.split_at(runtime_frames);
    let site = below
        .iter()
        .find(|f| !f.is_runtime() && !f.is_go_client())
        .and_then(|f| {
            let (file, line) = f.location?;
            Some(CodeSite::new(f.function, file, line))
        });
    let addresses: Vec<u64> = runtime.iter().filter_map(Frame::map_address).collect();
    let panic_line = header
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("panic: "));
    let map_crash = |kind| {
        Classification::Map(MapCrash {
            kind,
            site: site.clone(),
            addresses: addresses.clone(),
        })
    };
    if let Some(panic) = panic_line {
        let nil_assign = header.iter().any(|l| {
            let l = l.trim();
            l.starts_with("panic: ") && l.contains("assignment to entry in nil map")
        }) || runtime
            .iter()
            .any(|f| f.function.starts_with("runtime.mapassign") && f.arg(1) == Some("0x0"));
        if nil_assign {
            return map_crash(MisuseKind::NilMapWrite);
        }
        return Classification::Other(OtherCrash {
            summary: panic.to_owned(),
            site,
        });
    }
    let fatal = runtime.iter().enumerate().any(|(i, f)| {
        f.function == "internal/runtime/maps.fatal"
            || (matches!(f.function, "runtime.fatal" | "runtime.throw")
                && runtime.get(i + 1).is_some_and(Frame::is_map))
    });
    if fatal {
        let kind = if runtime.iter().any(Frame::is_iteration) {
            MisuseKind::IterateWhileMutating
        } else {
            MisuseKind::ConcurrentWrite
        };
        return map_crash(kind);
    }
    if let Some(kind) = fatal_message_kind(&header) {
        return map_crash(kind);
    }
    let summary = header
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .map_or_else(
            || "a fatal error whose trace shows no map frames".to_owned(),
            str::to_owned,
        );
    Classification::Other(OtherCrash { summary, site })
}

/// What became of one crash file pair: the `result` label of
/// `mapscope_crash_files_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrashFileResult {
    /// A map crash, recorded as misuse.
    MapCrash,
    /// A crash that was not a map's: counted and logged only.
    OtherCrash,
    /// Metadata that cannot be parsed, or a file without its pair.
    Invalid,
}

impl CrashFileResult {
    /// Every result, in label order.
    pub const ALL: [CrashFileResult; 3] = [
        CrashFileResult::MapCrash,
        CrashFileResult::OtherCrash,
        CrashFileResult::Invalid,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            CrashFileResult::MapCrash => "map_crash",
            CrashFileResult::OtherCrash => "other_crash",
            CrashFileResult::Invalid => "invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crashes")
    }

    fn fixture(name: &str) -> (String, CrashMetadata) {
        let dir = fixtures();
        let log = std::fs::read(dir.join(format!("{name}.log")))
            .unwrap_or_else(|e| panic!("fixture {name}.log: {e}"));
        let json = std::fs::read(dir.join(format!("{name}.json")))
            .unwrap_or_else(|e| panic!("fixture {name}.json: {e}"));
        let metadata = parse_metadata(&json).unwrap_or_else(|e| panic!("{name}.json: {e}"));
        (String::from_utf8_lossy(&log).into_owned(), metadata)
    }

    /// The Go program's functions and lines (tests/fixtures/crashes/gocrash).
    fn site_of(scenario: &str) -> (&'static str, u32) {
        match scenario {
            "write_str" => ("main.writeStr", 57),
            "write_int" => ("main.writeInt", 63),
            "write_generic" => ("main.writeGeneric", 69),
            "read_write" => ("main.readCarts", 76),
            "iterate_write" | "iterate_write_init" => ("main.iterateCarts", 89),
            "nil_map" => ("main.assignNil", 96),
            "nil_pointer" => ("main.(*handler).serve", 101),
            other => panic!("unknown scenario {other}"),
        }
    }

    /// Every fixture, with what it must classify as: kind (None: not a map
    /// crash) and the map named (`_unknown` when no exact address matches).
    /// The map column depends on which arguments the traceback printed
    /// exactly in that run; regenerated fixtures may differ there.
    const EXPECTED: &[(&str, Option<MisuseKind>, &str)] = {
        use MisuseKind::{ConcurrentWrite as W, IterateWhileMutating as I, NilMapWrite as N};
        &[
            // Go 1.23.9: classic maps. The default traceback hides every
            // runtime frame of a fatal error: not recognisable.
            ("go1.23.9-system-write_str", Some(W), "sessions"),
            ("go1.23.9-system-write_int", Some(W), "counters"),
            ("go1.23.9-system-write_generic", Some(W), "grid"),
            ("go1.23.9-system-read_write", Some(W), "carts"),
            // mapiternext(it) shows the iterator, not the map.
            ("go1.23.9-system-iterate_write", Some(I), "_unknown"),
            // A run that crashed in the range loop's first step:
            // mapiterinit(t, h, it) is still on the stack, h names the map.
            ("go1.23.9-system-iterate_write_init", Some(I), "carts"),
            ("go1.23.9-system-nil_map", Some(N), "_unknown"),
            ("go1.23.9-system-nil_pointer", None, ""),
            ("go1.23.9-default-write_str", None, ""),
            ("go1.23.9-default-write_int", None, ""),
            ("go1.23.9-default-write_generic", None, ""),
            ("go1.23.9-default-read_write", None, ""),
            ("go1.23.9-default-iterate_write", None, ""),
            ("go1.23.9-default-nil_map", Some(N), "_unknown"),
            ("go1.23.9-default-nil_pointer", None, ""),
            // Go 1.24.11, swiss maps: internal/runtime/maps.fatal shows
            // even with the default traceback.
            ("go1.24.11-system-write_str", Some(W), "sessions"),
            ("go1.24.11-system-write_int", Some(W), "counters"),
            ("go1.24.11-system-write_generic", Some(W), "grid"),
            // mapaccess1_faststr(0xc000042f80?, 0x1?, …): unsure arguments.
            ("go1.24.11-system-read_write", Some(W), "_unknown"),
            ("go1.24.11-system-iterate_write", Some(I), "_unknown"),
            ("go1.24.11-system-nil_map", Some(N), "_unknown"),
            ("go1.24.11-system-nil_pointer", None, ""),
            ("go1.24.11-default-write_str", Some(W), "_unknown"),
            ("go1.24.11-default-write_int", Some(W), "_unknown"),
            ("go1.24.11-default-write_generic", Some(W), "_unknown"),
            ("go1.24.11-default-read_write", Some(W), "_unknown"),
            ("go1.24.11-default-iterate_write", Some(I), "_unknown"),
            ("go1.24.11-default-nil_map", Some(N), "_unknown"),
            ("go1.24.11-default-nil_pointer", None, ""),
            // Go 1.24.11 with GOEXPERIMENT=noswissmap: classic maps again.
            ("go1.24.11-noswissmap-system-write_str", Some(W), "sessions"),
            ("go1.24.11-noswissmap-system-write_int", Some(W), "counters"),
            ("go1.24.11-noswissmap-system-write_generic", Some(W), "grid"),
            ("go1.24.11-noswissmap-system-read_write", Some(W), "carts"),
            (
                "go1.24.11-noswissmap-system-iterate_write",
                Some(I),
                "_unknown",
            ),
            ("go1.24.11-noswissmap-system-nil_map", Some(N), "_unknown"),
            ("go1.24.11-noswissmap-system-nil_pointer", None, ""),
            ("go1.24.11-noswissmap-default-write_str", None, ""),
            ("go1.24.11-noswissmap-default-write_int", None, ""),
            ("go1.24.11-noswissmap-default-write_generic", None, ""),
            ("go1.24.11-noswissmap-default-read_write", None, ""),
            ("go1.24.11-noswissmap-default-iterate_write", None, ""),
            ("go1.24.11-noswissmap-default-nil_map", Some(N), "_unknown"),
            ("go1.24.11-noswissmap-default-nil_pointer", None, ""),
            // Go 1.27.3.
            ("go1.27.3-system-write_str", Some(W), "sessions"),
            ("go1.27.3-system-write_int", Some(W), "counters"),
            ("go1.27.3-system-write_generic", Some(W), "grid"),
            ("go1.27.3-system-read_write", Some(W), "_unknown"),
            ("go1.27.3-system-iterate_write", Some(I), "_unknown"),
            ("go1.27.3-system-nil_map", Some(N), "_unknown"),
            ("go1.27.3-system-nil_pointer", None, ""),
            ("go1.27.3-default-write_str", Some(W), "_unknown"),
            ("go1.27.3-default-write_int", Some(W), "_unknown"),
            ("go1.27.3-default-write_generic", Some(W), "_unknown"),
            ("go1.27.3-default-read_write", Some(W), "_unknown"),
            ("go1.27.3-default-iterate_write", Some(I), "_unknown"),
            ("go1.27.3-default-nil_map", Some(N), "_unknown"),
            ("go1.27.3-default-nil_pointer", None, ""),
        ]
    };

    #[test]
    fn every_fixture_is_listed() {
        let mut on_disk: Vec<String> = std::fs::read_dir(fixtures())
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".log").map(str::to_owned)
            })
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = EXPECTED.iter().map(|(n, ..)| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn fixtures_classify_with_kind_site_and_map() {
        for (name, kind, map) in EXPECTED {
            let (log, metadata) = fixture(name);
            let scenario = name.rsplit('-').next().unwrap();
            let (function, line) = site_of(scenario);
            let (site, got_kind, got_map) = match classify(&log) {
                Classification::Map(crash) => {
                    let map = crash
                        .map_in(&metadata)
                        .map_or(crate::registry::UNKNOWN_MAP, |m| m.name.as_str())
                        .to_owned();
                    (crash.site, Some(crash.kind), map)
                }
                Classification::Other(other) => {
                    if scenario == "nil_pointer" {
                        assert!(
                            other.summary.contains("nil pointer dereference"),
                            "{name}: {}",
                            other.summary
                        );
                    }
                    (other.site, None, String::new())
                }
            };
            assert_eq!(got_kind, *kind, "{name}: kind");
            assert_eq!(got_map, *map, "{name}: map");
            let site = site.unwrap_or_else(|| panic!("{name}: no site"));
            assert_eq!(site.function, function, "{name}: site function");
            assert_eq!(site.file, "/tmp/gocrash/main.go", "{name}: site file");
            assert_eq!(site.line, line, "{name}: site line");
        }
    }

    #[test]
    fn a_map_named_by_address_gets_its_labels() {
        let (log, metadata) = fixture("go1.27.3-system-write_str");
        let Classification::Map(crash) = classify(&log) else {
            panic!("a map crash")
        };
        let map = crash.map_in(&metadata).unwrap();
        assert_eq!(map.name, "sessions");
        assert_eq!(map.labels.get("tenant").map(String::as_str), Some("acme"));
        // Without that map in the metadata, nothing is named.
        let mut other = metadata.clone();
        other.maps.retain(|m| m.name != "sessions");
        assert!(crash.map_in(&other).is_none());
    }

    /// A trace through the Go client's wrapper: the site is the
    /// application's caller, not the client. (Synthetic: the client is
    /// not written yet.)
    #[test]
    fn go_client_frames_are_never_the_site() {
        let log = "\ngoroutine 7 gp=0xc000007500 m=2 mp=0xc000048708 [running]:
runtime.fatal({0x4e7929?, 0x4dffa0?})
\t/go/src/runtime/panic.go:1094 +0x48 fp=0xc00003eef8 sp=0xc00003eec8 pc=0x432108
runtime.mapassign_faststr(0x4cdb20, 0xc0000940f0, {0x5a1c18, 0x1})
\t/go/src/runtime/map_faststr.go:315 +0x3ae fp=0xc00003ef68 sp=0xc00003eef8 pc=0x464b2e
github.com/mapscope/mapscope/clients/go.Put[...](...)
\t/root/go/pkg/mod/github.com/mapscope/mapscope/clients/go@v0.1.0/put.go:31
github.com/mapscope/mapscope/clients/go/internal/x.helper(...)
\t/root/go/pkg/mod/github.com/mapscope/mapscope/clients/go@v0.1.0/internal/x/x.go:9
github.com/acme/shop.(*Cart).Add(0xc000010000, {0x5a1c18, 0x1})
\t/src/shop/my cart.go:88 +0x92 fp=0xc00003efb0 sp=0xc00003ef68 pc=0x4be5f2
created by github.com/acme/shop.Serve in goroutine 1
\t/src/shop/serve.go:10 +0x77
";
        let Classification::Map(crash) = classify(log) else {
            panic!("a map crash")
        };
        assert_eq!(crash.kind, MisuseKind::ConcurrentWrite);
        assert_eq!(
            crash.site,
            Some(CodeSite::new(
                "github.com/acme/shop.(*Cart).Add",
                "/src/shop/my cart.go",
                88
            ))
        );
        assert_eq!(crash.addresses, vec![0xc0000940f0]);
    }

    #[test]
    fn a_panic_with_a_nil_map_argument_is_a_nil_map_write() {
        let log = "panic: some wrapped error\n\ngoroutine 1 [running]:
panic({0x4ce480?, 0x50ed10?})
\t/go/src/runtime/panic.go:810 +0x168
runtime.mapassign_fast64(0x4cda60, 0x0, 0x7)
\t/go/src/runtime/map_fast64.go:93 +0x3db
main.main()
\t/src/main.go:9 +0xbc5
";
        let Classification::Map(crash) = classify(log) else {
            panic!("a map crash")
        };
        assert_eq!(crash.kind, MisuseKind::NilMapWrite);
        assert!(crash.addresses.is_empty(), "0x0 names no map");
        assert_eq!(crash.site.unwrap().line, 9);
    }

    #[test]
    fn fatal_message_lines_are_understood_when_present() {
        let log = "fatal error: concurrent map iteration and map write\n\ngoroutine 6 [running]:
main.iterate(...)
\t/src/main.go:89
";
        let Classification::Map(crash) = classify(log) else {
            panic!("a map crash")
        };
        assert_eq!(crash.kind, MisuseKind::IterateWhileMutating);
        // A fatal error that is not a map's.
        let log = "fatal error: sync: unlock of unlocked mutex\n\ngoroutine 6 [running]:
sync.fatal({0x4e7929?, 0x0?})
\t/go/src/runtime/panic.go:1007 +0x18
main.main()
\t/src/main.go:5 +0x1
";
        assert!(matches!(classify(log), Classification::Other(_)));
    }

    #[test]
    fn garbage_and_truncated_logs_are_other_crashes() {
        for log in [
            "",
            "\n",
            "goroutine",
            "goroutine 1 [running]:\n",
            "goroutine 1 [running]:\nruntime.fatal(\n",
            "goroutine 1 [running]:\nruntime.fatal({0x1})\nruntime.mapassign(",
            "\u{0}\u{1}((((",
            "goroutine 1 [running]:\n\t:::\n)(\n",
        ] {
            match classify(log) {
                Classification::Other(other) => assert!(other.site.is_none(), "{log:?}"),
                Classification::Map(crash) => panic!("{log:?}: {crash:?}"),
            }
        }
        // Runtime frames alone, cut before the application frame.
        let log = "goroutine 1 [running]:\nruntime.fatal({0x1})\n\t/go/src/runtime/panic.go:1 +0x1\nruntime.mapassign(0x1, 0xc000010000, 0x2)\n";
        let Classification::Map(crash) = classify(log) else {
            panic!("a map crash")
        };
        assert_eq!((crash.site, crash.addresses), (None, vec![0xc000010000]));
    }

    #[test]
    fn frame_parsing() {
        assert_eq!(
            parse_call("main.(*handler).serve(...)"),
            Some(("main.(*handler).serve", "..."))
        );
        assert_eq!(
            parse_call("runtime.goexit({})"),
            Some(("runtime.goexit", "{}"))
        );
        assert_eq!(parse_call("no call"), None);
        assert_eq!(parse_call("()"), None);
        assert_eq!(
            parse_location("\t/a b/c:d.go:12 +0x4f fp=0x1 sp=0x2 pc=0x3"),
            Some(("/a b/c:d.go", 12))
        );
        assert_eq!(parse_location("\tC:/src/x.go:7"), Some(("C:/src/x.go", 7)));
        assert_eq!(parse_location("/no/tab.go:1"), None);
        let frame = Frame {
            function: "runtime.mapassign_faststr",
            args: "0x4cdb20, 0xc0000940f0, {0x5a1c18, 0x1}",
            location: None,
        };
        assert_eq!(frame.arg(2), Some("{0x5a1c18, 0x1}"));
        assert_eq!(frame.arg(3), None);
        assert_eq!(frame.map_address(), Some(0xc0000940f0));
        let unsure = Frame {
            args: "0xc000042f80?, 0xc0000940f0?, {0x51a8e8?, 0x0?}",
            ..frame
        };
        assert_eq!(unsure.map_address(), None);
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(parse_hex("0x11112222333344445"), None);
        assert_eq!(parse_hex("0xC0"), Some(0xc0));
    }

    #[test]
    fn metadata_errors_name_the_field() {
        let good = r#"{"version":1,"app":"checkout","instance":"pod-1","started_at":"2026-11-22T10:00:00.123456789Z","pid":1,"maps":[{"name":"sessions","labels":{"tenant":"acme"},"address":"0xc000094300"}],"future":true}"#;
        let metadata = parse_metadata(good.as_bytes()).unwrap();
        assert_eq!(metadata.maps[0].address(), Some(0xc000094300));
        let field = |json: &str| match parse_metadata(json.as_bytes()).unwrap_err() {
            MetadataError::Invalid { field, .. } | MetadataError::Json { field, .. } => field,
            other => other.to_string(),
        };
        assert_eq!(field(&good.replace("\"version\":1", "\"version\":2")), "version 2 is not supported (this sidecar reads version 1): upgrade the mapscope sidecar");
        assert_eq!(field(&good.replace("\"checkout\"", "\"a/b\"")), "app");
        assert_eq!(field(&good.replace("\"pod-1\"", "\"\"")), "instance");
        assert_eq!(
            field(&good.replace("2026-11-22T10", "yesterday")),
            "started_at"
        );
        assert_eq!(
            field(&good.replace("\"tenant\"", "\"te-nant\"")),
            "maps[0].labels.te-nant"
        );
        assert_eq!(
            field(&good.replace("\"tenant\"", "\"source\"")),
            "maps[0].labels.source"
        );
        assert_eq!(
            field(&good.replace("\"sessions\"", "\"_overflow\"")),
            "maps[0].name"
        );
        assert_eq!(
            field(&good.replace("0xc000094300", "c000094300")),
            "maps[0].address"
        );
        assert_eq!(field(&good.replace("\"pid\":1", "\"pid\":-1")), "pid");
        assert_eq!(field(&good.replace("\"pid\":1,", "")), ".");
        assert_eq!(field("{"), ".");
        assert_eq!(field(&format!("{good} {{}}")), ".");
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_METADATA_BYTES));
        assert!(matches!(
            parse_metadata(big.as_bytes()),
            Err(MetadataError::TooLarge {
                limit: MAX_METADATA_BYTES,
                ..
            })
        ));
    }
}
