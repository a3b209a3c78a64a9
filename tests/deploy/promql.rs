//! Alert and dashboard queries, read from a real PromQL parse tree
//! (`promql-parser`): every metric they select is declared in the catalog,
//! every matcher, grouping and vector-matching label is one the series
//! have, and the labels a query's result carries are known, so a legend
//! can be checked against them.

use std::collections::BTreeSet;
use std::time::Duration;

use mapscope::export::catalog::{self, MetricType, Scope};
use promql_parser::label::{MatchOp, METRIC_NAME};
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};

/// Labels a scrape adds to every series (Kubernetes service discovery
/// included), which queries may use on any metric.
const TARGET_LABELS: [&str; 6] = [
    "job",
    "instance",
    "namespace",
    "pod",
    "container",
    "endpoint",
];

/// What a query reads.
#[derive(Debug, Default)]
pub(crate) struct Query {
    /// Every series name it selects, with the label names of its matchers.
    pub(crate) selectors: Vec<(String, Vec<String>)>,
    /// The labels its result series may carry.
    pub(crate) labels: BTreeSet<String>,
    /// Every range selector's range, with the function applied to it.
    pub(crate) ranges: Vec<(String, Duration)>,
}

/// Parses `expr`; panics with `context` if it is not PromQL.
pub(crate) fn parse(expr: &str, context: &str) -> Query {
    let tree = parser::parse(expr)
        .unwrap_or_else(|e| panic!("{context}: {expr:?} does not parse as PromQL: {e}"));
    let mut query = Query::default();
    query.labels = walk(&tree, None, &mut query, context, expr);
    query
}

/// The labels `series` (a catalog metric or a histogram's series) has.
pub(crate) fn labels_of(series: &str) -> BTreeSet<String> {
    let def = catalog::owner(series)
        .unwrap_or_else(|| panic!("{series} is not declared in src/export/catalog.rs"));
    let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
    labels.extend(def.labels.iter().map(|l| l.to_string()));
    if def.scope == Scope::Map {
        labels.extend([
            "map".to_owned(),
            "source".to_owned(),
            mapscope::export::prometheus::SOURCE_INSTANCE.to_owned(),
        ]);
    }
    if def.kind == MetricType::Histogram && series.ends_with("_bucket") {
        labels.insert("le".to_owned());
    }
    labels
}

/// Checks that every metric in `expr` is declared and queried with labels
/// it has; returns what the query reads.
pub(crate) fn check_expr(expr: &str, context: &str) -> Query {
    let query = parse(expr, context);
    assert!(
        query
            .selectors
            .iter()
            .any(|(name, _)| name.starts_with("mapscope_")),
        "{context}: {expr:?} queries no mapscope_* metric"
    );
    query
}

/// The declared metric of a promtool input series (`name{labels}`). Its
/// labels are not checked: a per-map series also carries the map's own.
pub(crate) fn series_metric(series: &str, context: &str) -> String {
    let tree = parser::parse(series)
        .unwrap_or_else(|e| panic!("{context}: {series:?} does not parse as PromQL: {e}"));
    let Expr::VectorSelector(vs) = tree else {
        panic!("{context}: {series:?} is not a series selector");
    };
    let (name, _) = selector(&vs, context, series);
    assert!(
        catalog::owner(&name).is_some(),
        "{context}: {name} is not declared in src/export/catalog.rs"
    );
    name
}

fn selector(vs: &VectorSelector, context: &str, expr: &str) -> (String, Vec<String>) {
    let name = vs
        .name
        .clone()
        .or_else(|| {
            let by_name = vs.matchers.find_matchers(METRIC_NAME);
            (by_name.len() == 1 && by_name[0].op == MatchOp::Equal)
                .then(|| by_name[0].value.clone())
        })
        .unwrap_or_else(|| panic!("{context}: a selector without a metric name in {expr:?}"));
    let labels = vs
        .matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
        .map(|m| m.name.clone())
        .filter(|l| l != METRIC_NAME)
        .collect();
    (name, labels)
}

