"""X-Ray through powertools' Tracer: spans become subsegments; TRACEPARENT maps the X-Ray ids."""

from __future__ import annotations

import pytest

from hatchway.observability.tracing import configure_tracing, current_traceparent, span, valid_traceparent


def test_spans_are_subsegments_and_the_traceparent_carries_the_xray_ids() -> None:
    from aws_lambda_powertools import Tracer
    from aws_xray_sdk.core import xray_recorder

    # Given X-Ray tracing, inside a segment (Lambda opens one per invocation)
    configure_tracing(xray_tracer=Tracer(service="hatchway", disabled=False, auto_patch=False))
    segment = xray_recorder.begin_segment("hatchway-test", sampling=1)
    try:
        # When a span is opened
        with span("store.get_run", "client", None, **{"db.system": "sqlite"}) as subsegment:
            traceparent = current_traceparent()
        # Then it is a subsegment with the attributes as annotations
        assert subsegment.name == "store.get_run"
        assert subsegment.annotations["db_system"] == "sqlite"
        assert subsegment.parent_id == segment.id
        # and the action would get the X-Ray trace as a W3C traceparent
        assert traceparent == f"00-{segment.trace_id[2:].replace('-', '')}-{subsegment.id}-01"
        assert valid_traceparent(traceparent) == traceparent
    finally:
        xray_recorder.end_segment()
        configure_tracing(None)


def test_outside_a_segment_there_is_no_trace_to_continue() -> None:
    from aws_lambda_powertools import Tracer

    configure_tracing(xray_tracer=Tracer(service="hatchway", disabled=False, auto_patch=False))
    try:
        assert current_traceparent() is None
    finally:
        configure_tracing(None)


@pytest.fixture(autouse=True)
def _quiet_xray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_XRAY_CONTEXT_MISSING", "IGNORE_ERROR")


def test_xray_patches_botocore_only_so_a_cold_start_does_not_import_httpx() -> None:
    import os
    import subprocess
    import sys

    # Given a Lambda function traced with X-Ray (powertools' Tracer patches nothing outside Lambda)
    env = {**os.environ, "LAMBDA_TASK_ROOT": "/var/task", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"}
    probe = (
        "import sys; from hatchway.observability.tracing import configure_tracing; "
        "from hatchway.config import Settings; configure_tracing(Settings.from_env({'HATCHWAY_TRACING': 'xray'})); "
        "from aws_xray_sdk.core.patcher import _PATCHED_MODULES as patched; "
        "print('httpx' in sys.modules, 'botocore.client' in sys.modules, sorted(patched)); "
        "import boto3; call = boto3.client('s3', region_name='us-east-1')._make_api_call; "
        "print(sorted(patched), hasattr(call, '__wrapped__'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # Then X-Ray's patch of every library it knows (which imports httpx, and rich and click with it,
    # at start-up) is not made, and botocore is patched once the first AWS client imports it (not
    # at start-up: the patch would import it there): AWS calls are subsegments
    assert done.stdout.split("\n")[:2] == ["False False []", "['botocore'] True"]
