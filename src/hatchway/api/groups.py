"""Route groups included on the first request under their paths: what a Lambda cold start skips.

Most requests a Lambda container answers reach a few routes (runs, actions); the compatibility,
cache/session, pipeline, statistics and console routes are rarely asked for, yet importing their
modules (pydantic models) and declaring their routes (powertools compiles a pattern per route) was
paid by every cold start. A :class:`LazyGroup` names the paths its routes answer; :class:`RouteGroups`
includes a group when the first request under one of those paths arrives, before that request is
matched, and puts every route back in the order :func:`hatchway.api.app.create_app` declares them.
As a group's routes answer only paths under its own (``tests/functional/test_lazy_routes.py``
checks each route's rule), every request finds the route it would have found with every group
included: whatever lists the routes (the OpenAPI document, a 404 or 405, the query check)
includes every group first.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from aws_lambda_powertools.event_handler.api_gateway import Route, Router


class LazyGroup:
    """Routes built by ``build`` on first use; they answer only paths under ``paths``.

    A path template is literal but for ``*``, one path segment; a path is under it when it is the
    template or continues it with ``/`` - or, for a template that ends in ``$``, only when it is the
    template. (A plain class: defining a dataclass compiles generated methods at import.)
    """

    __slots__ = ("build", "name", "paths")

    def __init__(self, name: str, paths: tuple[str, ...], build: Callable[[], Router]) -> None:
        self.name = name
        self.paths = paths
        self.build = build

    def pattern(self) -> re.Pattern[str]:
        """The paths under this group's templates."""

        def regex(path: str) -> str:
            exact = path.endswith("$")
            literal = re.escape(path.removesuffix("$")).replace(r"\*", "[^/]+")
            return f"{literal}$" if exact else f"{literal}(?:/|$)"

        return re.compile("^(?:" + "|".join(regex(path) for path in self.paths) + ")")


class RouteGroups:
    """The resolver's routes in declared order, some of them included only when first asked for.

    Thread-safe: ``hatchway serve`` resolves from several threads. A request whose path is under no
    pending group never waits for another request's group being included (its routes cannot match).
    """

    def __init__(self, resolver: APIGatewayHttpResolver) -> None:
        self.resolver = resolver
        self._lock = threading.Lock()
        #: (place in the matching order, group, its paths), replaced as a whole once a group is in
        self._pending: tuple[tuple[int, LazyGroup, re.Pattern[str]], ...] = ()
        self._place: dict[int, int] = {}  # id(route) -> the place of the router that declared it
        self._places = 0

    def include(self, router: Router) -> None:
        """Include ``router``'s routes now, after those declared before it."""
        self._add(router, self._next_place())

    def defer(self, group: LazyGroup) -> None:
        """Declare ``group`` here in the matching order; it is included when first asked for."""
        self._pending = (*self._pending, (self._next_place(), group, group.pattern()))

    @property
    def pending(self) -> list[str]:
        """The names of the groups not included yet."""
        return [group.name for _, group, _ in self._pending]

    def ready_for(self, path: str) -> None:
        """Include every pending group with routes that may answer ``path``."""
        if any(paths.match(path) for _, _, paths in self._pending):
            self._include_pending(lambda paths: paths.match(path) is not None)

    def include_all(self) -> None:
        """Include every pending group (before anything lists the routes)."""
        if self._pending:
            self._include_pending(lambda _: True)

    def _next_place(self) -> int:
        self._places += 1
        return self._places

    def _add(self, router: Router, place: int) -> None:
        resolver = self.resolver
        known = {id(route) for route in (*resolver._static_routes, *resolver._dynamic_routes)}
        resolver.include_router(router)
        for route in (*resolver._static_routes, *resolver._dynamic_routes):
            if id(route) not in known:
                self._place[id(route)] = place

    def _include_pending(self, wanted: Callable[[re.Pattern[str]], bool]) -> None:
        with self._lock:  # another thread may have included it meanwhile: chosen again under the lock
            chosen = [entry for entry in self._pending if wanted(entry[2])]
            if not chosen:
                return
            for place, group, _ in chosen:
                self._add(group.build(), place)

            def place_of(route: Route) -> int:
                return self._place[id(route)]

            # powertools searches these lists in order (first match wins): new lists, each swapped in
            # whole, so a request being matched meanwhile reads one list or the other
            resolver = self.resolver
            resolver._static_routes = sorted(resolver._static_routes, key=place_of)
            resolver._dynamic_routes = sorted(resolver._dynamic_routes, key=place_of)
            self._pending = tuple(entry for entry in self._pending if entry not in chosen)
