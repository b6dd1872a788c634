"""The API's answers as pydantic models: :class:`Run`, :class:`RunSummary`, :class:`Action`,
:class:`Page`, :class:`LogEntry`, :class:`SyncResult`, :class:`Project`, :class:`Token`.

They mirror the schemas the gateway publishes (``hatchway.api.schemas``, in ``/openapi.json``),
defined here so that the client imports neither the server nor its dependencies. Fields the
gateway adds later are kept (``extra="allow"``) rather than refused, and times are the ISO 8601
strings the API sends. A model also reads as the mapping it was before the client was typed
(``run["status"]``, ``run.get("ret")``, ``"error" in run``, and ``==`` against a dict), so code
written against the dict-returning client keeps working::

    run = hw.get_run(run_id)
    run.status == "SUCCESSFUL" and run["status"] == "SUCCESSFUL"
    run.model_dump(mode="json")     # the JSON document the API sent
    json.dumps(as_json(hw.list_runs()))   # models anywhere in a value, for json.dumps
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

RunStatus = Literal["ENQUEUED", "INPROGRESS", "SUCCESSFUL", "FAILED", "TERMINATING", "TERMINATED"]
#: the statuses a run ends in
TERMINAL: frozenset[str] = frozenset({"SUCCESSFUL", "FAILED", "TERMINATED"})


def as_json(value: Any) -> Any:
    """``value`` with every model in it dumped as the JSON document the API sent (for ``json.dumps``)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    return value


class Model(BaseModel):
    """Base of the answers: attributes, plus read access as the mapping of the JSON document."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=False)

    def _name(self, key: str) -> str:
        for name, field in type(self).model_fields.items():
            if field.alias == key:
                return name
        return key

    def __getitem__(self, key: str) -> Any:
        name = self._name(key)
        if name in type(self).model_fields or (self.model_extra and name in self.model_extra):
            return getattr(self, name)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` as the API named it, or ``default``."""
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None and self._name(key) not in self.model_fields_set else value

    def keys(self) -> list[str]:
        """The fields the answer had, as the API named them."""
        return list(self.model_dump(by_alias=True, exclude_unset=True))

    def values(self) -> list[Any]:
        return [self[key] for key in self.keys()]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # a mapping's keys, not pydantic's pairs
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dict):
            return self.model_dump(mode="json", by_alias=True, exclude_unset=True) == other
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dict it stands for


class ActionRef(Model):
    """Which action version a run runs."""

    name: str
    version: int
    digest: str


class LogErrorInfo(Model):
    name: str | None = None
    message: str | None = None
    stack: str | None = None


class LogEntry(Model):
    """One line of a run's log; ``ts`` is epoch milliseconds, ``k`` stdout, stderr or system."""

    seq: int | None = None
    k: str
    ts: int
    msg: str
    err: LogErrorInfo | None = None


class RunError(Model):
    """Why a run failed: ``kind`` (user, application, timeout…), a message, and the exceptionId to quote."""

    kind: str
    message: str
    exception_id: str | None = Field(default=None, alias="exceptionId")
    code: int | None = None


class RunSummary(Model):
    """A run as list pages show it (no log lines)."""

    id: str
    project_id: str
    environment: str
    action: ActionRef
    invoked: str
    mode: str
    status: str
    status_reason: str | None = None
    attempt: int
    max_attempts: int
    parameters: dict[str, Any] = {}
    ret: Any = None
    exports: dict[str, Any] = {}
    error: RunError | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    external_user_id: str | None = None

    @property
    def is_finished(self) -> bool:
        """Whether the run has ended (SUCCESSFUL, FAILED or TERMINATED)."""
        return self.status in TERMINAL


class Run(RunSummary):
    """A run, with the first and last lines of its log in ``os``."""

    os: list[LogEntry] = []


class SyncResult(Model):
    """The answer of a sync action call."""

    run_id: str
    status: str
    ret: Any = None
    exports: dict[str, Any] = {}
    os: list[LogEntry] = []
    duration_ms: int | None = None


class Action(Model):
    """A registered action version; ``spec`` is its normalised action.json."""

    name: str
    version: int
    digest: str
    created_at: str
    spec: dict[str, Any]


class Project(Model):
    id: str
    name: str
    created_at: str


class Token(Model):
    """A project token as listed (never its value)."""

    id: str
    name: str | None = None
    scopes: list[str]
    environments: list[str] | None = None
    created_at: str | None = None
    expires_at: str | None = None
    last_used_at: str | None = None


class NewToken(Token):
    """A token just made: ``token`` is shown this once."""

    token: str


class Page(Model, Generic[T]):
    """One page of a list: ``items`` and the cursor of the ``next`` page (None on the last)."""

    items: list[T]
    next: str | None = None


class LogPage(Page[LogEntry]):
    """One page of a run's log; ask for the next with ``after=`` the last entry's ``seq``."""