/// Records what `node` reads and returns the labels its result carries.
/// `function` is the call a range selector is an argument of.
fn walk(
    node: &Expr,
    function: Option<&str>,
    query: &mut Query,
    context: &str,
    expr: &str,
) -> BTreeSet<String> {
    let has = |needed: &[String], available: &BTreeSet<String>, what: &str| {
        for label in needed {
            assert!(
                available.contains(label),
                "{context}: {what} ({label:?}) on series that lack it (they have {available:?}); in {expr:?}"
            );
        }
    };
    match node {
        Expr::VectorSelector(vs) => select(vs, query, context, expr),
        Expr::MatrixSelector(ms) => {
            query
                .ranges
                .push((function.unwrap_or("").to_owned(), ms.range));
            select(&ms.vs, query, context, expr)
        }
        Expr::Aggregate(a) => {
            if let Some(param) = &a.param {
                walk(param, None, query, context, expr);
            }
            let inner = walk(&a.expr, None, query, context, expr);
            match &a.modifier {
                Some(LabelModifier::Include(by)) => {
                    has(&by.labels, &inner, "grouping by");
                    by.labels.iter().cloned().collect()
                }
                Some(LabelModifier::Exclude(without)) => {
                    has(&without.labels, &inner, "grouping without");
                    let without: BTreeSet<_> = without.labels.iter().cloned().collect();
                    inner.difference(&without).cloned().collect()
                }
                // topk and bottomk select series whole; the others aggregate
                // every label away.
                None if ["topk", "bottomk"].contains(&a.op.to_string().as_str()) => inner,
                None => BTreeSet::new(),
            }
        }
        Expr::Binary(b) => {
            let left = walk(&b.lhs, None, query, context, expr);
            let right = walk(&b.rhs, None, query, context, expr);
            let both: BTreeSet<String> = left.union(&right).cloned().collect();
            if let Some(modifier) = &b.modifier {
                if let Some(matching) = &modifier.matching {
                    has(&matching.labels().labels, &both, "vector matching");
                }
                if let Some(include) = modifier.card.labels() {
                    has(&include.labels, &both, "group_left/group_right");
                }
            }
            both
        }
        Expr::Call(call) => {
            let mut labels = BTreeSet::new();
            for arg in &call.args.args {
                labels.extend(walk(arg, Some(call.func.name), query, context, expr));
            }
            if call.func.name == "histogram_quantile" {
                assert!(
                    labels.remove("le"),
                    "{context}: histogram_quantile over series without le; in {expr:?}"
                );
            }
            labels
        }
        Expr::Paren(p) => walk(&p.expr, function, query, context, expr),
        Expr::Unary(u) => walk(&u.expr, function, query, context, expr),
        Expr::Subquery(s) => walk(&s.expr, function, query, context, expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => BTreeSet::new(),
        Expr::Extension(_) => panic!("{context}: the parser made an extension node of {expr:?}"),
    }
}

/// A selector: its metric is declared and its matchers name its labels.
fn select(vs: &VectorSelector, query: &mut Query, context: &str, expr: &str) -> BTreeSet<String> {
    let (name, matchers) = selector(vs, context, expr);
    assert!(
        catalog::owner(&name).is_some(),
        "{context}: {name} is not declared in src/export/catalog.rs (in {expr:?})"
    );
    let known = labels_of(&name);
    for label in &matchers {
        assert!(
            known.contains(label),
            "{context}: {name} has no label {label:?} (it has {known:?}); in {expr:?}"
        );
    }
    query.selectors.push((name, matchers));
    known
}

#[test]
fn parse_tree_gives_names_matchers_groupings_and_result_labels() {
    let query = parse(
        r#"sum by (kind) (rate(mapscope_map_growths_total{map="a,b}", kind!~"x"}[5m])) / on (kind) group_left sum by (kind) (mapscope_map_condition_active)"#,
        "test",
    );
    assert_eq!(
        query.selectors,
        vec![
            (
                "mapscope_map_growths_total".to_owned(),
                vec!["map".to_owned(), "kind".to_owned()]
            ),
            ("mapscope_map_condition_active".to_owned(), vec![]),
        ]
    );
    assert_eq!(query.labels, BTreeSet::from(["kind".to_owned()]));
    assert_eq!(
        query.ranges,
        vec![("rate".to_owned(), Duration::from_secs(300))]
    );
    let quantile = parse(
        "histogram_quantile(0.99, sum by (le) (rate(mapscope_growth_duration_seconds_bucket[1m])))",
        "test",
    );
    assert!(quantile.labels.is_empty(), "{:?}", quantile.labels);
    // A metric name inside a string is a value, not a selector.
    assert_eq!(
        parse(r#"mapscope_maps{job="mapscope_x"}"#, "test").selectors,
        vec![("mapscope_maps".to_owned(), vec!["job".to_owned()])]
    );
}

#[test]
#[should_panic(expected = "grouping by (\"nope\")")]
fn grouping_on_a_missing_label_fails() {
    parse("sum by (nope) (mapscope_maps)", "test");
}

#[test]
#[should_panic(expected = "is not declared")]
fn an_undeclared_metric_fails() {
    parse("rate(mapscope_nope_total[5m])", "test");
}
