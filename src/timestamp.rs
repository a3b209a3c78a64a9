//! RFC 3339 timestamps: one parser and one formatter for the protocol, the
//! reporter, Go crash files and the demo.
//!
//! Both are the `time` crate's `Rfc3339` format. `time` over `jiff`: its
//! `Rfc3339` is RFC 3339 and nothing more (jiff's default parser reads the
//! wider Temporal/ISO 8601 syntax, so a strict RFC 3339 reading would be
//! ours to write again), it range-checks every field (no 2026-02-31, no
//! `+99:99`, `:60` only at the end of a UTC day), and it is small: no time
//! zone database, which a protocol that carries numeric offsets does not
//! need.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use mapscope::timestamp::{format_rfc3339, parse_rfc3339, Timestamp};
//!
//! let t = parse_rfc3339("2026-11-22T01:00:00.5+01:00").unwrap();
//! assert_eq!(t, UNIX_EPOCH + Duration::from_millis(1_795_305_600_500));
//! assert_eq!(format_rfc3339(t), "2026-11-22T00:00:00.5Z");
//! assert!(parse_rfc3339("2026-02-31T00:00:00Z").is_err());
//! assert!(parse_rfc3339("2026-11-22T00:00:00+99:99").is_err());
//! let at: Timestamp = "2026-11-22T00:00:00Z".parse().unwrap();
//! assert_eq!(at.to_string(), "2026-11-22T00:00:00Z");
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::OffsetDateTime;

/// The start of every [`TimestampError`] message: the ingest endpoint
/// tells a bad timestamp (`invalid_timestamp`) from a wrong JSON type by it.
pub(crate) const INVALID_TIMESTAMP: &str = "not an RFC 3339 timestamp: ";

/// A string that is not an RFC 3339 timestamp with a zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{INVALID_TIMESTAMP}{text:?} ({reason}); send e.g. \"2026-11-22T10:00:00Z\" or \"2026-11-22T11:00:00.123+01:00\"")]
pub struct TimestampError {
    text: String,
    reason: String,
}

/// Parses an RFC 3339 timestamp (`2026-11-22T10:00:00Z`,
/// `2026-11-22T10:00:00.123+01:00`) into a point in time.
///
/// Years 0000 to 9999, any offset from `-23:59` to `+23:59`; `T` and `Z`
/// in either case. RFC 3339 lets applications write a space for the `T`;
/// JSON Schema's `date-time` does not, and neither does this.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, TimestampError> {
    let error = |reason: String| TimestampError {
        text: text.to_owned(),
        reason,
    };
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
        return Err(error("the date and the time are joined by T".into()));
    }
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| error(e.to_string()))?;
    Ok(SystemTime::from(parsed))
}

/// The range [`format_rfc3339`] can write: RFC 3339 has four-digit years.
const FIRST: OffsetDateTime = datetime!(0000-01-01 00:00:00 UTC);
const LAST: OffsetDateTime = datetime!(9999-12-31 23:59:59.999_999_999 UTC);

/// Formats a point in time as RFC 3339 in UTC (`2026-11-22T10:00:00.25Z`),
/// with as many fractional digits as it has (none for whole seconds). A
/// time outside years 0000 to 9999 is written as the nearest end of that
/// range.
pub fn format_rfc3339(at: SystemTime) -> String {
    let nanos = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => i128::try_from(before.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    };
    let nanos = nanos.clamp(FIRST.unix_timestamp_nanos(), LAST.unix_timestamp_nanos());
    // UNWRAP: clamped into years 0000..=9999, which both calls accept.
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .expect("a time within years 0000..=9999 is representable")
        .format(&Rfc3339)
        .expect("a UTC time within years 0000..=9999 formats as RFC 3339")
}

/// A point in time that travels as an RFC 3339 string: what the protocol's
/// `at`, `started_at` and `sent_at` hold. Parsing happens while the JSON is
/// read, so an impossible date is an error naming its field; the offset is
/// not kept (it serialises back in UTC, as the same instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    /// Now, on the system clock.
    pub fn now() -> Self {
        Timestamp(SystemTime::now())
    }

    /// The point in time.
    pub fn system_time(self) -> SystemTime {
        self.0
    }
}

