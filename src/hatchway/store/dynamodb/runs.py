"""Runs on DynamoDB, one partition per run (the run item and its log, see ``logs.py``).

run   ``RUN#<project>#<id>`` / ``R``; gsi1 ``RUNS#<p>#<env>``, id; gsi2, while the run has not ended, one of
      ``READY#<shard>``, available_at#id (claimable: ENQUEUED, async, not handed to Batch/ECS),
      ``LEASE#<shard>``, lease_until#id (leased) or ``HELD#<shard>``, id (a Batch job or ECS task holds it)

Every status change is a ``PutItem`` conditioned on the run's revision (``rev = :expected``), so
concurrent workers, the event handler and container adapters never both win; a lost one answers the
run as it is now (``ReturnValuesOnConditionCheckFailure="ALL_OLD"``), which the next try starts
from. The queue, the lease sweeper, the remote sweeper and the dashboard's counts of unfinished
runs read the small sparse partitions of gsi2. A run item also keeps the few fields statistics need
as plain attributes, so the dashboard reads a tenant's recent runs with a projection instead of
whole records. A finished sync call is written with its log in one ``TransactWriteItems``.

The project leads the partition key so that one shared task policy scopes each project's task role
to its own runs (``dynamodb:LeadingKeys`` ``RUN#${aws:PrincipalTag/hatchway-project}#*``, see
``template.yaml``). A run is looked up with its project where the caller knows it (the API, the
events of its job or task, the runner's payload, the container's ``HATCHWAY_RUN_PROJECT``); the
repository remembers where each run it has read or written lives, so the rules' later reads and
writes by id alone find it. Runs written before keys carried the project stay under ``RUN#<id>``:
reads fall back to that key (``HATCHWAY_LEGACY_RUN_KEYS``, on by default; off in run containers,
whose role may not read it) and such a run is written back where it is.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter, OrderedDict
from typing import Any

from hatchway.domain.runs import (
    ActiveCount,
    LogEntry,
    Mode,
    Run,
    RunStatus,
    RunSummary,
    run_from_dict,
    run_id_floor,
    run_to_dict,
)
from hatchway.errors import InternalError, ValidationFailed
from hatchway.store.dynamodb._table import TRANSACTION_ITEMS, Canceled, Table, n, num, s, take
from hatchway.store.dynamodb.logs import LogPages
from hatchway.store.runs import BaseRunRepo, Due

#: how many runs' partitions a process remembers (a run read once is found again by its id alone)
_REMEMBERED_RUNS = 50_000


def run_key(project_id: str, run_id: str) -> str:
    """The partition of a run and its log: its project first (a task role's ``dynamodb:LeadingKeys``)."""
    return f"RUN#{project_id}#{run_id}"


def legacy_run_key(run_id: str) -> str:
    """Where a run written before keys carried the project lives."""
    return f"RUN#{run_id}"


class DynamoDbRunRepo(BaseRunRepo):
    """``legacy_keys``: whether a run not found under its project's key is looked for under the
    key it had before keys carried the project (a run container's role may not read those)."""

    def __init__(self, table: Table, legacy_keys: bool = True) -> None:
        self.table = table
        self.logs = LogPages(table)
        self.legacy_keys = legacy_keys
        self._partitions: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    # ---- where a run lives -----------------------------------------------------------------

    def _remember(self, run_id: str, pk: str) -> None:
        with self._lock:
            self._partitions[run_id] = pk
            self._partitions.move_to_end(run_id)
            while len(self._partitions) > _REMEMBERED_RUNS:
                self._partitions.popitem(last=False)

    def _known(self, run_id: str) -> str | None:
        with self._lock:
            return self._partitions.get(run_id)

    def _partition(self, run_id: str, project_id: str | None = None) -> str:
        """Where a run is (or goes): where it was found, else under its project, else the old key."""
        known = self._known(run_id)
        if known is not None:
            return known
        if project_id is not None:
            return run_key(project_id, run_id)
        if not self.legacy_keys:
            raise InternalError(f"the project of run {run_id} is not known here")
        return legacy_run_key(run_id)

    def _run_item(self, run: Run, rev: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": s(self._partition(run.id, run.project_id)),
            "sk": s("R"),
            "rev": n(rev),
            "status": s(run.status.value),
            "mode": s(run.mode.value),
            "project_id": s(run.project_id),
            "environment": s(run.environment),
            "action_name": s(run.action_name),
            "available_at": n(run.available_at),
            "invoked": s(run.invoked),
            "created_at": n(run.created_at),
            "gsi1pk": s(f"RUNS#{run.project_id}#{run.environment}"),
            "gsi1sk": s(run.id),
            **self.table.pack(run_to_dict(run), f"runs/{run.project_id}/{run.id}/{uuid.uuid4().hex}.json.z"),
        }
        for name in ("external_user_id", "lease_owner", "external_id"):
            value = getattr(run, name)
            if value is not None:
                item[name] = s(value)
        for name in ("lease_until", "started_at", "finished_at", "duration_ms"):
            value = getattr(run, name)
            if value is not None:
                item[name] = n(value)
        shard = self.table.shard(run.id)
        if run.status == RunStatus.ENQUEUED and run.mode == Mode.ASYNC and run.external_id is None:
            item["gsi2pk"] = s(f"READY#{shard}")
            item["gsi2sk"] = s(f"{run.available_at:015d}#{run.id}")
        elif run.status in (RunStatus.INPROGRESS, RunStatus.TERMINATING) and run.lease_until is not None:
            item["gsi2pk"] = s(f"LEASE#{shard}")
            item["gsi2sk"] = s(f"{run.lease_until:015d}#{run.id}")
        elif not run.is_terminal:
            item["gsi2pk"] = s(f"HELD#{shard}")
            item["gsi2sk"] = s(run.id)
        return item

    def _run(self, item: dict[str, Any]) -> Run:
        run = run_from_dict(self.table.unpack(item))
        # heartbeats update only the attribute; it wins over the packed copy
        run.lease_until = num(item, "lease_until")
        if "pk" in item:
            self._remember(run.id, item["pk"]["S"])
        return run

    def _insert_run(self, run: Run) -> bool:
        item = self._run_item(run, 0)
        if self.table.conditional("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)") is None:
            self.table.drop_blob(item)
            return False
        self._remember(run.id, item["pk"]["S"])
        return True

    def _get_run(self, run_id: str, project_id: str | None = None) -> tuple[Run, int] | None:
        known = self._known(run_id)
        if known is not None:
            keys = [known]
        else:
            keys = [run_key(project_id, run_id)] if project_id is not None else []
            if self.legacy_keys:
                keys.append(legacy_run_key(run_id))
            elif not keys:
                raise InternalError(f"the project of run {run_id} is not known here")
        for pk in keys:
            item = self.table.get(pk, "R")
            if item is not None:
                return self._run(item), int(item["rev"]["N"])
        return None

    def _replace_run(self, run: Run, expected_rev: int) -> tuple[bool, tuple[Run, int] | None]:
        written, current = self.table.swap(self._run_item(run, expected_rev + 1), expected_rev, old=True)
        return written, (self._run(current), int(current["rev"]["N"])) if current else None

    def _list_runs(
        self, project_id: str, environment: str, before: str | None, limit: int, filters: dict[str, str]
    ) -> list[Run]:
        if before is not None and not isinstance(before, str):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        values: dict[str, Any] = {":p": s(f"RUNS#{project_id}#{environment}"), ":b": s(before or "run_~")}
        names: dict[str, str] = {}
        where = []
        for key, attribute in (
            ("action", "action_name"),
            ("status", "status"),
            ("external_user_id", "external_user_id"),
        ):
            if key in filters:
                names[f"#{key}"] = attribute
                values[f":{key}"] = s(filters[key])
                where.append(f"#{key} = :{key}")
        query: dict[str, Any] = {
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :p AND gsi1sk < :b",
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": max(limit, 25),
        }
        if where:
            query["FilterExpression"] = " AND ".join(where)
            query["ExpressionAttributeNames"] = names
        return [self._run(item) for item in take(self.table.query(**query), limit)]

    def _queue(self, kind: str, below: str, limit: int, above: str | None = None) -> list[Run]:
        if above is not None and above >= below:
            return []  # (DynamoDB refuses BETWEEN with its bounds reversed)
        found: list[tuple[str, dict[str, Any]]] = []
        for shard in range(self.table.queue_shards):
            values = {":p": s(f"{kind}#{shard}"), ":b": s(below)}
            if above is None:
                condition = "gsi2pk = :p AND gsi2sk < :b"
            else:
                # a key condition has one range: BETWEEN is inclusive, so the bounds are dropped below
                condition = "gsi2pk = :p AND gsi2sk BETWEEN :a AND :b"
                values[":a"] = s(above)
            items = self.table.query(
                IndexName="gsi2", KeyConditionExpression=condition, ExpressionAttributeValues=values, Limit=limit + 2
            )
            kept = (item for item in items if above is None or above < item["gsi2sk"]["S"] < below)
            found.extend((item["gsi2sk"]["S"], item) for item in take(kept, limit))
        found.sort(key=lambda pair: pair[0])
        return [self._run(item) for _, item in found[:limit]]

    def _due_runs(self, due: Due, below: int, limit: int, after: str | None = None) -> list[Run]:
        if due is Due.READY:
            runs = self._queue("READY", f"{below:015d}~", limit)
            # an index is eventually consistent: drop what it still shows after the run moved on
            return [run for run in runs if run.status == RunStatus.ENQUEUED and run.available_at <= below]
        if due is Due.EXPIRED:
            return self._queue("LEASE", f"{below:015d}", limit)
        runs = self._queue("HELD", run_id_floor(below), limit, after)
        return [run for run in runs if not run.is_terminal and run.external_id is not None]

    # ---- statistics ------------------------------------------------------------------------

    #: what a run summary needs, as plain attributes of the run item
    _SUMMARY = ("action_name", "invoked", "mode", "status", "created_at", "started_at", "finished_at", "duration_ms")

    def _run_summaries(self, project_id: str, environment: str, since_ms: int, limit: int) -> list[RunSummary]:
        names = {f"#{index}": name for index, name in enumerate(("gsi1sk", *self._SUMMARY))}
        items = self.table.query(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :p AND gsi1sk >= :f",
            ExpressionAttributeValues={
                ":p": s(f"RUNS#{project_id}#{environment}"),
                ":f": s(run_id_floor(since_ms)),
            },
            ProjectionExpression=", ".join(names),
            ExpressionAttributeNames=names,
            ScanIndexForward=False,
            Limit=min(max(limit, 25), 1000),
        )
        out: list[RunSummary] = []
        for item in items:
            summary = self._summary(item, project_id)
            if summary is None:
                continue
            if summary.created_at >= since_ms:
                out.append(summary)
                if len(out) >= limit:
                    break
        return out

    def _summary(self, item: dict[str, Any], project_id: str) -> RunSummary | None:
        if "created_at" not in item or "invoked" not in item:
            # written before runs kept these attributes: read the whole record once
            found = self._get_run(item["gsi1sk"]["S"], project_id)
            return RunSummary.of(found[0]) if found else None
        return RunSummary(
            item["action_name"]["S"],
            item["invoked"]["S"],
            item["mode"]["S"],
            item["status"]["S"],
            int(item["created_at"]["N"]),
            num(item, "started_at"),
            num(item, "finished_at"),
            num(item, "duration_ms"),
        )

    def _active_counts(self, project_id: str | None, cap: int) -> list[ActiveCount]:
        # every unfinished run is in one of gsi2's run partitions; sync calls are recorded at their end
        names = {"#p": "project_id", "#e": "environment", "#m": "mode", "#s": "status"}
        query: dict[str, Any] = {"IndexName": "gsi2", "ProjectionExpression": "#p, #e, #m, #s"}
        if project_id is not None:
            query["FilterExpression"] = "#p = :project"
        counts: Counter[tuple[str, str, str, str]] = Counter()
        for kind in ("READY", "LEASE", "HELD"):
            for shard in range(self.table.queue_shards):
                values = {":k": s(f"{kind}#{shard}")}
                if project_id is not None:
                    values[":project"] = s(project_id)
                items = self.table.query(
                    KeyConditionExpression="gsi2pk = :k",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    Limit=min(max(cap, 25), 1000),
                    **query,
                )
                for item in take(items, cap):
                    counts[
                        (item["project_id"]["S"], item["environment"]["S"], item["mode"]["S"], item["status"]["S"])
                    ] += 1
        return [ActiveCount(*key, count) for key, count in sorted(counts.items())]

    def _set_lease(self, run_id: str, owner: str, until: int) -> str | None:
        # the revision moves too, so a full write prepared before this heartbeat cannot undo it
        answer = self.table.conditional(
            "update_item",
            Key={"pk": s(self._partition(run_id)), "sk": s("R")},
            UpdateExpression="SET lease_until = :u, gsi2pk = :gp, gsi2sk = :gs ADD rev :one",
            ConditionExpression="lease_owner = :o AND #st IN (:a, :b)",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={
                ":u": n(until),
                ":gp": s(f"LEASE#{self.table.shard(run_id)}"),
                ":gs": s(f"{until:015d}#{run_id}"),
                ":one": n(1),
                ":o": s(owner),
                ":a": s(RunStatus.INPROGRESS.value),
                ":b": s(RunStatus.TERMINATING.value),
            },
            ReturnValues="ALL_NEW",
        )
        if answer is None:
            return None
        status: str = answer["Attributes"]["status"]["S"]
        return status

    # ---- logs and sync calls ---------------------------------------------------------------

    def _append_logs(self, run_id: str, entries: list[LogEntry]) -> list[LogEntry]:
        return self.logs.append(self._partition(run_id), entries)

    def _read_logs(self, run_id: str, after: int, limit: int) -> list[LogEntry]:
        return self.logs.read(self._partition(run_id), after, limit)

    def _begin_sync(self, run: Run) -> int | None:
        return None  # recorded once, when it ends (_end_sync): a write per call saved

    def _end_sync(self, run: Run, entries: list[LogEntry]) -> tuple[bool, list[LogEntry]]:
        # the run and the first of its log in one transaction; a log too long for it follows
        groups = list(self.logs.transactions(entries, TRANSACTION_ITEMS - 2))
        first = [entry for page in groups[0] for entry in page] if groups else []
        item = self._run_item(run, 0)
        pk = item["pk"]["S"]
        writes: list[dict[str, Any]] = [
            {"Put": {"TableName": self.table.name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
        ]
        if first:
            writes += self.logs.writes(pk, 0, first)
        try:
            self.table.transact(writes)
        except Canceled:
            self.table.drop_blob(item)
            return False, []
        self._remember(run.id, pk)
        self.logs.remember(pk, len(first))
        rest = [entry for group in groups[1:] for page in group for entry in page]
        if rest:
            self.logs.append(pk, rest)
        return True, entries
