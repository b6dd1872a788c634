"""A Run Docker container step as an action of its own, so its runs are ordinary runs.

The step becomes an action spec: its image (``docker_image_name:docker_image_tag``), its
``execute_commands`` run by ``shell`` (``/bin/sh -c`` or ``/bin/bash -c``, given to the image's
entrypoint unless ``reset_entrypoint``; see :func:`script`), or its ``entrypoint`` run without a
shell, in ``working_directory``, with the network (``metadata.network``) as Buddy's containers
have. What only the Docker executor can do - the image customised once by ``setup_commands``,
``run_as_user``, the pipeline filesystem's mounts, ``export_container_path`` - travels in the
spec's ``metadata[CONTAINER_STEP]``. The action is named ``pipeline:<pipeline>/<step>`` (a name no
registered action can have), versioned by the pipeline's version, and resolved from the pipeline definition by
:class:`hatchway.services.pipelines.steps.InlineActions` (an action source of
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

from hatchway.domain.pipelines import filesystem
from hatchway.domain.pipelines.spec import (
    VARIABLE_ONLY_RE,
    VARIABLES_PARAMETER,
    PipelineSpec,
    Shell,
    Step,
    Variable,
    user_problem,
)
from hatchway.domain.spec import ActionSpec

PREFIX = "pipeline"
#: the key of an inline action's metadata that tells the Docker executor what the step needs
CONTAINER_STEP = "hatchway_container_step"
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
    """The shell script of a container step: the prelude, then its commands.

    The commands run in one shell (a ``cd`` holds for the next command), stopping at the first that
    fails - or, with ``execute_every_command``, all of them, the script failing with the status of
    the first that failed. With ``loop`` they run once per value in a subshell of their own, the
    value in ``$BUDDY_LOOP_VALUE``, stopping at the first value whose commands fail.
    """
    if step.execute_every_command:
        body = "hatchway_failed=0\n"
        keep_first = '[ "$hatchway_failed" -ne 0 ] || hatchway_failed=$hatchway_status'
        for command in step.commands:
            body += f"{{ {command}\n}} || {{ hatchway_status=$?; {keep_first}; }}\n"
        body += 'exit "$hatchway_failed"\n'
    else:
        body = "set -e\n" + "".join(f"{command}\n" for command in step.commands)
    if step.loop:
        values = " ".join(shlex.quote(value) for value in step.loop)
        body = f"set -e\nfor BUDDY_LOOP_VALUE in {values}; do\nexport BUDDY_LOOP_VALUE\n(\n{body})\ndone\n"
    return PRELUDE + body


def setup_script(step: Step) -> str:
    """``setup_commands`` as the one shell script that customises the step's image."""
    return "set -e\n" + "".join(f"{command}\n" for command in step.setup_commands)


def shell_of(step: Step) -> str:
    return "/bin/bash" if step.shell == Shell.BASH else "/bin/sh"


def workdir(pipeline: PipelineSpec, step: Step) -> str | None:
    """Where the commands start: ``working_directory``, else where Buddy mounts the filesystem."""
    if step.working_directory:
        return step.working_directory
    return None if step.mount_filesystem_disable else filesystem.default_mount(pipeline.name or "pipeline")


def run_as(user: str, parameters: dict[str, object]) -> str:
    """The user a step runs as: ``run_as_user``, or the value of the variable it names (a step's
    variables are its parameters). Raises ValueError saying why it cannot be used."""
    found = VARIABLE_ONLY_RE.match(user)
    if found:
        key = found["braced"] or found["bare"]
        value = parameters.get(key)
        if not isinstance(value, str):
            raise ValueError(f"run_as_user {user}: the step has no variable {key}")
        user = value
    problem = user_problem(user)
    if problem:
        raise ValueError(f"run_as_user {user!r}: {problem}")
    return user


def container_step(pipeline: PipelineSpec, step: Step) -> dict[str, object]:
    """What the Docker executor does beyond running the argv (the spec's ``metadata[CONTAINER_STEP]``)."""
    mounts: list[list[str]] | None = None
    if not step.mount_filesystem_disable:
        if step.volume_mappings:
            mounts = [list(filesystem.parse_mapping(mapping)) for mapping in step.volume_mappings]
        else:
            mounts = [["", workdir(pipeline, step) or filesystem.default_mount(pipeline.name or "pipeline")]]
    described: dict[str, object] = {"filesystem": mounts}
    if step.setup_commands:
        described["setup"] = {"shell": shell_of(step), "script": setup_script(step)}
    if step.run_as_user:
        described["user"] = step.run_as_user
    if step.export_container_path:
        described["export"] = step.export_container_path
    return described


def variables_blob(values: dict[str, str]) -> str:
    """The value of ``#HATCHWAY_VARIABLES``: base64 of one ``export`` line per variable."""
    text = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in values.items())
    return base64.b64encode(text.encode()).decode()


def inline_spec(pipeline: PipelineSpec, step: Step) -> ActionSpec:
    """The action spec a Run Docker container step runs as."""
    container: dict[str, object] = {}
    if step.commands:
        argv = [shell_of(step), "-c", script(step)]
        if step.reset_entrypoint:
            container["entry_point"], container["command"] = argv, []
        else:  # Buddy keeps the image's entrypoint: the shell is its command
            container["command"] = argv
    elif step.entrypoint:
        container["entry_point"], container["command"] = shlex.split(step.entrypoint), []
    if workdir(pipeline, step):
        container["workdir"] = workdir(pipeline, step)
    parameters = [{"name": VARIABLES_PARAMETER}]
    parameters += [{"name": parameter_name(v)} for v in step_variables(pipeline, step)]
    document: dict[str, object] = {
        "name": f"{pipeline.name or 'pipeline'}-{step.name}".lower().replace("_", "-")[:63],
        "description": f"step {step.name} of pipeline {pipeline.name}",
        "image_uri": step.image,
        "parameters": parameters,
        # Buddy's containers reach the network (its services' network): a step's does too, on the
        # engine's default (bridge) network, as an action whose metadata allows it
        "metadata": {"network": True, CONTAINER_STEP: container_step(pipeline, step)},
    }
    if container:
        document["container_parameters"] = container
    if step.timeout:
        document["timeout"] = max(1, math.ceil(step.timeout / 60))
    return ActionSpec.model_validate(document)
