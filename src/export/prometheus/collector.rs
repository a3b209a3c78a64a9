//! The `prometheus` crate's `Collector` over the same samples the text
//! writer renders (feature `prometheus`).

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType as ProtoType,
};

use super::{samples, Labels, MapscopeCollector, Sample};
use crate::export::catalog::{HistogramSample, MetricDef, MetricType, Scope, CATALOG};

/// The descriptors of every catalog metric.
pub(super) fn descs() -> Vec<Desc> {
    CATALOG
        .iter()
        .map(|m| {
            let mut labels: Vec<String> = match m.scope {
                Scope::Map => vec!["map".into()],
                Scope::Process | Scope::Ingest => vec![],
            };
            labels.extend(m.labels.iter().map(|l| l.to_string()));
            // UNWRAP: catalog names, help and labels are valid; a unit test renders them all.
            Desc::new(m.name.into(), m.help.into(), labels, HashMap::new())
                .expect("catalog metric declarations are valid")
        })
        .collect()
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_owned());
    pair.set_value(value.to_owned());
    pair
}

fn proto_labels(labels: &Labels<'_>) -> Vec<LabelPair> {
    let mut pairs = Vec::new();
    labels.for_each(|n, v| pairs.push(label(n, v)));
    pairs
}

fn value_metric(def: &MetricDef, labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut metric = Metric::from_label(labels);
    match def.kind {
        MetricType::Counter => {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        }
        _ => {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
    }
    metric
}

fn histogram_metric(labels: Vec<LabelPair>, sample: HistogramSample<'_>) -> Metric {
    let mut h = Histogram::default();
    h.set_sample_count(sample.count);
    h.set_sample_sum(sample.sum);
    h.set_bucket(
        sample
            .bounds
            .iter()
            .zip(sample.cumulative_counts)
            .map(|(bound, count)| {
                let mut b = Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(*count);
                b
            })
            .collect(),
    );
    let mut metric = Metric::from_label(labels);
    metric.set_histogram(h);
    metric
}

impl Collector for MapscopeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = self.registry.snapshot();
        CATALOG
            .iter()
            .map(|def| {
                let mut family = MetricFamily::default();
                family.set_name(def.name.to_owned());
                family.set_help(def.help.to_owned());
                family.set_field_type(match def.kind {
                    MetricType::Gauge => ProtoType::GAUGE,
                    MetricType::Counter => ProtoType::COUNTER,
                    MetricType::Histogram => ProtoType::HISTOGRAM,
                });
                let mut metrics = Vec::new();
                samples(def, &snapshot, &mut |labels, sample| {
                    metrics.push(match sample {
                        Sample::Value(value) => value_metric(def, proto_labels(labels), value),
                        Sample::Histogram(h) => histogram_metric(proto_labels(labels), h),
                    });
                });
                family.set_metric(metrics);
                family
            })
            // The text format has no way to say "no samples"; a family
            // without any (no reported source yet) is left out.
            .filter(|family| !family.get_metric().is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    /// The direct text writer and the prometheus crate's encoder of the
    /// collector's families give the same samples.
    #[test]
    fn render_agrees_with_the_collector() {
        use prometheus::Encoder;
        let registry = Registry::new();
        let mut map = crate::InstrumentedMap::builder("m\"quoted\\")
            .label("tenant", "a\\b\"c")
            .register(&registry)
            .unwrap();
        for i in 0..10_000u32 {
            map.insert(i, i);
        }
        map.publish();
        let samples = |text: &str| {
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| {
                    let (series, value) = l.rsplit_once(' ').unwrap();
                    format!("{series} {}", value.parse::<f64>().unwrap())
                })
                .collect();
            lines.sort();
            lines
        };
        let collector = MapscopeCollector::new(registry);
        let mut encoded = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&collector.collect(), &mut encoded)
            .unwrap();
        let rendered = collector.render();
        assert_eq!(
            samples(&rendered),
            samples(&String::from_utf8(encoded).unwrap())
        );
    }
}
