"""A Run Docker container step as an action of its own, so its runs are ordinary runs.

The step becomes an action spec: its image (``docker_image_name:docker_image_tag``), its
commands run by ``shell`` (``/bin/sh -c`` or ``/bin/bash -c``, ``setup_commands`` first, the
script stopping at the first failing command), or its ``entrypoint`` run without a shell, in
``working_directory``. The action is named ``pipeline:<pipeline>/<step>`` (a name no registered
action can have), versioned by the pipeline's version, and resolved from the pipeline definition
by :class:`hatchway.services.pipelines.steps.InlineActions` (an action source of
:meth:`hatchway.services.actions.ActionService.resolve`).

Variables reach the commands as shell variables, like Buddy's, without ever being put in the
container's environment (which ``docker inspect`` shows): the step's parameters carry them, so
they are written only to ``config.json``, and a short prelude reads the one parameter
``#HATCHWAY_VARIABLES`` (base64 of ``export KEY='value'`` lines, so the prelude needs only ``sed``
and ``base64``, present in every common base image) and evaluates it. Each encrypted variable is
also a secret parameter of its own, so the gateway knows its value and hides it in the logs.
"""

from __future__ import annotations

import base64
import math
import re
import shlex

from hatchway.domain.pipelines.spec import VARIABLES_PARAMETER, PipelineSpec, Shell, Step, Variable
from hatchway.domain.spec import ActionSpec

PREFIX = "pipeline"
_NAME = re.compile(r"^pipeline:(?P<pipeline>[a-z0-9][a-z0-9-]{0,62})/(?P<step>[A-Za-z0-9][A-Za-z0-9_-]{0,62})$")

PRELUDE = (
    'hatchway_variables=$(sed -n \'s|.*"#HATCHWAY_VARIABLES": "\\([A-Za-z0-9+/=]*\\)".*|\\1|p\' '
    '"$HATCHWAY_DATA_DIR/config.json")\n'
    'eval "$(printf %s "$hatchway_variables" | base64 -d)" || exit 2\n'
    "unset hatchway_variables\n"
)


def action_name(pipeline: str, step: str) -> str:
    return f"{PREFIX}:{pipeline}/{step}"


def parse_action_name(name: str) -> tuple[str, str] | None:
    """(pipeline, step) of an inline step's action name, or None."""
    match = _NAME.match(name)
    return (match.group("pipeline"), match.group("step")) if match else None


def step_variables(pipeline: PipelineSpec, step: Step) -> list[Variable]:
    """The variables a container step sees: the pipeline's, overridden by the step's own."""
    merged = {v.key: v for v in pipeline.variables}
    merged.update({v.key: v for v in step.variables})
    return list(merged.values())


def parameter_name(variable: Variable) -> str:
    return f"#{variable.key}" if variable.encrypted else variable.key


def script(step: Step) -> str:
    """The shell script of a container step: the prelude, then its commands."""
    lines = [*step.setup_commands, *step.execute_commands]
    return PRELUDE + "set -e\n" + "\n".join(lines) + "\n"


def variables_blob(values: dict[str, str]) -> str:
    """The value of ``#HATCHWAY_VARIABLES``: base64 of one ``export`` line per variable."""
    text = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in values.items())
    return base64.b64encode(text.encode()).decode()


def inline_spec(pipeline: PipelineSpec, step: Step) -> ActionSpec:
    """The action spec a Run Docker container step runs as."""
    argv: list[str] | None = None
    if step.execute_commands or step.setup_commands:
        argv = ["/bin/bash" if step.shell == Shell.BASH else "/bin/sh", "-c", script(step)]
    elif step.entrypoint:
        argv = shlex.split(step.entrypoint)
    container: dict[str, object] = {}
    if argv:
        container["entry_point"] = argv
        container["command"] = []
    if step.working_directory:
        container["workdir"] = step.working_directory
    parameters = [{"name": VARIABLES_PARAMETER}]
    parameters += [{"name": parameter_name(v)} for v in step_variables(pipeline, step)]
    document: dict[str, object] = {
        "name": f"{pipeline.name or 'pipeline'}-{step.name}".lower().replace("_", "-")[:63],
        "description": f"step {step.name} of pipeline {pipeline.name}",
        "image_uri": step.image,
        "parameters": parameters,
    }
    if container:
        document["container_parameters"] = container
    if step.timeout:
        document["timeout"] = max(1, math.ceil(step.timeout / 60))
    return ActionSpec.model_validate(document)
