"""The guards of deploy/generate.py: a query on anything the catalog does
not declare raises. Run by tests/deploy/rules.rs, or by hand:

    python3 -B deploy/test_generate.py
"""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generate as g  # noqa: E402

CATALOG = g.load_catalog()
RUNBOOK = g.RUNBOOK.read_text(encoding="utf-8")


def alert(expr: str) -> dict:
    return {
        "name": "MapscopeMapMisuse",
        "severity": "critical",
        "for": "0s",
        "expr": expr,
        "summary": "s",
        "description": "d",
        "runbook": "mapscopemapmisuse",
    }


class Guards(unittest.TestCase):
    def test_selectors_name_declared_metrics_and_labels(self):
        self.assertEqual(str(g.sel(CATALOG, "mapscope_maps", ("pod", "=~", "$pod"))), 'mapscope_maps{pod=~"$pod"}')
        with self.assertRaisesRegex(g.SourceError, "mapscope_nope is not declared"):
            g.sel(CATALOG, "mapscope_nope")
        with self.assertRaisesRegex(g.SourceError, "has no label 'map'"):
            g.sel(CATALOG, "mapscope_maps", ("map", "=", "x"))

    def test_histogram_series_belong_to_their_histogram(self):
        bucket = g.sel(CATALOG, "mapscope_growth_duration_seconds_bucket")
        self.assertIn("le", bucket.labels)
        self.assertEqual(g.histogram_quantile(0.99, g.agg("sum", bucket, by=("le", "kind"))).labels, {"kind"})
        with self.assertRaisesRegex(g.SourceError, "no le"):
            g.histogram_quantile(0.99, g.sel(CATALOG, "mapscope_maps"))

    def test_groupings_and_legends_name_labels_the_result_has(self):
        with self.assertRaisesRegex(g.SourceError, "not labels of"):
            g.agg("sum", g.sel(CATALOG, "mapscope_maps"), by=("kind",))
        with self.assertRaisesRegex(g.SourceError, "legend"):
            g.target(g.agg("sum", g.sel(CATALOG, "mapscope_map_entries")), "{{map}}")
        topk = g.agg("topk", g.sel(CATALOG, "mapscope_map_entries"), param=10)
        self.assertIn("map", topk.labels)

    def test_load_factor_is_the_engines(self):
        self.assertEqual(g.number(CATALOG.load_factor), "6.5")

    def test_alerts_query_declared_metrics(self):
        good = g.validate([alert("mapscope_maps > 0")], RUNBOOK, CATALOG)
        self.assertEqual(good[0]["expr"], "mapscope_maps > 0")
        with self.assertRaisesRegex(g.SourceError, "mapscope_nope_total is not declared"):
            g.validate([alert("rate(mapscope_nope_total[5m]) > 0")], RUNBOOK, CATALOG)

    def test_alerts_file_is_strict(self):
        with self.assertRaisesRegex(g.SourceError, "must be a string"):
            g.load_alerts("- name: X\n  for: 5\n")
        with self.assertRaisesRegex(g.SourceError, "unknown key"):
            g.load_alerts("- name: X\n  fro: 5m\n")


if __name__ == "__main__":
    unittest.main()
