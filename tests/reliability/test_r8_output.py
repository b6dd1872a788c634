"""R8: floods of output and oversized requests - capped, explicit, and the gateway stays responsive.

One real server runs an action printing 100 MB and then one printing 10,000 lines a second,
while a client probes ``GET /health`` every 20 ms and the server's memory is sampled. The flood
must be stored up to the log cap with an explicit truncation entry, the paced lines all of them
in order; the server's RSS may grow less than 50 MB and /health must answer within 100 ms at p99.
A 7 MiB request is refused with 413 whether it announces its length or streams it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hatchway.domain.runs import OS_PREVIEW_HEAD, OS_PREVIEW_TAIL, LogEntry, Mode
from hatchway.runtime.contract import OutputCollector
from tests.helpers import LiveServer
from tests.reliability.conftest import Figures, scaled
from tests.reliability.harness import API, AUTH, Sampler, chaos_spec, health_probe, percentile, rss_mib

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
LOG_CAP = 10 * MIB


def _all_logs(hw: object, run_id: str) -> Iterator[dict[str, object]]:
    after = 0
    while True:
        page = hw.logs(run_id, after=after, limit=1000)  # type: ignore[attr-defined]
        yield from page["items"]
        if not page["next"]:
            return
        after = int(page["next"])


def test_r8_output_floods_are_capped_and_the_gateway_stays_responsive(
    tmp_path: Path, figures: Figures, is_full: bool
) -> None:
    flood_bytes = scaled(100, 40, is_full) * 1000 * 1000
    rate, seconds = 10_000, scaled(5, 3, is_full)
    server = LiveServer(tmp_path / "home", HATCHWAY_SANDBOX="none").start()
    assert server.proc is not None
    pid = server.proc.pid
    try:
        with server.client(timeout=60) as hw:
            hw.register_action(chaos_spec())
            hw.wait(hw.start_run("chaos", {"behaviour": "work", "ledger": str(tmp_path / "ledger")})["id"])
            baseline = rss_mib(pid)
            with health_probe(server.url, 0.02) as health, Sampler(lambda: rss_mib(pid), 0.1) as memory:
                # When an action prints 100 MB
                began = time.monotonic()
                flood = hw.wait(hw.start_run("chaos", {"behaviour": "flood", "bytes": str(flood_bytes)})["id"], 300)
                flood_seconds = time.monotonic() - began
                # and another prints 10,000 lines a second
                paced = hw.wait(
                    hw.start_run("chaos", {"behaviour": "rate", "rate": str(rate), "seconds": str(seconds)})["id"], 120
                )
            flood_logs = list(_all_logs(hw, flood["id"]))
            paced_logs = list(_all_logs(hw, paced["id"]))
    finally:
        server.kill()

    # Then the flood is stored up to the cap, with an explicit truncation entry at the end
    stored = sum(len(str(e["msg"])) + 1 for e in flood_logs if e["k"] == "stdout")
    last = flood_logs[-1]
    truncated = last["k"] == "system" and str(last["msg"]).startswith("log truncated:")
    # and every paced line is there, in order
    lines = [str(e["msg"]) for e in paced_logs if e["k"] == "stdout"]
    total = rate * seconds
    in_order = lines == [f"line {i} of {total}" for i in range(total)]
    growth = max(memory.values, default=baseline) - baseline
    p99 = percentile(health.values, 99) * 1000
    figures.add("R8", f"action printing {flood_bytes // 1_000_000} MB: status, time",
                f"{flood['status']}, {flood_seconds:.1f} s")  # fmt: skip
    capped = f"{stored / MIB:.2f} MiB / {'yes' if truncated else 'no'}"
    figures.add("R8", "flood stored / explicit truncation entry", capped, "<= 10 MiB cap / yes",
                stored <= LOG_CAP and truncated)  # fmt: skip
    figures.add("R8", f"{rate} lines/s for {seconds} s: lines stored in order", f"{len(lines)}/{total}",
                f"{total}/{total}", in_order)  # fmt: skip
    figures.add("R8", "gateway RSS growth (baseline -> peak)",
                f"{growth:.1f} MB ({baseline:.0f} -> {max(memory.values, default=baseline):.0f})", "< 50 MB",
                growth < 50)  # fmt: skip
    figures.add("R8", "GET /health during the floods: p50 / p99 / max",
                f"{percentile(health.values, 50) * 1000:.0f} / {p99:.0f} / {max(health.values) * 1000:.0f} ms "
                f"({len(health.values)} probes, {health.errors} failed)", "p99 <= 100 ms",
                p99 <= 100 and not health.errors)  # fmt: skip
    assert flood["status"] == "SUCCESSFUL" and paced["status"] == "SUCCESSFUL"
    assert stored <= LOG_CAP and stored > LOG_CAP - MIB, stored
    assert truncated, last
    assert in_order, (len(lines), lines[:3], lines[-3:])
    assert growth < 50, growth
    assert health.errors == 0 and p99 <= 100, p99


@pytest.mark.parametrize("how", ["content-length", "chunked"])
def test_r8_a_7_mib_request_is_refused_with_413(tmp_path: Path, how: str, figures: Figures) -> None:
    server = LiveServer(tmp_path / "home", "--workers", "0").start()
    body = b'{"parameters": {"behaviour": "' + b"x" * (7 * MIB) + b'"}}'
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
            content = body if how == "content-length" else iter([body[i : i + MIB] for i in range(0, len(body), MIB)])
            answer = http.post(f"{API}/actions/chaos/runs", content=content,
                               headers={"content-type": "application/json"})  # fmt: skip
            alive = http.get("/health").status_code
    finally:
        server.kill()
    shaped = answer.status_code == 413 and answer.json()["error"] == "Payload too large"
    figures.add("R8", f"7 MiB request ({how})", answer.status_code, "413", shaped and alive == 200)
    assert shaped, answer.text[:200]
    assert alive == 200


def test_r8_a_flushed_run_keeps_only_its_preview_in_memory() -> None:
    # Given the collector of an async run whose log goes to the store in batches
    flushed: list[LogEntry] = []
    collector = OutputCollector(Mode.ASYNC, flush=flushed.extend)
    # When the action prints 50,000 lines
    for index in range(50_000):
        collector.feed("stdout", f"line {index}\n".encode())
    collector.close()
    # Then all of them reach the store, and memory holds only the record's head and tail
    assert [e.msg for e in flushed] == [f"line {i}" for i in range(50_000)]
    kept = collector.entries
    assert len(kept) == OS_PREVIEW_HEAD + OS_PREVIEW_TAIL
    assert kept[0].msg == "line 0" and kept[-1].msg == "line 49999"
