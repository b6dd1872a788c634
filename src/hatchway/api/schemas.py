"""JSON schemas of the API's answers, for the OpenAPI document (and schemathesis' checks of it).

The answers themselves are built by the service's records (``to_api``); these schemas describe
them so clients can generate code and so the test suite can verify every answer against them.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
STRING = {"type": "string"}
INT = {"type": "integer"}
TIME = {"type": "string", "format": "date-time"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


#: one problem of a request that does not validate (an item of an error's ``details``)
VALIDATION_ERROR = obj(
    ["loc", "msg", "type"],
    loc={"type": "array", "items": {"anyOf": [STRING, INT]}, "description": "where: body, query, header, path..."},
    msg={"type": "string", "description": "what is wrong, in words"},
    type={"type": "string", "description": "a stable code: missing, extra_forbidden, string_too_long..."},
)

ERROR = obj(
    ["status", "error", "code", "message"],
    status={"type": "string", "enum": ["error"]},
    error=STRING,
    code=INT,
    message=STRING,
    exceptionId=STRING,
    runId=STRING,
    details={"type": "array", "items": VALIDATION_ERROR},
)

LOG_ENTRY = obj(
    ["seq", "k", "ts", "msg"],
    seq=INT,
    k={"type": "string", "enum": ["stdout", "stderr", "system"]},
    ts=INT,
    msg=STRING,
    err=obj([], name=STRING, message=STRING, stack=STRING),
)

RUN_STATUS = {"type": "string", "enum": ["ENQUEUED", "INPROGRESS", "SUCCESSFUL", "FAILED", "TERMINATING", "TERMINATED"]}
RUN_ERROR = obj(["kind", "message"], kind=STRING, message=STRING, exceptionId=nullable(STRING), code=nullable(INT))
ACTION_REF = obj(["name", "version", "digest"], name=STRING, version=INT, digest=STRING)

RUN = obj(
    ["id", "project_id", "environment", "action", "invoked", "mode", "status", "attempt", "max_attempts",
     "parameters", "ret", "exports", "os", "error", "created_at"],
    id={"type": "string", "pattern": "^run_[0-9A-Z]{26}$"},
    project_id=STRING,
    environment=STRING,
    action=ACTION_REF,
    invoked=STRING,
    mode={"type": "string", "enum": ["async", "sync"]},
    status=RUN_STATUS,
    status_reason=nullable(STRING),
    attempt=INT,
    max_attempts=INT,
    parameters={"type": "object"},
    ret={},
    exports={"type": "object"},
    os={"type": "array", "items": LOG_ENTRY},
    error=nullable(RUN_ERROR),
    created_at=TIME,
    started_at=nullable(TIME),
    finished_at=nullable(TIME),
    duration_ms=nullable(INT),
    external_user_id=nullable(STRING),
)  # fmt: skip

#: a run as list pages show it: without ``os``, which ``GET .../runs/{run_id}`` has
RUN_SUMMARY = {
    **RUN,
    "required": [name for name in RUN["required"] if name != "os"],
    "properties": {name: schema for name, schema in RUN["properties"].items() if name != "os"},
}

#: an action.json as the gateway normalised it (defaults applied)
ACTION_DEFINITION = {"type": "object", "additionalProperties": True, "description": "the action.json, normalised"}

ACTION = obj(
    ["name", "version", "digest", "created_at", "spec"],
    name=STRING,
    version=INT,
    digest={"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
    created_at=TIME,
    spec=ACTION_DEFINITION,
)

PROJECT = obj(["id", "name", "created_at"], id=STRING, name=STRING, created_at=TIME)

TOKEN = obj(
    ["id", "scopes", "environments", "expires_at"],
    id=STRING,
    name=nullable(STRING),
    scopes={"type": "array", "items": STRING},
    environments=nullable({"type": "array", "items": STRING}),
    created_at=TIME,
    expires_at=nullable(TIME),
    last_used_at=nullable(TIME),
)

NEW_TOKEN = {**TOKEN, "required": ["token", *TOKEN["required"]], "properties": {**TOKEN["properties"], "token": STRING}}

SYNC_RESULT = obj(
    ["run_id", "status", "ret", "exports", "os", "duration_ms"],
    run_id=STRING,
    status={"type": "string", "enum": ["SUCCESSFUL"]},
    ret={},
    exports={"type": "object"},
    os={"type": "array", "items": LOG_ENTRY},
    duration_ms=nullable(INT),
)

ENCRYPTED = {
    "type": "object",
    "properties": {"ciphertext": STRING, "values": {"type": "object", "additionalProperties": STRING}},
}

HEALTH = obj(["status", "version"], status={"type": "string", "enum": ["ok"]}, version=STRING)


def page(item: dict[str, Any]) -> dict[str, Any]:
    return obj(["items", "next"], items={"type": "array", "items": item}, next=nullable(STRING))


ERROR_NAMES = {
    400: "User error",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation error",
    429: "Too many requests",
    500: "Application error",
    503: "Service unavailable",
    504: "Timeout",
}


def responses(ok: int, schema: dict[str, Any] | None, description: str, *errors: int) -> dict[int, Any]:
    """The documented answers of a route: its success and the errors it may give."""
    documented: dict[int, Any] = {}
    if schema is None:
        documented[ok] = {"description": description}
    else:
        documented[ok] = {"description": description, "content": {JSON: {"schema": schema}}}
    for code in sorted({401, 403, 404, 405, 413, 415, 422, 429, 500, 503, *errors}):
        documented[code] = {"description": ERROR_NAMES[code], "content": {JSON: {"schema": ERROR}}}
    return documented
