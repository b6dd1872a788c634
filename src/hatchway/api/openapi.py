"""The OpenAPI document as client generators need it: named components, short operation ids.

powertools writes each route's answer schemas inline and names operations after the function and
the path (``submit_run_v1_projects__project_id__actions__name__runs_post``). Generators then make
one class per inline copy (five ``Run`` classes, sixteen status enums) and method names a hundred
characters long. :func:`refine` rewrites the document once, when it is built: every schema equal
to one of :data:`COMPONENTS` becomes a ``$ref`` to it, every error answer the one ``Error``,
each operation gets a short camelCase id, and the headers a client must read or may send
(``Location``, ``Retry-After``, ``Idempotency-Key``) and a few examples are documented.
"""

from __future__ import annotations

import re
from typing import Any

from hatchway.api import schemas as S
from hatchway.api.routers import compat, extras, files, pipelines

#: the schemas a client knows by name, nested ones first (a later one may contain an earlier one)
COMPONENTS: dict[str, dict[str, Any]] = {
    "ValidationError": S.VALIDATION_ERROR,
    "Error": S.ERROR,
    "RunStatus": S.RUN_STATUS,
    "LogEntry": S.LOG_ENTRY,
    "RunError": S.RUN_ERROR,
    "ActionRef": S.ACTION_REF,
    "Run": S.RUN,
    "RunSummary": S.RUN_SUMMARY,
    "SyncResult": S.SYNC_RESULT,
    "ActionDefinition": S.ACTION_DEFINITION,
    "Action": S.ACTION,
    "Project": S.PROJECT,
    "Token": S.TOKEN,
    "NewToken": S.NEW_TOKEN,
    "Encrypted": S.ENCRYPTED,
    "Health": S.HEALTH,
    "FileInfo": files.FILE_INFO,
    "CacheTag": extras.CACHE_TAG,
    "SessionType": extras.SESSION_TYPE,
    "ConnectResult": compat.CONNECT_RESULT,
    "Pipeline": pipelines.PIPELINE,
    "StepState": pipelines.STEP_STATE,
    "Execution": pipelines.EXECUTION,
    "RunPage": S.page(S.RUN_SUMMARY),
    "LogPage": S.page(S.LOG_ENTRY),
    "ActionPage": S.page(S.ACTION),
    "ProjectPage": S.page(S.PROJECT),
    "TokenPage": S.page(S.TOKEN),
    "FilePage": S.page(files.FILE_INFO),
    "PipelinePage": S.page(pipelines.PIPELINE),
    "ExecutionPage": S.page(pipelines.EXECUTION),
}

#: powertools' own validation error schemas: the API never answers them (its 422 is an ``Error``)
UNUSED = ("HTTPValidationError", "ResponseValidationError")

#: operation ids that say more than the function's name
OPERATION_IDS = {
    "call_sync": "callSyncAction",
    "read_logs": "getRunLogs",
    "stats": "getStats",
    "metrics": "getMetrics",
    "health": "getHealth",
    "root": "getRoot",
    "encrypt": "encryptValues",
    "oauth_token": "createOAuthToken",
    "console_root": "getConsoleRoot",
    "console_index": "getConsole",
    "console_file": "getConsoleFile",
    "keboola_action": "callKeboolaAction",
    "connect_run": "callConnectAction",
    "get_step": "getPipelineStep",
    "get_callback_secret": "getCallbackSecret",
}

EXAMPLES: dict[str, Any] = {
    "Run": {
        "id": "run_01JDX3Q5ZKX8M9T0V4B2C6N7PA", "project_id": "proj_local", "environment": "development",
        "action": {"name": "hello", "version": 1, "digest": "sha256:" + "ab" * 32}, "invoked": "run",
        "mode": "async", "status": "ENQUEUED", "status_reason": None, "attempt": 0, "max_attempts": 1,
        "parameters": {"who": "world", "#password": "[hidden]"}, "ret": None, "exports": {}, "os": [],
        "error": None, "created_at": "2026-11-22T08:00:00.000Z", "started_at": None, "finished_at": None,
        "duration_ms": None, "external_user_id": None,
    },
    "Error": {
        "status": "error", "error": "Not found", "code": 404, "message": "no run run_01JDX3Q5ZKX8M9T0V4B2C6N7PA",
    },
    "SyncResult": {
        "run_id": "run_01JDX3Q5ZKX8M9T0V4B2C6N7PA", "status": "SUCCESSFUL", "ret": {"ok": True}, "exports": {},
        "os": [{"seq": 1, "k": "stderr", "ts": 1795334400123, "msg": "checked"}], "duration_ms": 412,
    },
}  # fmt: skip

