#!/usr/bin/env python3
"""Turns the benchmark results into an SVG chart and a Markdown table.

Usage: plot.py RESULTS_DIR  (reads summary.json written by run-benchmarks.sh,
writes RESULTS_DIR/throughput-p99.svg and prints the table). No third-party
packages: the SVG is written by hand.
"""
import json
import sys
from pathlib import Path

COLORS = {"walletql": "#1f77b4", "minimal raw transfer": "#d62728", "old per-transfer statements": "#7f7f7f"}


def chart(x0, y0, w, h, title, ylabel, series, fmt):
    xs = sorted({c for points in series.values() for c, _ in points})
    ymax = max((v for points in series.values() for _, v in points), default=1) * 1.15 or 1
    px = lambda c: x0 + 50 + (w - 70) * xs.index(c) / max(len(xs) - 1, 1)
    py = lambda v: y0 + h - 40 - (h - 70) * v / ymax
    out = [f'<text x="{x0 + w / 2}" y="{y0 + 18}" text-anchor="middle" font-size="14" font-weight="bold">{title}</text>']
    out.append(f'<line x1="{x0 + 50}" y1="{y0 + h - 40}" x2="{x0 + w - 20}" y2="{y0 + h - 40}" stroke="#333"/>')
    out.append(f'<line x1="{x0 + 50}" y1="{y0 + 30}" x2="{x0 + 50}" y2="{y0 + h - 40}" stroke="#333"/>')
    for c in xs:
        out.append(f'<text x="{px(c)}" y="{y0 + h - 24}" text-anchor="middle" font-size="11">{c}</text>')
    out.append(f'<text x="{x0 + w / 2}" y="{y0 + h - 6}" text-anchor="middle" font-size="11">connections</text>')
    for i in range(5):
        v = ymax * i / 4
        out.append(f'<text x="{x0 + 45}" y="{py(v) + 4}" text-anchor="end" font-size="10">{fmt(v)}</text>')
        out.append(f'<line x1="{x0 + 50}" y1="{py(v)}" x2="{x0 + w - 20}" y2="{py(v)}" stroke="#ddd"/>')
    out.append(f'<text x="{x0 + 12}" y="{y0 + h / 2}" font-size="11" transform="rotate(-90 {x0 + 12} {y0 + h / 2})" text-anchor="middle">{ylabel}</text>')
    for k, (name, points) in enumerate(series.items()):
        color = COLORS.get(name, "#2ca02c")
        path = " ".join(f"{px(c)},{py(v)}" for c, v in sorted(points))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        for c, v in points:
            out.append(f'<circle cx="{px(c)}" cy="{py(v)}" r="3" fill="{color}"/>')
        out.append(f'<rect x="{x0 + 60}" y="{y0 + 34 + 16 * k}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x0 + 75}" y="{y0 + 43 + 16 * k}" font-size="11">{name}</text>')
    return out


def main():
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    summary = json.loads((results / "summary.json").read_text())
    runs = summary["runs"]
    tps = {name: [(r["connections"], r["tps"]) for r in runs if r["system"] == name] for name in COLORS}
    p99 = {name: [(r["connections"], r["p99_ms"]) for r in runs if r["system"] == name] for name in COLORS}
    w, h = 460, 300
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h}" font-family="sans-serif">',
             f'<rect width="{2 * w}" height="{h}" fill="white"/>']
    parts += chart(0, 0, w, h, "Transfers per second", "transfers/s", tps, lambda v: f"{v:.0f}")
    parts += chart(w, 0, w, h, "p99 latency", "ms", p99, lambda v: f"{v:.1f}")
    parts.append("</svg>")
    (results / "throughput-p99.svg").write_text("\n".join(parts))

    print("| connections | walletql tps | minimal raw tps | ratio | walletql p99 ms | minimal raw p99 ms | p99 ratio | old statements tps | CPU s per 1,000 transfers: walletql / PostgreSQL (minimal: PostgreSQL) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    by = {(r["system"], r["connections"]): r for r in runs}
    for c in sorted({r["connections"] for r in runs}):
        w_, s_ = by.get(("walletql", c)), by.get(("minimal raw transfer", c))
        o_ = by.get(("old per-transfer statements", c), {"tps": 0})
        if not w_ or not s_:
            continue
        def per_k(r, key):
            n = r.get("transactions", 0)
            return 1000 * r.get(key, 0) / n if n else 0
        print(f"| {c} | {w_['tps']:.0f} | {s_['tps']:.0f} | {w_['tps'] / s_['tps']:.2f} | "
              f"{w_['p99_ms']:.1f} | {s_['p99_ms']:.1f} | {w_['p99_ms'] / s_['p99_ms']:.2f} | {o_['tps']:.0f} | "
              f"{per_k(w_, 'walletql_cpu_s'):.2f} / {per_k(w_, 'postgres_cpu_s'):.2f} ({per_k(s_, 'postgres_cpu_s'):.2f}) |")
    hot = summary.get("hot", {})
    if hot:
        w_, s_ = hot["walletql"], hot["minimal raw transfer"]
        print()
        print(f"hot wallets (64 connections): walletql {w_['tps']:.0f} tps p99 {w_['p99_ms']:.1f} ms; "
              f"minimal raw {s_['tps']:.0f} tps p99 {s_['p99_ms']:.1f} ms; ratio {w_['tps'] / s_['tps']:.2f}; "
              f"old statements {hot['old per-transfer statements']['tps']:.0f} tps")
    for r in summary.get("reads", []):
        w_, s_ = r["walletql"], r["raw SELECT"]
        print(f"reads at {r['connections']}: walletql {w_['tps']:.0f}/s p50 {w_['p50_ms']:.2f} ms p99 {w_['p99_ms']:.2f} ms; "
              f"raw SELECT {s_['tps']:.0f}/s; ratio {w_['tps'] / s_['tps']:.2f}")
    for c, w_ in summary.get("sqlite", {}).items():
        print(f"SQLite at {c}: {w_['tps']:.0f} transfers/s, p99 {w_['p99_ms']:.1f} ms, errors {w_['errors']}")
    for r in runs:
        if "peak_rss_mb" in r:
            print(f"peak RSS at {r['connections']} connections: {r['peak_rss_mb']:.1f} MB")


if __name__ == "__main__":
    main()
