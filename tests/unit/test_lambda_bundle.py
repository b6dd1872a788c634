"""The Lambda functions' bundle leaves out what only the CLI and `hatchway serve` use."""

from __future__ import annotations

import importlib.util
import tomllib
from types import ModuleType

import grimp

from tests.helpers import REPO

HANDLERS = ("handlers.api", "handlers.events", "handlers.pipelines", "handlers.runner", "handlers.sweeper")
#: the modules each left-out distribution provides
MODULES = {"rich": "rich", "uvicorn": "uvicorn", "httptools": "httptools", "pyyaml": "yaml"}


def requirements_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lambda_requirements", REPO / "infra/sam/lambda_requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundle_has_every_dependency_but_the_clis_and_the_servers() -> None:
    requirements = requirements_module()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    everything = [*project["dependencies"], *project["optional-dependencies"]["aws"]]
    names = {requirements.distribution(r) for r in everything}
    # every name left out is a dependency today (none stale), and nothing else is left out
    assert names >= requirements.NOT_IN_LAMBDA
    assert set(MODULES) == requirements.NOT_IN_LAMBDA
    kept = requirements.lambda_requirements(REPO / "pyproject.toml")
    assert {requirements.distribution(r) for r in kept} == names - requirements.NOT_IN_LAMBDA
    assert "aws-lambda-powertools==3.37.0" in kept and "pyjwt[crypto]>=2.8" in kept


def test_no_handler_reaches_a_left_out_module_by_any_import_lazy_ones_included() -> None:
    # grimp reads every import statement of the source, those inside functions too
    graph = grimp.build_graph("hatchway", "handlers", include_external_packages=True)
    reached = {
        (handler, module): graph.find_shortest_chain(importer=handler, imported=module)
        for handler in HANDLERS
        for module in MODULES.values()
        if module in graph.modules
    }
    assert {key: chain for key, chain in reached.items() if chain} == {}
    # and the check can fail: the CLI does reach them
    assert graph.find_shortest_chain(importer="hatchway.cli._output", imported="rich")
