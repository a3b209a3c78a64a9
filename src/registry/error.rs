//! Registration errors and the validation of names and labels.

/// Labels a map may not set: the ones mapscope adds itself (`map`, `kind`,
/// and `source` and `source_instance`, which name the process that
/// reported a map to the sidecar; `source_instance` rather than
/// `instance`, which Prometheus sets on every series of a scrape target),
/// and the ones the text exposition format keeps for histograms (`le`) and
/// summaries (`quantile`): `promtool check metrics` fails an exposition
/// where another metric type carries them.
pub const RESERVED_LABELS: [&str; 6] =
    ["map", "source", "source_instance", "kind", "le", "quantile"];

/// Most labels one map may carry.
pub const MAX_LABELS: usize = 16;

/// Longest map name or label value, in characters (Unicode scalar values,
/// as JSON Schema's `maxLength` counts them, so the protocol's OpenAPI
/// document states the limit exactly; at most 4 bytes each).
pub const MAX_VALUE_CHARS: usize = 256;

/// Why a map could not be registered. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The map name is empty, too long, or has control characters.
    #[error(
        "invalid map name {name:?}: use 1 to {MAX_VALUE_CHARS} characters without control characters"
    )]
    InvalidMapName {
        /// The rejected name.
        name: String,
    },
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*` or starts with `__`.
    #[error("invalid label name {name:?}: use [a-zA-Z_][a-zA-Z0-9_]* and do not start with \"__\" (reserved by Prometheus)")]
    InvalidLabelName {
        /// The rejected label name.
        name: String,
    },
    /// A label name mapscope sets itself.
    #[error("label {name:?} is reserved (mapscope sets map, source, source_instance and kind itself; the Prometheus text format keeps le for histograms and quantile for summaries): rename it, for example to \"{name}_name\"")]
    ReservedLabel {
        /// The rejected label name.
        name: String,
    },
    /// The same label name given twice.
    #[error("label {name:?} is given twice: give each label once")]
    DuplicateLabel {
        /// The repeated label name.
        name: String,
    },
    /// A label value is too long or has control characters.
    #[error("value of label {name:?} is invalid: use at most {MAX_VALUE_CHARS} characters without control characters")]
    InvalidLabelValue {
        /// The label whose value was rejected.
        name: String,
    },
    /// More labels than [`MAX_LABELS`].
    #[error("{count} labels given, the limit is {MAX_LABELS}: drop labels, or fold them into the map name")]
    TooManyLabels {
        /// How many were given.
        count: usize,
    },
    /// A live map with the same name and labels is registered.
    #[error("a map named {name:?} with labels {labels:?} is already registered: use a distinct name or label, or drop the first map")]
    Duplicate {
        /// The name.
        name: String,
        /// The labels.
        labels: Vec<(String, String)>,
    },
}

fn valid_value(value: &str) -> bool {
    // `nth` stops after the limit: a megabyte value costs no more than a short one.
    value.chars().nth(MAX_VALUE_CHARS).is_none() && !value.chars().any(char::is_control)
}

/// Whether `name` is a valid Prometheus label name that mapscope leaves to
/// users.
///
/// ```
/// use mapscope::registry::validate_label_name;
/// assert!(validate_label_name("tenant").is_ok());
/// assert!(validate_label_name("map").is_err());
/// assert!(validate_label_name("__name").is_err());
/// assert!(validate_label_name("9lives").is_err());
/// ```
pub fn validate_label_name(name: &str) -> Result<(), RegisterError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.starts_with("__")
    {
        return Err(RegisterError::InvalidLabelName {
            name: name.to_owned(),
        });
    }
    if RESERVED_LABELS.contains(&name) {
        return Err(RegisterError::ReservedLabel {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Validates a map name and its labels; returns the labels sorted by name.
pub fn validate(
    name: &str,
    labels: &[(String, String)],
) -> Result<Vec<(String, String)>, RegisterError> {
    if name.is_empty()
        || !valid_value(name)
        || name.starts_with("__")
        || name == super::OVERFLOW_MAP
    {
        return Err(RegisterError::InvalidMapName {
            name: name.to_owned(),
        });
    }
    if labels.len() > MAX_LABELS {
        return Err(RegisterError::TooManyLabels {
            count: labels.len(),
        });
    }
    let mut sorted = labels.to_vec();
    sorted.sort();
    for (i, (label, value)) in sorted.iter().enumerate() {
        validate_label_name(label)?;
        if !valid_value(value) {
            return Err(RegisterError::InvalidLabelValue {
                name: label.clone(),
            });
        }
        if i > 0 && sorted[i - 1].0 == *label {
            return Err(RegisterError::DuplicateLabel {
                name: label.clone(),
            });
        }
    }
    Ok(sorted)
}