impl From<SystemTime> for Timestamp {
    fn from(at: SystemTime) -> Self {
        Timestamp(at)
    }
}

impl From<Timestamp> for SystemTime {
    fn from(at: Timestamp) -> Self {
        at.0
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_rfc3339(text).map(Timestamp)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_rfc3339(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_rfc3339(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(all(test, feature = "sidecar"))]
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }
}

/// Seconds since the Unix epoch, negative before it: for tests and logs.
#[cfg(test)]
fn unix_seconds(at: SystemTime) -> f64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(text: &str) -> Option<f64> {
        parse_rfc3339(text).ok().map(unix_seconds)
    }

    #[test]
    fn parses_rfc3339_with_any_zone() {
        assert_eq!(at("2026-11-22T00:00:00Z"), Some(1_795_305_600.0));
        assert_eq!(at("2026-11-22t00:00:00z"), Some(1_795_305_600.0));
        assert_eq!(at("2026-11-22T01:00:00+01:00"), Some(1_795_305_600.0));
        assert_eq!(at("2026-11-21T23:00:00-01:00"), Some(1_795_305_600.0));
        assert_eq!(at("2026-11-22T00:00:00-00:00"), Some(1_795_305_600.0));
        assert_eq!(at("2026-11-22T00:00:00.5Z"), Some(1_795_305_600.5));
        assert_eq!(at("1969-12-31T23:59:59Z"), Some(-1.0));
        // A leap second, at the end of a UTC day, is the last instant of it.
        assert!(at("2026-12-31T23:59:60Z").is_some());
        // The ends of the range, with the widest offsets.
        assert!(at("0000-01-01T00:00:00+23:59").is_some());
        assert!(at("9999-12-31T23:59:59-23:59").is_some());
        assert!(at("2028-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn rejects_what_rfc3339_does_not_allow() {
        for bad in [
            "",
            "yesterday",
            "1795305600",
            "2026-11-22",
            "2026-11-22T00:00:00",
            "2026-11-22T00:00Z",
            "2026-11-22 00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-31T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T23:60:00Z",
            "2026-11-22T23:59:60Z",
            "2026-11-22T00:00:00+99:99",
            "2026-11-22T00:00:00+24:00",
            "2026-11-22T00:00:00+01:60",
            "2026-11-22T00:00:00+0100",
            "2026-11-22T00:00:00.Z",
            "x026-11-22T00:00:00Z",
            "+2026-11-22T00:00:00Z",
            "2026-11-22T00:00:00Z trailing",
        ] {
            let error = parse_rfc3339(bad).expect_err(bad);
            assert!(error.to_string().starts_with(INVALID_TIMESTAMP), "{error}");
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn formats_utc_and_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_305_600);
        assert_eq!(format_rfc3339(t), "2026-11-22T00:00:00Z");
        assert_eq!(
            format_rfc3339(t + Duration::from_micros(250)),
            "2026-11-22T00:00:00.00025Z"
        );
        for t in [
            t,
            t + Duration::from_nanos(1),
            UNIX_EPOCH - Duration::from_secs(86_400 * 365 * 100),
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Ok(t));
        }
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn formats_out_of_range_times_at_the_ends_of_the_range() {
        let far = Duration::from_secs(86_400 * 366 * 10_000);
        assert_eq!(
            format_rfc3339(UNIX_EPOCH + far),
            "9999-12-31T23:59:59.999999999Z"
        );
        assert_eq!(format_rfc3339(UNIX_EPOCH - far), "0000-01-01T00:00:00Z");
    }

    #[test]
    fn timestamps_serialise_as_strings() {
        let at: Timestamp = serde_json::from_str("\"2026-11-22T01:00:00+01:00\"").unwrap();
        assert_eq!(
            serde_json::to_string(&at).unwrap(),
            "\"2026-11-22T00:00:00Z\""
        );
        let error = serde_json::from_str::<Timestamp>("\"2026-02-31T00:00:00Z\"").unwrap_err();
        assert!(error.to_string().starts_with(INVALID_TIMESTAMP), "{error}");
        assert!(serde_json::from_str::<Timestamp>("1795305600").is_err());
    }
}
