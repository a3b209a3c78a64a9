//! The one parser of the Prometheus text exposition format (0.0.4) in the
//! tests, with its own unit tests below.
//!
//! It is strict on purpose: a `# TYPE` after its family's samples, a
//! second `# HELP`/`# TYPE`, a duplicate series, an invalid name or escape
//! is an error, because the tests use it to prove that mapscope's output
//! is well formed, not only to read values from it.
//!
//! No maintained crate fits. `prometheus-parse` (and `prometheus-scrape`,
//! which it copies) split label pairs on `,` and `=` without reading
//! escapes, so `path="C:\\x",err="a,b"` comes out wrong; they fold a
//! histogram's buckets into one value and drop every label but `le`; and
//! they skip malformed lines instead of failing. `openmetrics-parser`
//! targets OpenMetrics and is unmaintained.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// The series name (`_bucket`, `_sum`, `_count` included).
    pub(crate) name: String,
    /// Its labels.
    pub(crate) labels: BTreeMap<String, String>,
    /// Its value.
    pub(crate) value: f64,
}

impl Sample {
    /// The value of label `name`, if set.
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// A parsed exposition: `# HELP` and `# TYPE` by family, and every sample
/// in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exposition {
    /// Family name to help text.
    pub(crate) help: BTreeMap<String, String>,
    /// Family name to type (`gauge`, `counter`, ...).
    pub(crate) types: BTreeMap<String, String>,
    /// Every sample, in order.
    pub(crate) samples: Vec<Sample>,
}

impl Exposition {
    /// Samples named exactly `name`.
    pub(crate) fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Samples named `name` whose labels include every pair of `labels`,
    /// in exposition order.
    pub(crate) fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .collect()
    }

    /// The value of the one sample named `name` whose labels include
    /// `labels`; panics when there is none or several.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.matching(name, labels);
        match found.as_slice() {
            [one] => one.value,
            [] => panic!("no sample {name}{labels:?}"),
            many => panic!("{} samples match {name}{labels:?}: {many:?}", many.len()),
        }
    }

    /// The values of label `label` over the samples of `name`.
    pub(crate) fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.series(name)
            .filter_map(|s| s.label(label).map(str::to_owned))
            .collect()
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// The family a series belongs to, given the families declared so far.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
            {
                return base;
            }
        }
    }
    name
}

/// Parses `{a="1",b="2"}`, returning the labels and the rest of the line.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text
        .strip_prefix('{')
        .ok_or_else(|| "expected '{'".to_owned())?;
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("label without '=' in {rest:?}"))?;
        let name = rest[..eq].trim();
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("value of label {name:?} is not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {name:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("invalid escape {other:?} in label {name:?}")),
                },
                Some((_, '\n')) => return Err(format!("raw newline in label {name:?}")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name:?} given twice"));
        }
        rest = &rest[end + 1..];
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name:?}"));
        }
    }
}

/// Parses the text exposition format (version 0.0.4) strictly: every line
/// must be a `# HELP`, a `# TYPE`, another comment, blank, or a
/// well-formed sample; a family's `# TYPE` comes at most once and before
/// its samples; no series appears twice.
pub(crate) fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut seen = BTreeSet::new();
    let mut sampled_families = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        let at = |message: String| format!("line {}: {message}: {line:?}", number + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            if let Some(rest) = comment.strip_prefix("HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                if !valid_metric_name(name) {
                    return Err(at(format!("invalid metric name {name:?}")));
                }
                if out.help.insert(name.to_owned(), help.to_owned()).is_some() {
                    return Err(at(format!("second # HELP for {name}")));
                }
            } else if let Some(rest) = comment.strip_prefix("TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| at("# TYPE without a type".into()))?;
                if !valid_metric_name(name) {
                    return Err(at(format!("invalid metric name {name:?}")));
                }
                if !matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(at(format!("unknown type {kind:?}")));
                }
                if sampled_families.contains(name) {
                    return Err(at(format!("# TYPE for {name} after its samples")));
                }
                if out.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(at(format!("second # TYPE for {name}")));
                }
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| at("sample without a value".into()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(at(format!("invalid metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("expected a space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value_text = fields.next().unwrap_or_default();
        let value =
            parse_value(value_text).ok_or_else(|| at(format!("invalid value {value_text:?}")))?;
        if let Some(timestamp) = fields.next() {
            if timestamp.parse::<i64>().is_err() {
                return Err(at(format!("invalid timestamp {timestamp:?}")));
            }
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let key = format!("{name}{labels:?}");
        if !seen.insert(key) {
            return Err(at("duplicate series".into()));
        }
        sampled_families.insert(family_of(name, &out.types).to_owned());
        out.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_exposition;

    #[test]
    fn reads_help_type_labels_with_escapes_and_histograms() {
        let text = concat!(
            "# HELP m_seconds Time, with a \\\\ in the help.\n",
            "# TYPE m_seconds histogram\n",
            "m_seconds_bucket{map=\"a\\\\b\\\"c\\nd,e}\",le=\"0.5\"} 1\n",
            "m_seconds_bucket{map=\"a\\\\b\\\"c\\nd,e}\",le=\"+Inf\"} 2\n",
            "m_seconds_sum{map=\"a\\\\b\\\"c\\nd,e}\"} 0.75\n",
            "m_seconds_count{map=\"a\\\\b\\\"c\\nd,e}\"} 2\n",
            "# TYPE up gauge\n",
            "up 1 1700000000000\n",
            "nan_gauge NaN\n",
        );
        let exposition = parse_exposition(text).expect("valid exposition");
        assert_eq!(exposition.types["m_seconds"], "histogram");
        assert_eq!(
            exposition.help["m_seconds"],
            "Time, with a \\\\ in the help."
        );
        let map = "a\\b\"c\nd,e}";
        assert_eq!(
            exposition.value("m_seconds_bucket", &[("map", map), ("le", "+Inf")]),
            2.0
        );
        assert_eq!(exposition.value("m_seconds_sum", &[("map", map)]), 0.75);
        assert_eq!(exposition.value("up", &[]), 1.0);
        assert!(exposition.value("nan_gauge", &[]).is_nan());
        assert_eq!(exposition.label_values("m_seconds_count", "map").len(), 1);
    }

    #[test]
    fn rejects_what_prometheus_rejects_or_mapscope_must_not_write() {
        for (text, why) in [
            ("m 1\nm 2\n", "duplicate series"),
            ("m 1\n# TYPE m gauge\n", "after its samples"),
            ("# TYPE m gauge\n# TYPE m gauge\n", "second # TYPE"),
            ("# HELP m a\n# HELP m b\n", "second # HELP"),
            ("# TYPE m gauge2\n", "unknown type"),
            ("1m 1\n", "invalid metric name"),
            ("m{1a=\"x\"} 1\n", "invalid label name"),
            ("m{a=\"x\",a=\"y\"} 1\n", "given twice"),
            ("m{a=\"\\t\"} 1\n", "invalid escape"),
            ("m{a=x} 1\n", "not quoted"),
            ("m{a=\"x\" 1\n", "expected ','"),
            ("m{a=\"x\n", "unterminated"),
            ("m one\n", "invalid value"),
            ("m 1 soon\n", "invalid timestamp"),
            ("m 1 2 3\n", "trailing fields"),
            ("m\n", "without a value"),
        ] {
            let error = parse_exposition(text).expect_err(text);
            assert!(error.contains(why), "{text:?}: {error}");
        }
    }
}
