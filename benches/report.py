#!/usr/bin/env python3
"""Turn a run of `cargo bench` (the mapscope, latency and memory benches) into markdown tables.

Reads criterion's `target/criterion/**/new/{benchmark,estimates}.json` and
the `latency` and `memory` benches' `target/mapscope-bench/{latency,memory}.json`, and prints, for
pasting into docs/benchmarks.md:

- throughput: per group (`{key}/{op}/{n}`), hashbrown's time per element and
  the ratios mapscope/hashbrown, std_foldhash/hashbrown, std_sip/hashbrown
  (time ratios: above 1 is slower than hashbrown);
- latency: per map, the median over runs of max, p99.99, p99.9, p99, p50
  and total, the per-run maxes, and max relative to hashbrown;
- memory: per map, steady and peak bytes per entry, relative to hashbrown.

With `--before DIR` (the target directory of a run of an older commit,
same machine, back to back), it also prints mapscope/hashbrown before and
after per group, against the targets of the engine issue.

Standard library only. Usage:

    python3 benches/report.py [--target-dir DIR] [--stat mean|median] [--before DIR]
"""

import argparse
import json
import os
import sys
from pathlib import Path

MAPS = ["mapscope", "hashbrown", "std_foldhash", "std_sip"]
BASE = "hashbrown"
OPS = ["insert", "insert_presized", "lookup_hit", "lookup_miss", "remove", "iterate"]
KEYS = ["u64", "string"]


def default_target_dir():
    env = os.environ.get("CARGO_TARGET_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "target"


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}"


def fmt_time(ns):
    """A time in nanoseconds, with a readable unit."""
    if ns is None:
        return "n/a"
    if ns < 10:
        return f"{ns:.2f} ns"
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def group_sort_key(group):
    parts = group.split("/")
    if len(parts) != 3:
        return (len(KEYS), len(OPS), 0, group)
    key, op, n = parts
    return (
        KEYS.index(key) if key in KEYS else len(KEYS),
        OPS.index(op) if op in OPS else len(OPS),
        int(n) if n.isdigit() else 0,
        group,
    )


# mapscope/hashbrown time targets per operation (the engine issue).
TARGETS = {
    "lookup_hit": 1.3,
    "lookup_miss": 1.3,
    "insert": 2.0,
    "insert_presized": 1.5,
    "remove": 1.5,
    "iterate": 1.5,
}


def throughput_groups(criterion_dir, stat):
    """Per group: {map: ns per element}."""
    groups = {}
    for bench_file in criterion_dir.glob("**/new/benchmark.json"):
        bench = load_json(bench_file)
        estimates = load_json(bench_file.with_name("estimates.json"))
        if not bench or not estimates:
            continue
        group, function = bench.get("group_id"), bench.get("function_id")
        if function not in MAPS:
            continue
        estimate = estimates.get(stat) or estimates.get("mean")
        if not estimate:
            continue
        elements = (bench.get("throughput") or {}).get("Elements") or 1
        groups.setdefault(group, {})[function] = estimate["point_estimate"] / elements
    return groups


