"""Pipeline definitions: the models, their rules, and the shape the engines walk.

A pipeline is Buddy's: ordered steps, each run *when* its ``trigger_time`` says, related to the
next step by ``run_next``. The steps of one trigger time form a **section**: the main section
(``ON_EVERY_EXECUTION``) runs first; when it ends, the section its outcome selects runs
(``ON_SUCCESS`` and, after a failed previous execution, ``ON_BACK_TO_SUCCESS``; ``ON_WARNING``;
``ON_FAILURE``; ``ON_TERMINATE``). ``ON_WAIT_FOR_APPROVE`` steps run while the approval gate (a
``WAIT_FOR_APPROVE`` step of the main section) waits. Inside a section, consecutive steps joined
by ``IN_SOFT_PARALLEL``/``IN_HARD_PARALLEL`` form a parallel **group**; a group is *hard* when
one of its links is hard (a failure stops the siblings), else *soft* (siblings run to their end,
then the pipeline fails).

Parameter values (and the variables of a container step) may refer to pipeline variables
(``$NAME`` or ``${NAME}``) and to results of steps that ran before (``${steps.<name>.exports.<key>}``,
``${steps.<name>.ret.<path>}``); ``$$`` is a literal ``$``. References are checked here, when
the pipeline is defined: an unknown variable, a step that does not run before the referring one
(a forward reference or a cycle), or an encrypted variable in a parameter that is not secret
(``#``) is refused with the field named.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hatchway.domain.pipelines import filesystem
from hatchway.domain.pipelines.filesystem import MAX_MAPPINGS
from hatchway.domain.spec import (
    ACTION_NAME_RE,
    SYNC_ACTION_RE,
    ActionName,
    Digest,
    coerce_str,
    is_secret_name,
    validation_details,
)
from hatchway.errors import ValidationFailed
from hatchway.runtime.redact import HIDDEN

if TYPE_CHECKING:
    from hatchway.domain.pipelines.records import PipelineRecord

PIPELINE_NAME_RE = ACTION_NAME_RE
STEP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
VARIABLE_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_STEPS = 100
MAX_VARIABLES = 200
MAX_STEP_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_LOOP_VALUES = 100
#: a user of the image (name or uid, optionally :group), as Docker's --user takes it
_ID = r"[A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10}"
RUN_AS_USER_RE = re.compile(rf"^(?P<user>{_ID})(?::(?P<group>{_ID}))?$")
#: a value that is one variable and nothing else (``$NAME`` or ``${NAME}``)
VARIABLE_ONLY_RE = re.compile(r"^\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))$")
#: the parameter of a container step that carries its variables to the shell prelude
VARIABLES_PARAMETER = "#HATCHWAY_VARIABLES"


class TriggerTime(StrEnum):
    ON_EVERY_EXECUTION = "ON_EVERY_EXECUTION"
    ON_SUCCESS = "ON_SUCCESS"
    ON_FAILURE = "ON_FAILURE"
    ON_BACK_TO_SUCCESS = "ON_BACK_TO_SUCCESS"
    ON_WARNING = "ON_WARNING"
    ON_WAIT_FOR_APPROVE = "ON_WAIT_FOR_APPROVE"
    ON_TERMINATE = "ON_TERMINATE"


class RunNext(StrEnum):
    WAIT_ON_SUCCESS = "WAIT_ON_SUCCESS"
    IN_SOFT_PARALLEL = "IN_SOFT_PARALLEL"
    IN_HARD_PARALLEL = "IN_HARD_PARALLEL"


class StepType(StrEnum):
    ACTION = "ACTION"
    RUN_DOCKER_CONTAINER = "RUN_DOCKER_CONTAINER"
    WAIT_FOR_APPROVE = "WAIT_FOR_APPROVE"


class Shell(StrEnum):
    SH = "SH"
    BASH = "BASH"


class Condition(StrEnum):
    VAR_IS = "VAR_IS"
    VAR_IS_NOT = "VAR_IS_NOT"
    VAR_CONTAINS = "VAR_CONTAINS"
    VAR_NOT_CONTAINS = "VAR_NOT_CONTAINS"


#: the outcome of the main section -> the trigger times whose steps run next
SECTIONS: dict[str, tuple[TriggerTime, ...]] = {
    "SUCCESSFUL": (TriggerTime.ON_SUCCESS, TriggerTime.ON_BACK_TO_SUCCESS),
    "WARNING": (TriggerTime.ON_WARNING,),
    "FAILED": (TriggerTime.ON_FAILURE,),
    "TERMINATED": (TriggerTime.ON_TERMINATE,),
}


class _Model(BaseModel):
    # defer_build: validators are built on first use, not at import (a Lambda cold start imports them all)
    model_config = ConfigDict(defer_build=True, extra="forbid", str_strip_whitespace=False)


Scalar = str | int | float | bool


class Variable(_Model):
    """A pipeline variable (Buddy's EnvironmentVariableView, the fields that make sense here)."""

    key: str
    value: str = ""
    description: Annotated[str, Field(max_length=1000)] | None = None
    encrypted: bool = False
    settable: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not VARIABLE_KEY_RE.match(value):
            raise ValueError("a variable key is a letter or _ then letters, digits and _, at most 128 characters")
        return value

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Any:
        return coerce_str(value) if isinstance(value, Scalar) else value


class TriggerCondition(_Model):
    """Run the step only when a variable has (or lacks) a value."""

    trigger_condition: Condition
    trigger_variable_key: str
    trigger_variable_value: str = ""

    @field_validator("trigger_variable_value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Any:
        return coerce_str(value) if isinstance(value, Scalar) else value

    def holds(self, value: str | None) -> bool:
        text = value or ""
        if self.trigger_condition == Condition.VAR_IS:
            return text == self.trigger_variable_value
        if self.trigger_condition == Condition.VAR_IS_NOT:
            return text != self.trigger_variable_value
        if self.trigger_condition == Condition.VAR_CONTAINS:
            return self.trigger_variable_value in text
        return self.trigger_variable_value not in text


class Step(_Model):
    """One step: an action (run or sync action), a Run Docker container step, or an approval gate."""

    name: str
    type: StepType | None = None
    # an action step
    action: ActionName | None = None
    version: Annotated[int, Field(ge=1)] | None = None
    digest: Digest | None = None
    parameters: dict[str, Scalar] = Field(default_factory=dict)
    sync_action: str | None = None
    # a Run Docker container step
    docker_image_name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    docker_image_tag: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    execute_commands: list[str] = Field(default_factory=list)
    #: Buddy's commands as one text (its view gives both): run as written when execute_commands is empty
    inline_commands: Annotated[str, Field(max_length=65536)] | None = None
    setup_commands: list[str] = Field(default_factory=list)
    shell: Shell | None = None
    working_directory: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    entrypoint: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    reset_entrypoint: bool | None = None
    execute_every_command: bool | None = None
    run_as_user: Annotated[str, Field(min_length=1, max_length=65)] | None = None
    variables: list[Variable] = Field(default_factory=list)
    # the pipeline filesystem (hatchway.domain.pipelines.filesystem)
    volume_mappings: list[str] = Field(default_factory=list, max_length=MAX_MAPPINGS)
    mount_filesystem_disable: bool | None = None
    export_container_path: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    #: the step's commands run once per value, as $BUDDY_LOOP_VALUE
    loop: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=MAX_LOOP_VALUES)
    # Buddy's registry and test-report fields of a Run Docker container step: accepted and echoed
    # as given, with no meaning on one machine (the image comes from this gateway's engine; a
    # registry password is refused rather than stored)
    registry: Annotated[str, Field(max_length=1024)] | None = None
    insecure_registry: bool | None = None
    login: Annotated[str, Field(max_length=256)] | None = None
    region: Annotated[str, Field(max_length=64)] | None = None
    image_location: Literal["PUBLIC_REGISTRY", "PRIVATE_REGISTRY", "ACTION", "PACKAGE_REGISTRY"] | None = None
    docker_registry: (
        Literal[
            "NONE", "DOCKER_HUB", "AMAZON_ECR", "GOOGLE_GCR", "GOOGLE_ARTIFACT_REGISTRY", "OTHER",
            "GIT_HUB_CONTAINER_REGISTRY", "PACKAGE_REGISTRY", "DIGITAL_OCEAN_CONTAINER_REGISTRY",
        ]
        | None
    ) = None  # fmt: skip
    ignore_image_pull_failures: bool | None = None
    cache_base_image: bool | None = None
    vt_suite: Annotated[str, Field(max_length=256)] | None = None
    unit_tests_suite: Annotated[str, Field(max_length=256)] | None = None
    unit_tests_path: Annotated[str, Field(max_length=1024)] | None = None
    integration: dict[str, Scalar] | None = None
    main_service_name: Annotated[str, Field(max_length=256)] | None = None
    target_stage: Annotated[str, Field(max_length=256)] | None = None
    # an approval gate
    comment: Annotated[str, Field(max_length=1000)] | None = None
    # when and how every step runs
    trigger_time: TriggerTime = TriggerTime.ON_EVERY_EXECUTION
    trigger_conditions: list[TriggerCondition] = Field(default_factory=list)
    run_next: RunNext = RunNext.WAIT_ON_SUCCESS
    run_only_on_first_failure: bool | None = None
    ignore_errors: bool = False
    #: retries after an application error or a timeout (None: the action's own retry policy)
    retry_count: Annotated[int, Field(ge=0, le=10)] | None = None
    #: seconds before each retry, the same every time: Buddy's delay (None: the action's own interval)
    retry_interval: Annotated[int, Field(ge=0, le=3600)] | None = None
    timeout: Annotated[int, Field(ge=1, le=MAX_STEP_TIMEOUT_SECONDS)] | None = None
    disabled: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not STEP_NAME_RE.match(value):
            raise ValueError(
                "a step name is letters, digits, '_' and '-', starting with a letter or digit, at most 63 characters"
            )
        return value

    @field_validator("loop", mode="before")
    @classmethod
    def _loop(cls, value: Any) -> Any:
        return [coerce_str(v) if isinstance(v, Scalar) else v for v in value] if isinstance(value, list) else value

    @field_validator("sync_action")
    @classmethod
    def _sync_action(cls, value: str | None) -> str | None:
        if value is not None and not SYNC_ACTION_RE.match(value):
            raise ValueError("not a valid sync action name")
        return value

    @property
    def kind(self) -> StepType:
        """The step's type, given or inferred from its fields."""
        if self.type is not None:
            return self.type
        if self.docker_image_name is not None:
            return StepType.RUN_DOCKER_CONTAINER
        return StepType.ACTION

    @property
    def is_gate(self) -> bool:
        return self.kind == StepType.WAIT_FOR_APPROVE

    @property
    def is_sync(self) -> bool:
        return self.kind == StepType.ACTION and self.sync_action is not None

    @property
    def image(self) -> str:
        name = self.docker_image_name or ""
        return f"{name}:{self.docker_image_tag}" if self.docker_image_tag else name

    @property
    def commands(self) -> list[str]:
        """What the shell runs: ``execute_commands``, else ``inline_commands`` as one block."""
        if self.execute_commands:
            return self.execute_commands
        return [self.inline_commands] if self.inline_commands and self.inline_commands.strip() else []

    @property
    def uses_filesystem(self) -> bool:
        """A container step that mounts the pipeline filesystem (or a folder of it)."""
        return not self.mount_filesystem_disable

    @property
    def maps_folders(self) -> bool:
        """A container step that mounts folders of the filesystem by their paths (not only its root)."""
        return any(mapping.partition(":")[0].strip("/.") for mapping in self.volume_mappings)

    @property
    def parallel_with_next(self) -> bool:
        return self.run_next != RunNext.WAIT_ON_SUCCESS


class PipelineSpec(_Model):
    """A pipeline definition as ``PUT .../pipelines/{name}`` receives it."""

    name: str | None = None
    description: Annotated[str, Field(max_length=4000)] | None = None
    variables: list[Variable] = Field(default_factory=list, max_length=MAX_VARIABLES)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    def step(self, name: str) -> Step | None:
        for step in self.steps:
            if step.name == name:
                return step
        return None

    def variable(self, key: str) -> Variable | None:
        for variable in self.variables:
            if variable.key == key:
                return variable
        return None

    def normalised(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)

    # ---- structure ---------------------------------------------------------------------------

    def section(self, *triggers: TriggerTime) -> list[Step]:
        return [step for step in self.steps if step.trigger_time in triggers]

    @property
    def main(self) -> list[Step]:
        return self.section(TriggerTime.ON_EVERY_EXECUTION)

    @property
    def gate(self) -> Step | None:
        return next((step for step in self.main if step.is_gate), None)

    def groups(self, steps: list[Step]) -> list[Group]:
        """The section's steps in run order: parallel groups and single steps."""
        groups: list[Group] = []
        current: list[Step] = []
        hard = False
        for step in steps:
            current.append(step)
            if step.parallel_with_next and step is not steps[-1]:
                hard = hard or step.run_next == RunNext.IN_HARD_PARALLEL
                continue
            groups.append(Group(tuple(current), hard))
            current, hard = [], False
        return groups


@dataclass(frozen=True)
class Group:
    """Steps that run at the same time (one step alone is a group of one)."""

    steps: tuple[Step, ...]
    is_hard: bool = False

    @property
    def is_parallel(self) -> bool:
        return len(self.steps) > 1

    @property
    def names(self) -> list[str]:
        return [step.name for step in self.steps]


# ---------------------------------------------------------------------------------------------
# references


_REFERENCE = re.compile(
    r"\$(?:\$|\{steps\.(?P<step>[A-Za-z0-9][A-Za-z0-9_-]*)\.(?P<kind>exports|ret)(?:\.(?P<path>[^}]*))?\}"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Reference:
    """One ``$...`` in a template: a variable, or a step's export or result."""

    text: str
    variable: str | None = None
    step: str | None = None
    kind: str | None = None  # exports | ret
    path: tuple[str, ...] = ()


def references(template: str) -> Iterator[Reference]:
    """The references in ``template`` (``$$`` is not one)."""
    for match in _REFERENCE.finditer(template):
        if match.group(0) == "$$":
            continue
        if match.group("step"):
            path = tuple(p for p in (match.group("path") or "").split(".") if p != "")
            yield Reference(match.group(0), step=match.group("step"), kind=match.group("kind"), path=path)
        else:
            yield Reference(match.group(0), variable=match.group("braced") or match.group("bare"))


def render(template: str, value_of: Any) -> str:
    """``template`` with each reference replaced by ``value_of(reference)`` and ``$$`` by ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        reference = next(references(match.group(0)))
        return str(value_of(reference))

    return _REFERENCE.sub(replace, template)


#: parsed definitions kept by digest (a stored version never changes, and equal digests mean equal definitions)
SPEC_CACHE_SIZE = 256
_parsed: dict[str, PipelineSpec] = {}
_parsed_lock = threading.Lock()


def spec_of(record: PipelineRecord) -> PipelineSpec:
    """The parsed definition of a stored version (a bounded cache: parsing is the costly part)."""
    spec = _parsed.get(record.digest)
    if spec is None:
        spec = PipelineSpec.model_validate(record.spec)
        with _parsed_lock:
            if len(_parsed) >= SPEC_CACHE_SIZE:
                _parsed.pop(next(iter(_parsed)))
            _parsed[record.digest] = spec
    return spec


# ---------------------------------------------------------------------------------------------
# secret values in a stored definition


@dataclass(frozen=True)
class Slot:
    """Where a secret value sits in a definition: a variable or a secret parameter."""

    path: tuple[str, ...]
    action: str | None


def secret_slots(spec: dict[str, Any]) -> Iterator[tuple[Slot, str]]:
    """Every secret value of a stored definition with where it sits."""
    for variable in spec.get("variables", []):
        if variable.get("encrypted"):
            yield Slot(("variables", variable["key"]), None), variable.get("value", "")
    for step in spec.get("steps", []):
        action = step.get("action")
        for name, value in (step.get("parameters") or {}).items():
            if is_secret_name(name) and isinstance(value, str):
                yield Slot(("steps", step["name"], "parameters", name), action), value
        for variable in step.get("variables", []):
            if variable.get("encrypted"):
                yield Slot(("steps", step["name"], "variables", variable["key"]), None), variable.get("value", "")


def put_secret(spec: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    """Set the secret value at ``path`` (a :class:`Slot`'s) in a stored definition."""
    if path[0] == "variables":
        next(v for v in spec["variables"] if v["key"] == path[1])["value"] = value
        return
    step = next(s for s in spec["steps"] if s["name"] == path[1])
    if path[2] == "parameters":
        step["parameters"][path[3]] = value
    else:
        next(v for v in step["variables"] if v["key"] == path[3])["value"] = value


def hidden(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored definition with every secret value replaced by ``[hidden]``."""
    shown = copy.deepcopy(spec)
    for slot, _ in list(secret_slots(shown)):
        put_secret(shown, slot.path, HIDDEN)
    return shown


# ---------------------------------------------------------------------------------------------
# validation


def parse_pipeline(document: Any, name: str) -> PipelineSpec:
    """Validate a definition's shape and rules, raising :class:`ValidationFailed` with every problem."""
    if isinstance(document, PipelineSpec):
        spec = document
    elif not isinstance(document, dict):
        raise ValidationFailed.at(["body"], "a pipeline definition is a JSON object", "type_error")
    else:
        try:
            spec = PipelineSpec.model_validate(document)
        except ValidationError as exc:
            details = validation_details(exc, ["body"])
            first = details[0]
            where = ".".join(str(part) for part in first["loc"][1:]) or "body"
            raise ValidationFailed(f"the pipeline is invalid: {where}: {first['msg']}", details) from None
    if spec.name is not None and spec.name != name:
        _fail(["name"], f"the body names pipeline {spec.name!r} but the path names {name!r}")
    problems = list(_rules(spec))
    if problems:
        first = problems[0]
        where = ".".join(str(part) for part in first["loc"][1:])
        raise ValidationFailed(f"the pipeline is invalid: {where}: {first['msg']}", problems)
    return spec.model_copy(update={"name": name})


def _fail(loc: list[str | int], msg: str, type_: str = "value_error") -> None:
    raise ValidationFailed(f"the pipeline is invalid: {'.'.join(map(str, loc))}: {msg}", [_detail(loc, msg, type_)])


def _detail(loc: list[str | int], msg: str, type_: str = "value_error") -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": type_}


_CONTAINER_FIELDS = (
    "execute_commands", "inline_commands", "setup_commands", "shell", "working_directory", "entrypoint",
    "reset_entrypoint",
    "execute_every_command", "run_as_user", "variables", "volume_mappings", "mount_filesystem_disable",
    "export_container_path", "loop",
)  # fmt: skip
#: the fields that need the pipeline filesystem or this gateway's Docker engine (refused on AWS)
LOCAL_CONTAINER_FIELDS = ("setup_commands", "run_as_user", "volume_mappings", "export_container_path")
#: Buddy's fields without a meaning on one machine, accepted and echoed on a Run Docker container step
ECHOED_CONTAINER_FIELDS = (
    "registry", "insecure_registry", "login", "region", "image_location", "docker_registry",
    "ignore_image_pull_failures", "cache_base_image", "vt_suite", "unit_tests_suite", "unit_tests_path", "integration",
    "main_service_name", "target_stage",
)  # fmt: skip
_ACTION_FIELDS = ("action", "version", "digest", "parameters", "sync_action")


def concise(step: dict[str, Any]) -> dict[str, Any]:
    """A stored step without the empty fields of the other kinds (``execute_commands: []`` on an action)."""
    kind = step.get("type") or ("RUN_DOCKER_CONTAINER" if step.get("docker_image_name") else "ACTION")
    foreign = {"ACTION": _CONTAINER_FIELDS, "RUN_DOCKER_CONTAINER": _ACTION_FIELDS}.get(
        kind, _CONTAINER_FIELDS + _ACTION_FIELDS
    )
    return {k: v for k, v in step.items() if not (k in foreign and v in ([], {}))}


def _rules(spec: PipelineSpec) -> Iterator[dict[str, Any]]:
    """Every rule a definition breaks, each with the field it concerns."""
    keys = [v.key for v in spec.variables]
    for index, variable in enumerate(spec.variables):
        if keys.index(variable.key) != index:
            yield _detail(["variables", index, "key"], f"variable {variable.key} is declared twice")
    names = [s.name for s in spec.steps]
    for index, step in enumerate(spec.steps):
        if names.index(step.name) != index:
            yield _detail(["steps", index, "name"], f"step {step.name} is named twice; step names must be unique")
        yield from _kind_rules(step, index)
        yield from _when_rules(spec, step, index)
    yield from _gate_rules(spec)
    yield from _reference_rules(spec)
    yield from _filesystem_rules(spec)


def _filesystem_rules(spec: PipelineSpec) -> Iterator[dict[str, Any]]:
    """A step that mounts a folder of the filesystem, or copies into it, runs beside no other
    container with the filesystem: the gateway opens those paths on its host, where a container
    changing the filesystem at the same moment could swap a folder for a link out of it."""
    sections = [spec.main, spec.section(TriggerTime.ON_WAIT_FOR_APPROVE)]
    sections += [spec.section(*triggers) for triggers in SECTIONS.values()]
    for section in sections:
        for group in spec.groups(section):
            sharing = [s for s in group.steps if s.kind == StepType.RUN_DOCKER_CONTAINER and s.uses_filesystem]
            if len(sharing) < 2:
                continue
            for step in sharing:
                field = "volume_mappings" if step.maps_folders else "export_container_path"
                if step.maps_folders or step.export_container_path:
                    yield _detail(
                        ["steps", spec.steps.index(step), field],
                        f"{field} needs the pipeline filesystem to itself: step {step.name} runs in parallel with "
                        f"another container step that mounts it (run_next WAIT_ON_SUCCESS, or mount_filesystem_disable "
                        "on the other)",
                    )


def _given(step: Step, fields: tuple[str, ...]) -> list[str]:
    return [name for name in fields if name in step.model_fields_set and getattr(step, name) not in (None, [], {})]


def _kind_rules(step: Step, index: int) -> Iterator[dict[str, Any]]:
    at: list[str | int] = ["steps", index]
    kind = step.kind
    container = _given(step, (*_CONTAINER_FIELDS, *ECHOED_CONTAINER_FIELDS))
    action = _given(step, _ACTION_FIELDS)
    if kind == StepType.ACTION:
        if container and step.docker_image_name is None:
            yield _detail([*at, "docker_image_name"], "a Run Docker container step needs docker_image_name (an image)")
        elif step.action is None:
            yield _detail(
                [*at, "action"],
                "a step runs an action (action), a container (docker_image_name) or is an approval gate "
                "(type WAIT_FOR_APPROVE)",
                "missing",
            )
        if step.docker_image_name is not None:
            yield _detail([*at, "docker_image_name"], "an action step does not take an image")
    elif kind == StepType.RUN_DOCKER_CONTAINER:
        if step.docker_image_name is None:
            yield _detail([*at, "docker_image_name"], "a Run Docker container step needs docker_image_name (an image)")
        for name in action:
            yield _detail([*at, name], f"a Run Docker container step does not take {name}; use variables")
        if step.entrypoint is not None and step.commands:
            yield _detail(
                [*at, "entrypoint"],
                "give execute_commands (run by the shell) or entrypoint (run without a shell), not both",
            )
        for v_index, variable in enumerate(step.variables):
            if variable.settable:
                yield _detail([*at, "variables", v_index, "settable"], "only pipeline variables are settable")
        yield from _container_rules(step, at)
    else:
        for name in [*action, *container, *_given(step, ("docker_image_name", "docker_image_tag"))]:
            yield _detail([*at, name], f"an approval gate does not take {name}")
        for name in ("ignore_errors", "retry_count", "retry_interval", "timeout"):
            if name in step.model_fields_set and getattr(step, name):
                yield _detail([*at, name], f"an approval gate does not take {name}")
    if step.version is not None and step.digest is not None:
        yield _detail([*at, "digest"], "give version or digest, not both")


def _container_rules(step: Step, at: list[str | int]) -> Iterator[dict[str, Any]]:
    """The rules of a Run Docker container step's own fields (paths, user, loop, entrypoint)."""
    if step.entrypoint is not None and step.reset_entrypoint:
        yield _detail([*at, "reset_entrypoint"], "entrypoint replaces the image's entrypoint already; drop one")
    given_twice = step.execute_commands and step.inline_commands is not None
    if given_twice and (step.inline_commands or "").strip() != "\n".join(step.execute_commands).strip():
        yield _detail([*at, "inline_commands"], "inline_commands is execute_commands as one text: give one")
    if step.loop and not step.commands:
        yield _detail([*at, "loop"], "loop runs the step's execute_commands once per value: give execute_commands")
    if step.run_as_user is not None and not VARIABLE_ONLY_RE.match(step.run_as_user):  # a variable: when it runs
        problem = user_problem(step.run_as_user)
        if problem:
            yield _detail([*at, "run_as_user"], problem)
    if step.mount_filesystem_disable and step.volume_mappings:
        yield _detail([*at, "volume_mappings"], "mount_filesystem_disable leaves the filesystem out: drop one")
    targets: list[str] = []
    for m_index, mapping in enumerate(step.volume_mappings):
        try:
            targets.append(filesystem.parse_mapping(mapping)[1])
        except filesystem.PathRefused as exc:
            yield _detail([*at, "volume_mappings", m_index], str(exc))
            continue
        if targets[-1] in targets[:-1]:
            yield _detail([*at, "volume_mappings", m_index], f"{targets[-1]} is mapped twice")
    if step.working_directory is not None:
        if not step.mount_filesystem_disable and not step.volume_mappings:
            try:  # the filesystem is mounted there
                filesystem.container_path(step.working_directory, "working_directory (where the filesystem is mounted)")
            except filesystem.PathRefused as exc:
                yield _detail([*at, "working_directory"], str(exc))
        elif not step.working_directory.startswith("/"):
            yield _detail([*at, "working_directory"], "working_directory is absolute (starts with /)")
    if step.export_container_path is not None:
        path = step.export_container_path
        if not path.startswith("/") or ".." in path.split("/") or "\0" in path:
            yield _detail([*at, "export_container_path"], "an absolute path of the container, without '..'")
        elif step.mount_filesystem_disable:
            yield _detail([*at, "export_container_path"], "export_container_path copies into the filesystem, "
                          "which mount_filesystem_disable leaves out")  # fmt: skip


def user_problem(user: str) -> str | None:
    """Why ``user`` cannot be a container step's ``run_as_user``, or None."""
    found = RUN_AS_USER_RE.match(user)
    if found is None:
        return "a user of the image: a name or a uid, optionally :group (or one variable holding it)"
    if {found["user"], found["group"]} & {"root", "0"}:
        return "containers never run as root here; name another user of the image"
    return None


def _when_rules(spec: PipelineSpec, step: Step, index: int) -> Iterator[dict[str, Any]]:
    at: list[str | int] = ["steps", index]
    # Buddy: run_only_on_first_failure is "restricted to and required if the trigger_time is ON_FAILURE"
    if step.run_only_on_first_failure and step.trigger_time != TriggerTime.ON_FAILURE:
        yield _detail([*at, "run_only_on_first_failure"], "run_only_on_first_failure applies only to ON_FAILURE steps")
    if step.trigger_time == TriggerTime.ON_FAILURE and step.run_only_on_first_failure is None:
        yield _detail(
            [*at, "run_only_on_first_failure"],
            "an ON_FAILURE step needs run_only_on_first_failure (true: only after a success; false: every time)",
            "missing",
        )
    for c_index, condition in enumerate(step.trigger_conditions):
        variable = spec.variable(condition.trigger_variable_key)
        loc: list[str | int] = [*at, "trigger_conditions", c_index, "trigger_variable_key"]
        if variable is None:
            yield _detail(loc, f"no pipeline variable {condition.trigger_variable_key}")
        elif variable.encrypted:
            yield _detail(loc, "a condition cannot test an encrypted variable")


def _gate_rules(spec: PipelineSpec) -> Iterator[dict[str, Any]]:
    gates = [i for i, s in enumerate(spec.steps) if s.is_gate]
    for index in gates[1:]:
        yield _detail(["steps", index, "type"], "a pipeline has at most one WAIT_FOR_APPROVE step")
    for index in gates:
        step = spec.steps[index]
        if step.trigger_time != TriggerTime.ON_EVERY_EXECUTION:
            yield _detail(["steps", index, "trigger_time"], "an approval gate belongs to the main section")
        for group in spec.groups(spec.main):
            if step in group.steps and group.is_parallel:
                yield _detail(["steps", index, "run_next"], "an approval gate cannot run in parallel with other steps")
    if not gates:
        for index, step in enumerate(spec.steps):
            if step.trigger_time == TriggerTime.ON_WAIT_FOR_APPROVE:
                yield _detail(["steps", index, "trigger_time"], "there is no WAIT_FOR_APPROVE step to wait for")


def runs_before(spec: PipelineSpec) -> dict[str, set[str]]:
    """For each step, the steps that have always finished before it starts."""
    before: dict[str, set[str]] = {}
    main_done: set[str] = set()
    for group in spec.groups(spec.main):
        for step in group.steps:
            before[step.name] = set(main_done)
        main_done |= set(group.names)
    gate = spec.gate
    hooks = spec.section(TriggerTime.ON_WAIT_FOR_APPROVE)
    done = set(before.get(gate.name, set())) if gate else set()
    for group in spec.groups(hooks):
        for step in group.steps:
            before[step.name] = set(done)
        done |= set(group.names)
    for triggers in SECTIONS.values():
        done = set(main_done)
        for group in spec.groups(spec.section(*triggers)):
            for step in group.steps:
                before[step.name] = set(done)
            done |= set(group.names)
    return before


def _reference_rules(spec: PipelineSpec) -> Iterator[dict[str, Any]]:
    before = runs_before(spec)
    for index, step in enumerate(spec.steps):
        for name, value in step.parameters.items():
            if isinstance(value, str):
                loc: list[str | int] = ["steps", index, "parameters", name]
                yield from _template_rules(spec, step, before, value, loc, allow_secret=is_secret_name(name))
        for v_index, variable in enumerate(step.variables):
            loc = ["steps", index, "variables", v_index, "value"]
            yield from _template_rules(spec, step, before, variable.value, loc, allow_secret=variable.encrypted)
        if step.run_as_user and VARIABLE_ONLY_RE.match(step.run_as_user):  # Buddy's "run_as_user": "$containerUser"
            loc = ["steps", index, "run_as_user"]
            yield from _template_rules(spec, step, before, step.run_as_user, loc, allow_secret=False)


def check_template(spec: PipelineSpec, step_name: str, template: str, loc: list[str | int]) -> None:
    """Raise :class:`ValidationFailed` if a secret value of ``step_name`` refers to what it may not."""
    step = spec.step(step_name)
    if step is None:  # pragma: no cover - the caller found the step in the spec
        return
    problems = list(_template_rules(spec, step, runs_before(spec), template, loc, allow_secret=True))
    if problems:
        first = problems[0]
        raise ValidationFailed(f"the pipeline is invalid: {'.'.join(map(str, loc))}: {first['msg']}", problems)


def _template_rules(
    spec: PipelineSpec, step: Step, before: dict[str, set[str]], template: str, loc: list[str | int], allow_secret: bool
) -> Iterator[dict[str, Any]]:
    for ref in references(template):
        if ref.variable is not None:
            variable = spec.variable(ref.variable) or next((v for v in step.variables if v.key == ref.variable), None)
            if variable is None:
                yield _detail(loc, f"{ref.text}: no variable {ref.variable} (write $$ for a literal $)")
            elif variable.encrypted and not allow_secret:
                yield _detail(
                    loc, f"{ref.text} is encrypted: use it only in a secret (#) parameter or an encrypted variable"
                )
            continue
        target = spec.step(ref.step or "")
        if target is None:
            yield _detail(loc, f"{ref.text}: no step {ref.step}")
        elif target.is_gate:
            yield _detail(loc, f"{ref.text}: an approval gate has no {ref.kind}")
        elif ref.step not in before.get(step.name, set()):
            yield _detail(
                loc, f"{ref.text}: step {ref.step} does not finish before {step.name} starts (a cycle or a forward "
                "reference)", "reference_cycle",
            )  # fmt: skip
        elif ref.kind == "exports" and len(ref.path) != 1:
            yield _detail(loc, f"{ref.text}: name one export, as ${{steps.{ref.step}.exports.<key>}}")