_HEADERS = {
    "Location": {"description": "where the new object is read", "schema": {"type": "string"}},
    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}},
}
_IDEMPOTENCY_KEY_DESCRIPTION = (
    "a key of the caller's choosing: a repeated request with the same key and body answers the first "
    "request's run instead of starting another (409 with a different body; 409 + Retry-After while the "
    "first is still being answered)"
)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def operation_id(function: str) -> str:
    """The short id of the operation a function named ``function`` answers (``submit_run``: ``submitRun``)."""
    if function in OPERATION_IDS:
        return OPERATION_IDS[function]
    head, *rest = function.split("_")
    return head + "".join(part.title() for part in rest)


def _function_of(operation: dict[str, Any], path: str, method: str) -> str | None:
    """The function name inside powertools' default operation id (``<function><path>_<method>``)."""
    default = operation.get("operationId") or ""
    suffix = re.sub(r"\W", "_", path) + "_" + method
    return default[: -len(suffix)] if default.endswith(suffix) and len(default) > len(suffix) else None


def _named(schema: Any, skip: str | None = None) -> Any:
    """``schema`` with every part equal to a component replaced by a reference to it (``skip``: the
    component being defined, which must not refer to itself)."""
    if isinstance(schema, dict):
        for name, component in COMPONENTS.items():
            if name != skip and schema == component:
                return ref(name)
        return {key: _named(value) if key != "example" else value for key, value in schema.items()}
    if isinstance(schema, list):
        return [_named(item) for item in schema]
    return schema


def refine(document: dict[str, Any], raw_functions: dict[tuple[str, str], str]) -> dict[str, Any]:
    """``document`` (powertools' OpenAPI) rewritten for client generators (module docstring);
    ``raw_functions``: the function answering each raw route, by (path, method)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in UNUSED:
        schemas.pop(name, None)
    schemas.pop("ValidationError", None)  # powertools' one leaves ``msg`` undefined: ours replaces it
    for name, component in COMPONENTS.items():
        schemas[name] = {key: _named(value) for key, value in component.items()}
        schemas[name]["title"] = name
        if name in EXAMPLES:
            schemas[name]["examples"] = [EXAMPLES[name]]
    seen: set[str] = set()
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            function = raw_functions.get((path, method)) or _function_of(operation, path, method)
            if function is not None:
                operation["operationId"] = operation_id(function)
            if operation.get("operationId") in seen:
                raise AssertionError(f"two operations are {operation['operationId']}")  # noqa: TRY003 - a build fault
            seen.add(operation.get("operationId", ""))
            _refine_operation(operation)
    for name, schema in list(schemas.items()):
        if name not in COMPONENTS:
            schemas[name] = _named(schema)
    return document


def _refine_operation(operation: dict[str, Any]) -> None:
    for code, answer in operation.get("responses", {}).items():
        for content in (answer.get("content") or {}).values():
            if "schema" in content:
                content["schema"] = _named(content["schema"])
        status = int(code)
        if status in (429, 503) or (status == 409 and _is_submission(operation)):
            answer.setdefault("headers", {})["Retry-After"] = _HEADERS["Retry-After"]
        if status in (201, 202) and _creates(operation):
            answer.setdefault("headers", {})["Location"] = _HEADERS["Location"]
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "header" and parameter.get("name") == "idempotency-key":
            parameter["name"] = "Idempotency-Key"
            parameter["description"] = _IDEMPOTENCY_KEY_DESCRIPTION
            parameter["schema"] = {"type": "string", "maxLength": 255}
    body = (operation.get("requestBody") or {}).get("content", {}).get(S.JSON)
    if body is not None and operation.get("operationId") in ("submitRun", "callSyncAction"):
        body["example"] = {"parameters": {"who": "world"}}


def _is_submission(operation: dict[str, Any]) -> bool:
    return operation.get("operationId") == "submitRun"


def _creates(operation: dict[str, Any]) -> bool:
    """Operations whose 201/202 answer carries a ``Location`` (a run, an execution)."""
    return operation.get("operationId") in ("submitRun", "startExecution")
