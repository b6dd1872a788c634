"""The API's answer bodies for what the use cases return: shapes only, no decisions.

A record's own public form is its ``to_api()`` (a run, a project, a token, an action version, a log
entry); what is composed for an answer - a sync call's body, a file's - is made here.
"""

from __future__ import annotations

from typing import Any

from hatchway.domain.parameters import is_ciphertext
from hatchway.domain.pipelines.records import Execution, PipelineRecord, StepView
from hatchway.domain.pipelines.spec import hidden
from hatchway.domain.runs import Run, SyncOutcome, iso
from hatchway.runtime.redact import HIDDEN
from hatchway.services.files import StoredFile


def run_body(run: Run, with_log: bool = True) -> dict[str, Any]:
    """A run (secret values hidden); a list page's runs come without the head and tail of their log."""
    return run.to_api(with_log)


def listed_run(run: Run) -> dict[str, Any]:
    return run.to_api(with_log=False)


def sync_body(outcome: SyncOutcome) -> dict[str, Any]:
    """``{run_id, status, ret, exports, os, duration_ms}`` (+ ``stash_id``) (+ ``cached``)."""
    body = outcome.to_record()
    if outcome.cached is not None:
        body["cached"] = outcome.cached
    return body


def file_body(stored: StoredFile) -> dict[str, Any]:
    info = stored.info
    return {"path": stored.path, "size": info.size, "sha256": info.sha256, "modified_at": iso(info.modified_at)}


def pipeline_body(record: PipelineRecord) -> dict[str, Any]:
    """A pipeline version: the definition with secret values hidden, its version and digest."""
    return {
        **hidden(record.spec),
        "name": record.name,
        "version": record.version,
        "digest": record.digest,
        "created_at": iso(record.created_at),
    }


def execution_body(execution: Execution) -> dict[str, Any]:
    """An execution, its encrypted variables hidden."""
    body = execution.to_api()
    body["variables"] = {k: (HIDDEN if is_ciphertext(v) else v) for k, v in execution.variables.items()}
    return body


def step_body(view: StepView) -> dict[str, Any]:
    """A step's definition (Buddy's step view), with its pipeline and ``last_execution_status``."""
    return {
        **view.step,
        "pipeline": {"name": view.pipeline, "version": view.version},
        "last_execution_status": view.last_execution_status,
    }
