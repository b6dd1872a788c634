"""``action.json``: the models, their rules, and the digest of a normalised spec.

The fields and rules are those of Roboto's ``action.json`` (compute table, ``image_uri`` xor
``docker_config``, ``inherits`` exclusivity, parameter defaults coerced to strings, timeout in
minutes), where its documentation and its SDK disagree the documentation wins, plus hatchway's own
``sync_actions``, ``retry`` and ``warm``. Unknown fields are refused with the field named.

A spec is *normalised* by validating it and dumping it back without ``null`` fields; its digest is
SHA-256 over the canonical JSON (sorted keys, no whitespace, UTF-8) of that normal form, so two
documents that mean the same thing have the same digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hatchway.errors import ValidationFailed

ACTION_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SYNC_ACTION_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
PARAM_NAME_RE = re.compile(r"^#?[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
RUN_ACTION = "run"


def _matching(pattern: re.Pattern[str], message: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


#: a reference to an action by name, and to one of its versions by digest (action.json and pipelines)
ActionName = Annotated[str, _matching(ACTION_NAME_RE, "not a valid action name")]
Digest = Annotated[str, _matching(DIGEST_RE, "a digest is 'sha256:' followed by 64 lowercase hex digits")]

DEFAULT_VCPU = 512
DEFAULT_MEMORY = 1024
DEFAULT_STORAGE = 21
MIN_STORAGE = 21
MAX_STORAGE = 200
DEFAULT_TIMEOUT_MINUTES = 720
MAX_TIMEOUT_MINUTES = 7 * 24 * 60


def _steps(lo: int, hi: int, step: int) -> frozenset[int]:
    return frozenset(range(lo, hi + 1, step))


#: vCPU units (1024 = one vCPU) -> the memory sizes (MiB) that may go with them.
COMPUTE_TABLE: dict[int, frozenset[int]] = {
    256: frozenset({512, 1024, 2048}),
    512: _steps(1024, 4096, 1024),
    1024: _steps(2048, 8192, 1024),
    2048: _steps(4096, 16384, 1024),
    4096: _steps(8192, 30720, 1024),
    8192: _steps(16384, 61440, 4096),
    16384: _steps(32768, 122880, 8192),
}


def coerce_str(value: Any) -> str:
    """Coerce a parameter value to the string an action receives (JSON spelling for non-strings)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def is_secret_name(name: str) -> bool:
    return name.startswith("#")


class _Model(BaseModel):
    # defer_build: validators are built on first use, not at import (a Lambda cold start imports them all)
    model_config = ConfigDict(defer_build=True, extra="forbid", populate_by_name=True, str_strip_whitespace=False)


class Parameter(_Model):
    """A value given to the action at invocation time; names starting with ``#`` are secret."""

    name: str
    description: str | None = None
    required: bool = False
    default: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not PARAM_NAME_RE.match(value):
            raise ValueError(
                "a parameter name is a letter or _ then letters, digits, _ . - (an optional leading # "
                "marks it secret), at most 128 characters"
            )
        return value

    @field_validator("default", mode="before")
    @classmethod
    def _default_to_str(cls, value: Any) -> str | None:
        return None if value is None else coerce_str(value)


class ComputeRequirements(_Model):
    """CPU units, memory (MiB) and ephemeral storage (GiB) for each invocation."""

    vCPU: int = DEFAULT_VCPU  # noqa: N815 - the documented field name
    memory: int = DEFAULT_MEMORY
    storage: int = DEFAULT_STORAGE

    @model_validator(mode="after")
    def _table(self) -> ComputeRequirements:
        allowed = COMPUTE_TABLE.get(self.vCPU)
        if allowed is None:
            raise ValueError(f"vCPU must be one of {sorted(COMPUTE_TABLE)} (1024 units = 1 vCPU)")
        if self.memory not in allowed:
            lo, hi = min(allowed), max(allowed)
            raise ValueError(
                f"memory {self.memory} MiB is not valid with vCPU {self.vCPU}; "
                f"choose one of {lo}..{hi} MiB as the compute table lists"
            )
        if not MIN_STORAGE <= self.storage <= MAX_STORAGE:
            raise ValueError(f"storage must be between {MIN_STORAGE} and {MAX_STORAGE} GiB")
        return self