def before_after_table(before_dir, after_dir, stat):
    before = throughput_groups(before_dir, stat)
    after = throughput_groups(after_dir, stat)
    if not before or not after:
        return None

    def ratio(row):
        if row and row.get(BASE) and "mapscope" in row:
            return row["mapscope"] / row[BASE]
        return None

    lines = [
        f"mapscope's time relative to hashbrown's ({stat} of criterion's samples; "
        "each run against its own hashbrown), before and after, with the target.",
        "",
        "| group | hashbrown, per element (after run) | mapscope / hb before | mapscope / hb after | target | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for group in sorted(set(before) | set(after), key=group_sort_key):
        b, a = ratio(before.get(group)), ratio(after.get(group))
        op = group.split("/")[1] if group.count("/") == 2 else None
        target = TARGETS.get(op)
        met = "n/a" if a is None or target is None else ("yes" if a <= target else "no")
        base = (after.get(group) or {}).get(BASE)
        lines.append(
            f"| {group} | {fmt_time(base)} | {fmt_ratio(b)} | {fmt_ratio(a)} | "
            f"{'n/a' if target is None else f'≤ {target}'} | {met} |"
        )
    return "\n".join(lines)


def throughput_table(criterion_dir, stat):
    """Per group: {map: ns per element}."""
    groups = {}
    for bench_file in criterion_dir.glob("**/new/benchmark.json"):
        bench = load_json(bench_file)
        estimates = load_json(bench_file.with_name("estimates.json"))
        if not bench or not estimates:
            continue
        group, function = bench.get("group_id"), bench.get("function_id")
        if function not in MAPS:
            continue
        estimate = estimates.get(stat) or estimates.get("mean")
        if not estimate:
            continue
        elements = (bench.get("throughput") or {}).get("Elements") or 1
        groups.setdefault(group, {})[function] = estimate["point_estimate"] / elements
    if not groups:
        return None

    lines = [
        f"Time per element ({stat} of criterion's samples) for hashbrown, and "
        "every map's time relative to hashbrown's (above 1: slower).",
        "",
        "| group | hashbrown, per element | mapscope / hb | std_foldhash / hb | std_sip / hb |",
        "|---|---:|---:|---:|---:|",
    ]
    for group in sorted(groups, key=group_sort_key):
        row = groups[group]
        base = row.get(BASE)

        def ratio(name):
            if base is None or name not in row or base == 0:
                return None
            return row[name] / base

        lines.append(
            f"| {group} | {fmt_time(base)} | "
            + " | ".join(fmt_ratio(ratio(m)) for m in MAPS if m != BASE)
            + " |"
        )
    return "\n".join(lines)


def latency_table(data):
    maps = {m["name"]: m for m in data.get("maps", [])}
    base = maps.get(BASE, {}).get("median_max_ns")
    lines = [
        f"{data['keys']} `u64` inserts from empty, {data.get('hasher', '')}, "
        f"{data['runs_per_map']} run(s) per map, median over runs. Timer floor: "
        f"p50 {data['timer_floor_ns']['p50']} ns.",
        "",
        "| map | max | max / hb | p99.99 | p99.9 | p99 | p50 | total | max per run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, m in maps.items():
        ratio = m["median_max_ns"] / base if base else None
        per_run = ", ".join(fmt_time(r["max_ns"]) for r in m.get("runs", []))
        lines.append(
            f"| {name} | {fmt_time(m['median_max_ns'])} | {fmt_ratio(ratio)} | "
            f"{fmt_time(m['median_p99_99_ns'])} | {fmt_time(m['median_p99_9_ns'])} | "
            f"{fmt_time(m['median_p99_ns'])} | {fmt_time(m['median_p50_ns'])} | "
            f"{fmt_time(m['median_total_ns'])} | {per_run} |"
        )
    return "\n".join(lines)


def memory_table(data):
    maps = {m["name"]: m for m in data.get("maps", [])}
    base = maps.get(BASE)

    def rel(value, base_value):
        return value / base_value if base_value else None

    lines = [
        f"`u64 -> u64`, {data['entries']} entries, counting allocator. Build peak: the "
        "most bytes live while inserting the first n entries, divided by n. Next "
        "growth peak: the most bytes live during the next growth, divided by the "
        "entries held at that moment.",
        "",
        "| map | steady B/entry | / hb | build peak B/entry | / hb | next growth peak B/entry | / hb | self-reported steady B/entry |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in maps.items():
        steady = m["steady_bytes_per_entry"]
        build = m["build_peak_bytes_per_final_entry"]
        nxt = m["next_growth_peak"]["bytes_per_entry"]
        reported = m.get("reported_steady_bytes")
        reported_s = "n/a" if reported is None else f"{reported / data['entries']:.2f}"
        lines.append(
            f"| {name} | {steady:.2f} | "
            f"{fmt_ratio(rel(steady, base and base['steady_bytes_per_entry']))} | "
            f"{build:.2f} | "
            f"{fmt_ratio(rel(build, base and base['build_peak_bytes_per_final_entry']))} | "
            f"{nxt:.2f} | "
            f"{fmt_ratio(rel(nxt, base and base['next_growth_peak']['bytes_per_entry']))} | "
            f"{reported_s} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--target-dir",
        type=Path,
        default=default_target_dir(),
        help="cargo's target directory (default: $CARGO_TARGET_DIR or ./target)",
    )
    parser.add_argument(
        "--stat",
        choices=["mean", "median"],
        default="mean",
        help="criterion estimate to compare (default: mean)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="target directory of a run of an older commit: print before/after ratios",
    )
    args = parser.parse_args()

    found = False
    if args.before:
        table = before_after_table(args.before / "criterion", args.target_dir / "criterion", args.stat)
        if table:
            found = True
            print("### Before and after\n")
            print(table)
            print()

    throughput = throughput_table(args.target_dir / "criterion", args.stat)
    if throughput:
        found = True
        print("### Throughput\n")
        print(throughput)
        print()

    latency = load_json(args.target_dir / "mapscope-bench" / "latency.json")
    if latency:
        found = True
        print("### Insert latency\n")
        print(latency_table(latency))
        print()

    memory = load_json(args.target_dir / "mapscope-bench" / "memory.json")
    if memory:
        found = True
        print("### Memory\n")
        print(memory_table(memory))
        print()

    if not found:
        print(f"no results under {args.target_dir}; run `cargo bench` first", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
