"""check-magnetometer-norm: the Roboto documentation's example action, for hatchway.

Reads magnetometer samples (flight_id, t, mx, my, mz in µT), computes the vector norm of each
sample, and records an event for every stretch of a flight whose norm leaves [min_norm, max_norm].
The result lists the flights and their events; exports count them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from hatchway import runtime as hw


def load(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Samples per flight as (t, norm)."""
    flights: dict[str, list[tuple[float, float]]] = {}
    try:
        with path.open(newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    t = float(row["t"])
                    norm = math.sqrt(sum(float(row[axis]) ** 2 for axis in ("mx", "my", "mz")))
                except (KeyError, TypeError, ValueError):
                    raise hw.UserError(f"{path.name} line {line}: expected numeric t, mx, my, mz") from None
                flights.setdefault(row["flight_id"], []).append((t, norm))
    except FileNotFoundError:
        raise hw.UserError(f"data file {str(path)!r} does not exist") from None
    return flights


def events_of(samples: list[tuple[float, float]], low: float, high: float) -> list[dict[str, float | str]]:
    """Contiguous stretches outside [low, high]."""
    events: list[dict[str, float | str]] = []
    current: dict[str, float | str] | None = None
    for t, norm in sorted(samples):
        outside = norm < low or norm > high
        if outside and current is None:
            current = {"start": t, "end": t, "kind": "low" if norm < low else "high", "extreme": norm}
        elif outside and current is not None:
            current["end"] = t
            extreme = float(current["extreme"])
            current["extreme"] = min(extreme, norm) if current["kind"] == "low" else max(extreme, norm)
        elif current is not None:
            events.append(current)
            current = None
    if current is not None:
        events.append(current)
    for event in events:
        event["extreme"] = round(float(event["extreme"]), 3)
    return events


@hw.run_action
def run(ctx: hw.Context) -> dict[str, object]:
    low = ctx.param("min_norm", 25.0, float)
    high = ctx.param("max_norm", 65.0, float)
    if low >= high:
        raise hw.UserError(f"min_norm ({low:g}) must be below max_norm ({high:g})")
    flights = load(Path(ctx.param("data_file", "data/magnetometer.csv")))
    report = []
    for flight_id, samples in sorted(flights.items()):
        norms = [norm for _, norm in samples]
        events = events_of(samples, low, high)
        report.append(
            {
                "flight_id": flight_id,
                "samples": len(samples),
                "mean_norm": round(sum(norms) / len(norms), 3),
                "events": events,
            }
        )
        print(
            f"{flight_id}: {len(samples)} samples, mean norm {sum(norms) / len(norms):.2f} µT, {len(events)} event(s)"
        )
    flagged = [f["flight_id"] for f in report if f["events"]]
    hw.export("flights_checked", len(report))
    hw.export("flights_flagged", len(flagged))
    return {"range": [low, high], "flagged": flagged, "flights": report}


if __name__ == "__main__":
    hw.main()
