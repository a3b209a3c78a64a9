//! `GET /`: a small page for people.

use std::fmt::Write;

use crate::registry::RegistrySnapshot;

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
