//! `GET /`: a small page for people.

use std::fmt::Write;

use crate::registry::RegistrySnapshot;

/// The page's `Content-Security-Policy`: nothing may load or run, not even
/// from this origin (`default-src 'none'`), except the one inline
/// `<style>` of [`page`]; the page cannot be framed, and has no forms or
/// base URL to hijack. Inline style rather than a hash of it, because the
/// style is static and a hash would have to be kept equal to it by hand;
/// with every fetch blocked, injected CSS could not send anything anywhere
/// (and map names and labels are escaped anyway).
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bytes(n: usize) -> String {
    crate::detect::human_bytes(n as f64)
}

/// The landing page: what this is, the links, and a table of maps.
pub(super) fn page(snapshot: &RegistrySnapshot) -> String {
    let mut rows = String::new();
    let mut count = 0;
    for map in &snapshot.maps {
        count += 1;
        let s = &map.stats;
        let mut name = escape(&map.id.name);
        if let Some(source) = map.id.reporter() {
            let _ = write!(name, " <small>({})</small>", escape(&source));
        }
        let labels: Vec<String> = map
            .id
            .labels
            .iter()
            .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
            .collect();
        let growth = match s.growth {
            Some(g) => format!("{} {}/{}", g.kind, g.evacuated_old_buckets, g.old_buckets),
            None => "—".into(),
        };
        let conditions: Vec<String> = map
            .conditions
            .iter()
            .map(|c| {
                format!(
                    "<span class=\"cond\" title=\"{}\">{}</span>",
                    escape(&c.details),
                    c.kind
                )
            })
            .collect();
        let _ = writeln!(
            rows,
            "<tr><td>{name}{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{growth}</td><td>{}</td></tr>",
            if map.dropped {
                " <small>(dropped)</small>"
            } else if map.misuse_only {
                " <small>(known from crashes only)</small>"
            } else {
                ""
            },
            if labels.is_empty() { "—".into() } else { labels.join(", ") },
            format_args!("{} / {}", s.entries, s.buckets),
            s.load_factor,
            bytes(s.memory_bytes),
            if conditions.is_empty() { "—".into() } else { conditions.join(" ") },
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mapscope</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .3rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }}
.cond {{ background: #fde2e1; color: #a11; border-radius: 3px; padding: 0 .3rem; }}
</style></head><body>
<h1>mapscope</h1>
<p>What hash maps do to this service's latency and memory: growth, evacuation, load factor, memory and misuse of every instrumented map.</p>
<p><a href="/metrics">/metrics</a> (Prometheus) · <a href="/api/v1/maps">/api/v1/maps</a> (JSON) · <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a></p>
<h2>{count} maps</h2>
<table><tr><th>map</th><th>labels</th><th>entries / buckets</th><th>load factor</th><th>memory</th><th>growth</th><th>active conditions</th></tr>
{rows}</table>
</body></html>
"#
    )
}
