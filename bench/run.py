"""Run the benchmarks: ``python bench/run.py`` (every figure) or ``python bench/run.py P1 P4``.

Prints a table of figures, each a ratio against a baseline measured in the same run, and writes
``bench/results/latest.json``. ``--quick`` runs every figure with a handful of samples (the smoke
test uses it; its numbers mean nothing) and writes nowhere unless ``--out`` is given.

Figures come from the modules of this directory: any ``bench/<module>.py`` with a ``FIGURES``
mapping (figure id -> function of a :class:`~bench.harness.Context` returning rows) is included,
so a module added later - e.g. warm container-Lambda latency, which needs a dockerd - only has to
exist. A figure raising :class:`~bench.harness.Skip` is listed as skipped with its reason. A module
with a ``GROUP`` name can be run as a whole by that name (``python bench/run.py peers``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` and this checkout's code importable
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "src")]

from bench.harness import REPO, Context, Missing, Row, Skip, context, cpu_pressure

HERE = Path(__file__).resolve().parent
LATEST = HERE / "results" / "latest.json"
NOT_FIGURES = {"__init__", "ab", "group_commit", "harness", "run"}

Figure = Callable[[Context], Sequence[Row | Missing]]
#: figure groups by name (a module's ``GROUP``), filled by :func:`discover`
GROUPS: dict[str, list[str]] = {}


def discover() -> tuple[dict[str, Figure], dict[str, str]]:
    """Every figure of every benchmark module, and the modules that could not be imported."""
    figures: dict[str, Figure] = {}
    broken: dict[str, str] = {}
    GROUPS.clear()
    for path in sorted(HERE.glob("*.py")):
        if path.stem in NOT_FIGURES:
            continue
        try:
            module = importlib.import_module(f"bench.{path.stem}")
        except Exception as exc:  # a module for an absent extra must not stop the others
            broken[path.stem] = f"{type(exc).__name__}: {exc}"
            continue
        for figure_id, fn in getattr(module, "FIGURES", {}).items():
            figures[figure_id] = fn
            if getattr(module, "GROUP", None):
                GROUPS.setdefault(module.GROUP, []).append(figure_id)
    return dict(sorted(figures.items(), key=lambda item: _order(item[0]))), broken


def _order(figure_id: str) -> tuple[str, int, str]:
    digits = "".join(ch for ch in figure_id if ch.isdigit())
    return (figure_id.rstrip("0123456789")[:1], int(digits) if digits else 0, figure_id)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a fixed-width text table."""
    header = ["id", "figure", "setting", "measured", "baseline", "ratio", "target", "met", "n"]
    lines = [header]
    for row in rows:
        if row.get("skipped"):
            lines.append([row["figure"], f"skipped: {row['skipped']}", "", "", "", "", "", "", ""])
            continue
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        lines.append(
            [
                row["figure"],
                row["metric"],
                row["setting"],
                _fmt(row["value"], row["unit"]),
                _fmt(row["baseline"], row["unit"]) if row["baseline"] is not None else "-",
                ratio,
                row["target"] or "-",
                met,
                str(row["samples"] or ""),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    notes = [
        f"{row['figure']} {row['metric'].strip()} ({row['setting']}): {row['note']}" for row in rows if row.get("note")
    ]
    return "\n".join(out + ([""] + notes if notes else []))


def markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table (for the README)."""
    lines = ["| id | figure | setting | measured | baseline | ratio | target | met |", "| --- " * 8 + "|"]
    for row in report["rows"]:
        if row.get("skipped"):
            lines.append(f"| {row['figure']} | skipped: {row['skipped']} | | | | | | |")
            continue
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        baseline = f"{_fmt(row['baseline'], row['unit'])} ({row['baseline_metric']})" if row["baseline"] else "-"
        lines.append(
            f"| {row['figure']} | {row['metric'].strip()} | {row['setting']} | {_fmt(row['value'], row['unit'])} "
            f"| {baseline} | {ratio} | {row['target'] or '-'} | {met} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": commit.stdout.strip() or None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", nargs="*", help="figure ids or group names (peers) to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="a few samples per figure (smoke test)")
    parser.add_argument("--out", type=Path, help=f"where to write the results (default {LATEST.relative_to(REPO)})")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--markdown", action="store_true", help="print the latest results as Markdown and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads((args.out or LATEST).read_text())))
        return 0

    figures, broken = discover()
    if args.list:
        for figure_id, fn in figures.items():
            print(f"{figure_id:8} {(fn.__doc__ or '').strip().splitlines()[0]}")
        for group, members in GROUPS.items():
            print(f"{group}: {' '.join(members)}")
        for name, reason in broken.items():
            print(f"(bench/{name}.py not loaded: {reason})")
        return 0
    wanted = list(dict.fromkeys(f for arg in args.figures for f in GROUPS.get(arg.lower(), [arg.upper()])))
    wanted = wanted or list(figures)
    unknown = [f for f in wanted if f not in figures]
    if unknown:
        known = ", ".join([*figures, *GROUPS])
        parser.error(f"unknown figure(s) {', '.join(unknown)}; known: {known}")

    rows: list[dict[str, Any]] = [{"figure": name, "skipped": reason} for name, reason in broken.items()]
    failed = False
    load_before, pressure_before = os.getloadavg(), cpu_pressure()
    started = time.monotonic()
    with context(quick=args.quick) as ctx:
        for figure_id in wanted:
            began = time.monotonic()
            print(f"{figure_id} ...", file=sys.stderr, flush=True)
            try:
                produced = figures[figure_id](ctx)
            except Skip as skip:
                rows.append({"figure": figure_id, "skipped": str(skip)})
                continue
            except Exception:
                traceback.print_exc()
                print(ctx.server_logs(), file=sys.stderr)
                rows.append({"figure": figure_id, "skipped": "failed (traceback above)"})
                failed = True
                continue
            rows.extend(row.to_json() for row in produced)
            print(f"{figure_id} done in {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine": {
            **machine(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            # share of the last minute some task waited for a CPU (Linux PSI): how shared the machine was
            "cpu_pressure_before": pressure_before,
            "cpu_pressure_after": cpu_pressure(),
        },
        "rows": rows,
    }
    print(table(rows))
    out = args.out or (None if args.quick else LATEST)
    if out is not None:
        if not args.out and args.figures and out.exists():
            report = _merge(json.loads(out.read_text()), report, wanted)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {out}", file=sys.stderr)
    return 1 if failed else 0


def _merge(previous: dict[str, Any], report: dict[str, Any], ran: list[str]) -> dict[str, Any]:
    """Keep the figures not run this time from the previous results (``run.py P1`` updates P1 only)."""
    kept = [row for row in previous.get("rows", []) if row["figure"] not in ran]
    merged = {**report, "rows": sorted(kept + report["rows"], key=lambda row: _order(row["figure"]))}
    return merged


if __name__ == "__main__":
    sys.exit(main())
