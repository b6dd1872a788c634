"""Run parameters: checked against the action, secrets found at any depth, session claims filled in.

Two shapes of parameters exist. The flat ``parameters`` list of ``action.json`` takes scalars
(coerced to strings, as defaults are) and refuses unknown names. An action that declares a
``parameters_schema`` (a JSON Schema) takes any JSON that validates, with ``#`` keys secret at any
depth - Keboola's convention. Both can be declared together: the flat list then supplies
defaults and required names, the schema validates the whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hatchway.config import InputLimits
from hatchway.domain.spec import ActionSpec, coerce_str, is_secret_name
from hatchway.errors import BadRequest, ValidationFailed
from hatchway.secrets.redact import HIDDEN as HIDDEN  # (the use cases read it here until step R1)

Transform = Callable[[str, str], str]  # (dotted path, value) -> value

#: what a secret value's ciphertext starts with (:mod:`hatchway.secrets.box` makes them)
CIPHERTEXT_PREFIX = "hwenc:v1:"
#: the binding of a ciphertext any action of its project and environment may decrypt
ANY_ACTION = "*"


def is_ciphertext(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(CIPHERTEXT_PREFIX)


def context_for(project_id: str, environment: str, action: str | None) -> dict[str, str]:
    """The encryption context binding a ciphertext to a project, an environment and an action."""
    return {"project_id": project_id, "environment": environment, "action": action or ANY_ACTION}


def prepare(spec: ActionSpec, given: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    """Given parameters checked and defaulted (secrets still as given).

    ``partial`` is for sync actions under a schema: a form calls them before it is complete (to
    load a field's choices, to test a connection), so what is given must be valid but what is
    missing is no error - Keboola sends its sync actions the configuration as far as it goes.
    """
    if spec.parameters_schema is not None:
        return _with_schema(spec, given, partial)
    declared = {p.name for p in spec.parameters}
    unknown = sorted(set(given) - declared)
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    problems = []
    for name, value in given.items():
        if value is None or isinstance(value, dict | list):
            problems.append(
                {
                    "loc": ["body", "parameters", name],
                    "msg": "a parameter value is a string, a number or a boolean",
                    "type": "scalar_type",
                }
            )
            continue
        out[name] = coerce_str(value)
    if problems:
        raise ValidationFailed(f"invalid parameter {problems[0]['loc'][-1]!r}: {problems[0]['msg']}", problems)
    _defaults(spec, out)
    return out


def _defaults(spec: ActionSpec, out: dict[str, Any]) -> None:
    for param in spec.parameters:
        if param.name not in out:
            if param.default is not None:
                out[param.name] = param.default
            elif param.required:
                raise BadRequest(f"missing required parameter {param.name!r}")


def _with_schema(spec: ActionSpec, given: dict[str, Any], partial: bool) -> dict[str, Any]:
    from jsonschema.validators import validator_for

    out = dict(given)
    _defaults(spec, out)
    schema = spec.parameters_schema or {}
    validator = validator_for(schema)(schema)
    errors = sorted(
        (e for e in validator.iter_errors(out) if not (partial and e.validator == "required")),
        key=lambda e: list(e.absolute_path),
    )
    if errors:
        details = [
            {
                "loc": ["body", "parameters", *error.absolute_path],
                "msg": _schema_message(error),
                "type": f"schema_{error.validator}",
            }
            for error in errors
        ]
        where = ".".join(str(p) for p in details[0]["loc"][2:]) or "parameters"
        raise ValidationFailed(f"parameters do not match the action's schema at {where}: {details[0]['msg']}", details)
    for path, value in walk_secrets(out):
        if not isinstance(value, str):
            raise ValidationFailed.at(["body", "parameters", *path], "a secret (# key) holds a string", "secret_type")
    return out


def _schema_message(error: Any) -> str:
    # jsonschema quotes the offending instance in its message; a secret must never be echoed
    # (at a # path, or anywhere inside the value it quotes)
    if any(is_secret_name(str(p)) for p in error.absolute_path) or walk_secrets(error.instance):
        return f"does not satisfy '{error.validator}'"
    message = str(error.message)
    return message if len(message) <= 300 else message[:300] + "..."


# ---------------------------------------------------------------------------------------------
# bounds: what a request may hold, checked before anything is encrypted, stored or run

#: an Encryption SDK message is its plaintext in 4 KiB frames (32 bytes of each frame's IV, tag
#: and sequence number) behind a header with the context and the wrapped data key
_FRAME, _FRAME_OVERHEAD, _HEADER_BYTES = 4096, 32, 1024
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_too_deep(text: str, limit: int) -> bool:
    """Whether the JSON document ``text`` nests arrays and objects deeper than ``limit``.

    Decided on the text, before parsing: a parser (and every walk over what it built) recurses
    once per level, so a body of a million ``[`` must be refused before it reaches one. Linear in
    the text; the passes after the first (one per level, at most ``limit``) see only brackets.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).replace("{", "[").replace("}", "]")
    for _ in range(limit):
        inner = brackets.replace("[]", "")  # one level less (the result is not scanned again)
        if inner == brackets:
            return False  # not balanced: the parser will say so
        brackets = inner
    return bool(brackets)


def secret_bytes(value: str) -> int:
    """The size of a secret in UTF-8 bytes; for a ciphertext, at least what its plaintext has."""
    if not is_ciphertext(value):
        return len(value.encode())
    message = (len(value) - len(CIPHERTEXT_PREFIX)) * 3 // 4
    return max(0, (message - _HEADER_BYTES) * _FRAME // (_FRAME + _FRAME_OVERHEAD))


def check_limits(parameters: dict[str, Any], payload: Any, limits: InputLimits) -> None:
    """Refuse (422) a request over the input limits: too many parameters, a value, a secret or
    the secrets together too large. Every ``#`` value counts, in parameters and ``input`` alike."""
    where: list[str | int] = ["body", "parameters"]
    if len(parameters) > limits.max_parameters:
        raise ValidationFailed.at(where, f"at most {limits.max_parameters} parameters", "too_many_parameters")
    total = 0
    pending: list[tuple[list[str | int], Any, bool]] = [(where, parameters, True), (["body", "input"], payload, False)]
    while pending:
        loc, data, is_parameter = pending.pop()
        items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
        for key, value in items:
            at = [*loc, key]
            if isinstance(key, str) and is_secret_name(key) and isinstance(value, str):
                size = secret_bytes(value)
                if size > limits.max_secret_bytes:
                    raise ValidationFailed.at(
                        at, f"a secret may hold at most {limits.max_secret_bytes} bytes", "secret_too_long"
                    )
                total += size
                if total > limits.max_secrets_bytes:
                    raise ValidationFailed.at(
                        at, f"the secrets of a request may hold at most {limits.max_secrets_bytes} bytes together",
                        "secrets_too_long",
                    )  # fmt: skip
            elif isinstance(value, dict | list):
                pending.append((at, value, is_parameter))
            elif is_parameter and isinstance(value, str) and len(value.encode()) > limits.max_parameter_bytes:
                raise ValidationFailed.at(
                    at, f"a parameter value may hold at most {limits.max_parameter_bytes} bytes", "value_too_long"
                )
            if is_parameter and isinstance(key, str) and len(key.encode()) > limits.max_parameter_bytes:
                raise ValidationFailed.at(loc, "a parameter name is too long", "value_too_long")


def walk_secrets(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) whose key starts with ``#``, at any depth."""
    found: list[tuple[tuple[Any, ...], Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and is_secret_name(key):
                found.append(((*path, key), value))
            else:
                found.extend(walk_secrets(value, (*path, key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.extend(walk_secrets(value, (*path, index)))
    return found


def map_secrets(data: Any, transform: Callable[[str], str]) -> Any:
    """A copy of ``data`` with every ``#`` key's string value transformed (encrypt, decrypt)."""
    if isinstance(data, dict):
        return {
            key: (transform(value) if isinstance(key, str) and is_secret_name(key) and isinstance(value, str)
                  else map_secrets(value, transform))
            for key, value in data.items()
        }  # fmt: skip
    if isinstance(data, list):
        return [map_secrets(value, transform) for value in data]
    return data


def hide_secrets(data: Any) -> Any:
    """A copy of ``data`` with every ``#`` key's value shown as ``[hidden]``."""
    if isinstance(data, dict):
        return {
            key: (HIDDEN if isinstance(key, str) and is_secret_name(key) else hide_secrets(value))
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [hide_secrets(value) for value in data]
    return data


# ---------------------------------------------------------------------------------------------
# session placeholders: $Session{claim}{nested.path}

SESSION_PLACEHOLDER = re.compile(r"\$Session\{([^{}]+)\}(?:\{([^{}]*)\})?")


def claim_value(claims: dict[str, Any], claim: str, path: str | None) -> Any:
    if claim not in claims:
        raise BadRequest(f"the session token has no claim {claim!r}")
    value = claims[claim]
    for part in [p for p in (path or "").split(".") if p]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise BadRequest(f"the session token's claim {claim!r} has no {path!r}")
    return value


def fill_session(data: Any, claims: dict[str, Any]) -> Any:
    """Replace ``$Session{claim}{path}`` placeholders in every string of ``data``.

    A string that is exactly one placeholder takes the claim's value with its JSON type; a
    placeholder inside a longer string is replaced by the value's text.
    """
    if isinstance(data, dict):
        return {key: fill_session(value, claims) for key, value in data.items()}
    if isinstance(data, list):
        return [fill_session(value, claims) for value in data]
    if not isinstance(data, str) or "$Session{" not in data:
        return data
    whole = SESSION_PLACEHOLDER.fullmatch(data)
    if whole:
        return claim_value(claims, whole.group(1), whole.group(2))
    return SESSION_PLACEHOLDER.sub(lambda m: coerce_str(claim_value(claims, m.group(1), m.group(2))), data)


def has_session_placeholders(data: Any) -> bool:
    if isinstance(data, dict):
        return any(has_session_placeholders(v) for v in data.values())
    if isinstance(data, list):
        return any(has_session_placeholders(v) for v in data)
    return isinstance(data, str) and "$Session{" in data
