"""``hatchway aws``: the aws backend's resources."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from hatchway.cli._common import aws_app, fail, settings
from hatchway.cli._table import FLAG, Arg, echo

T = TypeVar("T")


def _where(aws_settings: Any) -> str:
    return aws_settings.aws.aws_endpoint_url or f"AWS ({aws_settings.aws.aws_region or 'default region'})"


def _on_aws(call: Callable[[], T], cannot: str, suffix: str) -> T:
    """``call()``, a failure being one error line: the gateway's own (its message and ``suffix``),
    or AWS's - no credentials, access denied, a bad endpoint (``cannot`` and botocore's words)."""
    from hatchway.errors import HatchwayError

    try:
        return call()
    except HatchwayError as err:
        fail(f"{err.message} {suffix}")
    except Exception as err:
        fail(f"{cannot}: {type(err).__name__}: {err}")


@aws_app.command(
    "bootstrap",
    Arg("--table", envvar="HATCHWAY_TABLE_NAME", help="DynamoDB table"),
    Arg("--key", envvar="HATCHWAY_KMS_KEY_ID", help="KMS key alias (alias/...)"),
    Arg("--bucket", envvar="HATCHWAY_BUCKET", help="S3 bucket for outputs"),
    shares_options=False,
)
def aws_bootstrap(table: str | None, key: str | None, bucket: str | None) -> None:
    """Create the table, KMS key and bucket the aws backend needs, where AWS_ENDPOINT_URL points (idempotent)."""
    from hatchway.wiring import aws_bootstrap as bootstrap

    aws_settings = settings(backend="aws", table_name=table, kms_key_id=key, bucket=bucket)
    where = _where(aws_settings)
    made = _on_aws(lambda: bootstrap(aws_settings), f"cannot bootstrap at {where}", f"at {where}")
    for line in made.created or ["everything existed already"]:
        echo(f"created {line}" if made.created else line, err=True)
    for name, value in made.environment().items():
        echo(f"export {name}={value}")


@aws_app.command(
    "teardown",
    Arg("--yes", "-y", kind=FLAG, help="do not ask for confirmation"),
    Arg("--dry-run", kind=FLAG, help="list what would be removed, remove nothing"),
    shares_options=False,
)
def aws_teardown(yes: bool, dry_run: bool) -> None:
    """Remove the functions, definitions, state machines and roles made at run time, before deleting the stack."""
    from hatchway.wiring import aws_teardown as teardown_of

    aws_settings = settings(backend="aws")
    prefix = aws_settings.aws.resource_prefix
    where = _where(aws_settings)
    teardown = teardown_of(aws_settings)
    found = _on_aws(teardown.find, f"cannot list the resources at {where}", f"at {where}")
    if not found:
        echo(f"nothing made at run time under the prefix {prefix} at {where}", err=True)
        return
    for item in found:
        echo(f"{'would remove' if dry_run else 'found'} {item}", err=True)
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            fail("not removing anything without confirmation: give --yes (stdin is not a terminal)")
        sys.stderr.write(f"Remove these {len(found)} resources? Type the prefix ({prefix}) to confirm: ")
        sys.stderr.flush()
        if sys.stdin.readline().strip() != prefix:
            fail("nothing removed")
    done = teardown.remove(found)
    for line in done.removed:
        echo(f"removed {line}")
    if done.failed:
        fail("not removed: " + "; ".join(done.failed))


@aws_app.command(
    "migrate",
    Arg("--table", envvar="HATCHWAY_TABLE_NAME", help="DynamoDB table"),
    shares_options=False,
)
def aws_migrate(table: str | None) -> None:
    """Bring a table written by an earlier version up to date, after an upgrade (idempotent)."""
    from hatchway.wiring import aws_migrate as migrate

    aws_settings = settings(backend="aws", table_name=table)
    where = f"table {aws_settings.store.table_name} at {aws_settings.aws.aws_endpoint_url or 'AWS'}"
    done = _on_aws(lambda: migrate(aws_settings), f"cannot migrate {where}", f"({where})")
    for project_id in done.indexed:
        echo(f"listed project {project_id} (GET /v1/projects)")
    for project_id in done.claimed:
        echo(f"claimed the name of project {project_id}")
    if not (done.indexed or done.claimed):
        echo(f"{where} is up to date")