class ContainerParameters(_Model):
    """Overrides of the image's entrypoint, command, environment and working directory."""

    entry_point: list[str] | None = None
    command: list[str] | None = None
    env_vars: dict[str, str] | None = None
    workdir: str | None = None

    @field_validator("env_vars")
    @classmethod
    def _env_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not ENV_NAME_RE.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key.upper().startswith("HATCHWAY_"):
                raise ValueError(f"{key!r}: HATCHWAY_ variables are set by the gateway")
        return value

    @property
    def argv(self) -> list[str]:
        return [*(self.entry_point or []), *(self.command or [])]


class DockerImageConfig(_Model):
    """How to build the action's image from a Dockerfile."""

    dockerfile: str | None = None
    context: str | None = None
    build_args: dict[str, str] | None = None


class ActionReference(_Model):
    """Another action whose image, container parameters and parameters this one reuses."""

    name: ActionName
    owner: str | None = None
    digest: Digest | None = None


class RetryPolicy(_Model):
    """How often an async run is retried after an application error or a timeout (never after exit 1)."""

    count: Annotated[int, Field(ge=0, le=10)] = 0
    interval_seconds: Annotated[float, Field(ge=0, le=3600)] = 0


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


class HttpCall(_Model):
    """An HTTP action: the gateway makes this call itself (Ductape-style), no container involved.

    ``url``, ``headers``, ``query`` and ``body`` are templates: ``{params.customerId}``,
    ``{query.x}``, ``{body.x}``, ``{headers.x}`` read the run request's ``input``;
    ``{parameters.name}`` reads the action's (decrypted) parameters.
    """

    method: str = "GET"
    url: Annotated[str, Field(min_length=1, max_length=4096)]
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    body: Any = None
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 30.0
    follow_redirects: bool = True

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in HTTP_METHODS:
            raise ValueError(f"method is one of {', '.join(HTTP_METHODS)}")
        return value.upper()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value


_INHERITED = ("image_uri", "docker_config", "container_parameters", "parameters", "requires_downloaded_inputs")


