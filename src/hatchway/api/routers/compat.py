"""Routes for what users bring from other platforms (the dialects are :mod:`hatchway.compat`'s).

* Keboola: ``POST .../actions/{name}/action/{sync_action}`` with ``{"configData": ...}``; the
  answer is the action's own JSON, unwrapped.
* Ductape: ``POST /v1/ductape/actions/run`` with ``{env, product, app, event, input, cache?,
  retries?, session?}``; the answer is the app's result as is, its run in ``X-Hatchway-Run-Id``.
* Pipedream Connect: ``POST /v1/connect/{project_id}/actions/run`` with the ``x-pd-environment``
  header; the answer is ``{exports, os, ret, stash_id}``. Its SDKs exchange client credentials for a
  bearer token at ``POST /v1/oauth/token``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header
from pydantic import BaseModel, ConfigDict, Field

from hatchway.api import schemas as S
from hatchway.api.common import Environment, ProjectId, caller, env_name, json_answer, new_router, request_deadline
from hatchway.api.models import RunInput, SessionRef, StrictBody
from hatchway.compat import keboola
from hatchway.domain.runs import RunRequest

if TYPE_CHECKING:
    from hatchway.compat import Compat
    from hatchway.ports import Telemetry
    from hatchway.services import Services


class KeboolaConfigData(BaseModel):
    """Keboola's ``configData``: the parameters and runtime a component sees in its config.json."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    parameters: dict[str, Any] = Field(default_factory=dict)
    runtime: dict[str, Any] | None = None
    image_parameters: dict[str, Any] | None = None


class KeboolaActionBody(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="allow")

    configData: KeboolaConfigData = Field(default_factory=KeboolaConfigData)  # noqa: N815 - Keboola's name


class OAuthTokenBody(BaseModel):
    """An OAuth client-credentials exchange, as the Pipedream SDKs send it."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    grant_type: Literal["client_credentials"] = "client_credentials"
    client_id: Annotated[str, Field(min_length=1, max_length=256)]
    client_secret: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    scope: str | None = None


class DuctapeRunBody(StrictBody):
    """Ductape's ``actions.run`` input (``IActionProcessorInput``), field for field."""

    env: Annotated[str, Field(min_length=1, max_length=63)]
    product: Annotated[str, Field(min_length=1, max_length=128)]
    app: Annotated[str, Field(min_length=1, max_length=128)]
    event: Annotated[str, Field(min_length=1, max_length=128)]
    input: RunInput = Field(default_factory=RunInput)
    cache: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    retries: Annotated[int, Field(ge=0, le=10)] | None = None
    session: SessionRef | None = None


class ConnectRunBody(BaseModel):
    """Pipedream Connect's ``actions/run`` request."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=128)]
    external_user_id: Annotated[str, Field(min_length=1, max_length=256)]
    version: str | None = None
    configured_props: dict[str, Any] | None = None
    dynamic_props_id: str | None = None
    stash_id: str | bool | None = None


CONNECT_RESULT = S.obj(
    ["exports", "os", "ret", "stash_id"],
    exports={"type": "object"},
    os={"type": "array", "items": S.obj(["k", "ts", "msg"], k=S.STRING, ts=S.INT, msg=S.STRING)},
    ret={},
    stash_id=S.nullable(S.STRING),
)


def router(services: Services, compat: Compat, telemetry: Telemetry) -> Router:
    """The Keboola, Connect and OAuth routes."""
    app = new_router()
    who = caller(services.auth, app)

    # ---- Keboola -----------------------------------------------------------------------------

    @app.post(
        "/v1/projects/<project_id>/actions/<name>/action/<sync_action>",
        tags=["compatibility"],
        summary="Keboola-style sync action call: the action's JSON answer, unwrapped",
        responses=S.responses(200, {}, "the action's own JSON", 400, 404, 409, 429, 504),
    )
    def keboola_action(
        project_id: ProjectId,
        name: str,
        sync_action: str,
        body: Annotated[KeboolaActionBody | None, Body()] = None,
        environment: Environment = None,
    ) -> Response[str]:
        config = (body or KeboolaActionBody()).configData
        request = keboola.run_request(config.model_dump(exclude_none=True), config.parameters)
        outcome = services.runs.call_sync(who(), project_id, env_name(environment), name, sync_action, request)
        return json_answer(200, keboola.answer(outcome))

    # ---- Ductape -----------------------------------------------------------------------------

    @app.post(
        "/v1/ductape/actions/run",
        tags=["compatibility"],
        summary="Ductape actions.run: run an app's event and answer its result as is",
        responses=S.responses(200, {}, "the app's result (run id in X-Hatchway-Run-Id)", 400, 404, 409, 429, 504),
    )
    def ductape_run(body: Annotated[DuctapeRunBody, Body()]) -> Response[str]:
        answer = compat.ductape.run(who(), env_name(body.env, "env"), body)
        outcome = answer.outcome
        headers = {"X-Hatchway-Run-Id": outcome.run_id}
        if outcome.cached is not None:
            headers["X-Hatchway-Cache"] = "hit" if outcome.cached else "miss"
        return json_answer(200, answer.body, headers)

    # ---- Pipedream Connect -------------------------------------------------------------------

    @app.post(
        "/v1/connect/<project_id>/actions/run",
        tags=["compatibility"],
        summary="Pipedream Connect: run an action's `run` and wait for {exports, os, ret, stash_id}",
        responses=S.responses(200, CONNECT_RESULT, "the action ran", 400, 404, 409, 429, 504),
    )
    def connect_run(
        project_id: ProjectId,
        body: Annotated[ConnectRunBody, Body()],
        pd_environment: Annotated[
            str | None, Header(alias="x-pd-environment", description="development or production")
        ] = None,
        idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=255)] = None,
    ) -> Response[str]:
        request = RunRequest(
            parameters=body.configured_props or {},
            external_user_id=body.external_user_id,
            stash_id=body.stash_id,
            options={"dynamic_props_id": body.dynamic_props_id} if body.dynamic_props_id else {},
        )
        environment = env_name(pd_environment, "x-pd-environment")
        deadline = request_deadline(app.lambda_context)
        answer = compat.connect.run(
            who(), project_id, environment, body.id, body.version, request, idempotency_key, deadline
        )  # fmt: skip
        return json_answer(200, answer)

    @app.post(
        "/v1/oauth/token",
        tags=["compatibility"],
        summary="OAuth client credentials (Pipedream SDKs): client_id = token id, client_secret = the token",
        responses=S.responses(
            200, S.obj(["access_token", "token_type", "expires_in"], access_token=S.STRING, token_type=S.STRING,
                       expires_in=S.INT), "a bearer token",
        ),
    )  # fmt: skip
    def oauth_token(body: Annotated[OAuthTokenBody, Body()]) -> Response[str]:
        token = services.auth.exchange_client_credentials(body.client_id, body.client_secret or "")
        return json_answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    return app
