//! A minimal JSON writer for the latency and memory reports (the benches
//! take no serialisation dependency), and where reports go.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

/// A JSON value.
pub(crate) enum Json {
    Null,
    Int(i128),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// An object with fields in the given order.
    pub(crate) fn obj<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Obj(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn write(&self, out: &mut String, indent: usize) -> fmt::Result {
        let pad = |out: &mut String, level: usize| -> fmt::Result {
            write!(out, "\n{:width$}", "", width = 2 * level)
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Int(v) => write!(out, "{v}")?,
            Json::Float(v) if v.is_finite() => write!(out, "{v}")?,
            Json::Float(_) => out.push_str("null"),
            Json::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if u32::from(c) < 0x20 => write!(out, "\\u{:04x}", u32::from(c))?,
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, indent + 1)?;
                    item.write(out, indent + 1)?;
                }
                if !items.is_empty() {
                    pad(out, indent)?;
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    pad(out, indent + 1)?;
                    Json::Str(key.clone()).write(out, indent + 1)?;
                    out.push_str(": ");
                    value.write(out, indent + 1)?;
                }
                if !fields.is_empty() {
                    pad(out, indent)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write(&mut out, 0)?;
        f.write_str(&out)
    }
}

impl From<u64> for Json {
    fn from(v: u64) -> Self {
        Json::Int(v.into())
    }
}

impl From<usize> for Json {
    fn from(v: usize) -> Self {
        Json::Int(v as i128)
    }
}

impl From<f64> for Json {
    fn from(v: f64) -> Self {
        Json::Float(v)
    }
}

impl From<&str> for Json {
    fn from(v: &str) -> Self {
        Json::Str(v.to_owned())
    }
}

/// `target/mapscope-bench/` (under `CARGO_TARGET_DIR` when set).
pub(crate) fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("mapscope-bench")
}

/// Writes `value` to `out_dir()/name` and says where; a failure to write is
/// reported, not fatal (the table is already printed).
pub(crate) fn write(name: &str, value: &Json) {
    let dir = out_dir();
    let path = dir.join(name);
    let result =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, format!("{value}\n")));
    match result {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(err) => eprintln!("\ncould not write {}: {err}", path.display()),
    }
}
