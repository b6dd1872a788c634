"""The requirements of the Lambda functions' bundle, one per line: hatchway's own and its ``aws``
extra (pyproject.toml), without what only the command line and ``hatchway serve`` use.

The functions run the API, events, pipelines, runner and sweeper handlers; none of them reaches
the CLI's terminal output (rich, and pygments and markdown-it under it), its YAML, or the embedded
HTTP server (uvicorn, httptools) - tests/unit/test_lambda_bundle.py checks that over every import
in the source, lazy ones included. Leaving them out takes about 13 MB off each function.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

#: distributions only the CLI and `hatchway serve` import
NOT_IN_LAMBDA = frozenset({"rich", "uvicorn", "httptools", "pyyaml"})


def distribution(requirement: str) -> str:
    """The normalised distribution name of a requirement (``aws-lambda-powertools==3.37.0`` ->
    ``aws-lambda-powertools``, ``pyjwt[crypto]>=2.8`` -> ``pyjwt``)."""
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def lambda_requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["aws"]]
    return [r for r in wanted if distribution(r) not in NOT_IN_LAMBDA]


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    print("\n".join(lambda_requirements(root / "pyproject.toml")))