class ActionSpec(_Model):
    """An ``action.json`` document."""

    name: str
    description: str | None = None
    short_description: str | None = None
    parameters: list[Parameter] = Field(default_factory=list)
    requires_downloaded_inputs: bool | None = None
    compute_requirements: ComputeRequirements = Field(default_factory=ComputeRequirements)
    container_parameters: ContainerParameters | None = None
    image_uri: Annotated[str, Field(min_length=1)] | None = None
    docker_config: DockerImageConfig | None = None
    inherits: ActionReference | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    timeout: Annotated[int, Field(ge=1, le=MAX_TIMEOUT_MINUTES)] | None = None
    sync_actions: list[str] = Field(default_factory=list)
    retry: RetryPolicy | None = None
    parameters_schema: dict[str, Any] | None = None
    http: HttpCall | None = None
    warm: bool | None = Field(
        default=None,
        description=(
            "answer sync calls from a warm server: the action's process, started once, imports its code and "
            "forks per call (a Python action ending in hatchway.runtime.main(); the process executor only - "
            "Docker and AWS ignore it)"
        ),
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ACTION_NAME_RE.match(value):
            raise ValueError(
                "an action name is lowercase letters, digits and '-', starting with a letter or digit, "
                "at most 63 characters"
            )
        return value

    @field_validator("sync_actions")
    @classmethod
    def _sync_actions(cls, value: list[str]) -> list[str]:
        for name in value:
            if name == RUN_ACTION:
                raise ValueError("'run' is the asynchronous action and cannot be a sync action")
            if not SYNC_ACTION_RE.match(name):
                raise ValueError(f"{name!r} is not a valid sync action name")
        if len(set(value)) != len(value):
            raise ValueError("sync action names must be unique")
        return value

    @field_validator("parameters")
    @classmethod
    def _unique_parameters(cls, value: list[Parameter]) -> list[Parameter]:
        names = [p.name for p in value]
        if len(set(names)) != len(names):
            raise ValueError("parameter names must be unique")
        return value

    @field_validator("parameters_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        from jsonschema import SchemaError
        from jsonschema.validators import validator_for

        try:
            validator_for(value).check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value

    @model_validator(mode="after")
    def _exclusive(self) -> ActionSpec:
        if self.image_uri is not None and self.docker_config is not None:
            raise ValueError("image_uri and docker_config are mutually exclusive: give one")
        if self.http is not None and (self.image_uri or self.docker_config or self.argv or self.inherits):
            raise ValueError("an HTTP action has no image, command or inherited action")
        if self.inherits is not None:
            given = [name for name in _INHERITED if name in self.model_fields_set]
            if given:
                raise ValueError(
                    f"an action with inherits takes {', '.join(given)} from the inherited action; omit them"
                )
        return self

    # -- derived values -----------------------------------------------------------------------

    @property
    def timeout_seconds(self) -> int:
        return (self.timeout or DEFAULT_TIMEOUT_MINUTES) * 60

    @property
    def argv(self) -> list[str]:
        return self.container_parameters.argv if self.container_parameters else []

    def parameter(self, name: str) -> Parameter | None:
        for param in self.parameters:
            if param.name == name:
                return param
        return None

    def normalised(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_none=True)
        if self.inherits is not None:
            for name in _INHERITED:
                data.pop(name, None)  # defaults only: the real values come from the parent
        return data

    def digest(self) -> str:
        return digest_of(self.normalised())

    def with_parent(self, parent: ActionSpec) -> ActionSpec:
        """The effective spec of an inheriting action: the parent's image, container and parameters."""
        return self.model_copy(update={name: getattr(parent, name) for name in _INHERITED})


def has_image(spec: ActionSpec) -> bool:
    """Whether the action brings a container image (a URI, or a Dockerfile to build)."""
    return bool(spec.image_uri or spec.docker_config)


def resolve_local_paths(document: Any, base_dir: Path) -> Any:
    """Make an action.json's host paths absolute, relative to the directory of the file.

    ``docker_config.context`` and ``dockerfile`` are where the action's source lives on this host;
    the gateway builds images from them and the process executor runs the command there. A host
    action (no image, nothing inherited) gets its ``workdir`` resolved the same way.
    """
    if not isinstance(document, dict):
        return document
    doc = json.loads(json.dumps(document))
    docker = doc.get("docker_config")
    if isinstance(docker, dict):
        context = Path(docker.get("context") or ".")
        docker["context"] = str(context if context.is_absolute() else (base_dir / context).resolve())
        dockerfile = docker.get("dockerfile")
        if isinstance(dockerfile, str) and not Path(dockerfile).is_absolute():
            docker["dockerfile"] = str((base_dir / dockerfile).resolve())
    elif doc.get("image_uri") is None and doc.get("inherits") is None:
        container = doc.get("container_parameters")
        if isinstance(container, dict):
            workdir = container.get("workdir")
            if not isinstance(workdir, str) or not Path(workdir).is_absolute():
                container["workdir"] = str((base_dir / (workdir or ".")).resolve())
    return doc


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(normalised: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(normalised)).hexdigest()


def validation_details(exc: ValidationError, prefix: list[str | int] | None = None) -> list[dict[str, Any]]:
    """pydantic errors as the API's ``details``: location, a readable message, a type; never input."""
    details = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [*(prefix or []), *err["loc"]]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown field {str(err['loc'][-1])!r}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        details.append({"loc": loc, "msg": msg, "type": err["type"]})
    return details


def parse_spec(document: Any) -> ActionSpec:
    """Validate an ``action.json`` document, raising :class:`ValidationFailed` with every problem."""
    if not isinstance(document, dict):
        raise ValidationFailed.at(["body"], "an action.json document is a JSON object", "type_error")
    try:
        return ActionSpec.model_validate(document)
    except ValidationError as exc:
        details = validation_details(exc, ["body"])
        first = details[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "body"
        raise ValidationFailed(f"action.json is invalid: {where}: {first['msg']}", details) from None
