"""The dev stack's API Gateway routing: which function serves a request, with its path parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\+?\}")


@dataclass(frozen=True)
class Route:
    """One API Gateway route: ``METHOD /path/{param}``, served by ``function``."""

    function: str
    method: str
    template: str
    pattern: re.Pattern[str] = field(compare=False)

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def literal_segments(self) -> int:
        return sum(1 for part in self.template.split("/") if part and not _PARAM.fullmatch(part))


def compile_route(function: str, method: str, template: str) -> Route:
    """A route whose path parameters each match one path segment (``[^/]+``)."""
    regex, last = "", 0
    for match in _PARAM.finditer(template):
        regex += re.escape(template[last : match.start()]) + f"(?P<{match.group(1)}>[^/]+)"
        last = match.end()
    regex += re.escape(template[last:])
    return Route(function, method.upper(), template, re.compile(regex))


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


class RouteTable:
    """Picks the route for a request as API Gateway does: the most specific (most literal) match."""

    def __init__(self, routes: list[tuple[str, str, str]]) -> None:
        self.routes = [compile_route(*route) for route in routes]

    def _matching(self, path: str) -> list[tuple[Route, re.Match[str]]]:
        found = [(route, route.pattern.fullmatch(path)) for route in self.routes]
        return [(route, match) for route, match in found if match is not None]

    def _most_specific(self, path: str) -> list[tuple[Route, re.Match[str]]]:
        """The matching routes with the most literal segments: the path picks them, then the method.

        ``/v1/agents/register`` is POST's only, though ``GET /v1/agents/{agent_id}`` matches it too.
        """
        matching = self._matching(path)
        most = max((route.literal_segments for route, _ in matching), default=0)
        return [(route, match) for route, match in matching if route.literal_segments == most]

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The route for ``method`` and raw ``path``, with decoded path parameters; None if none."""
        for route, match in self._most_specific(path):
            if route.method == method.upper():
                return RouteMatch(route, {name: unquote(value) for name, value in match.groupdict().items()})
        return None

    def allowed_methods(self, path: str) -> list[str]:
        """The methods the most specific routes of ``path`` take (empty: no route has this path)."""
        return sorted({route.method for route, _ in self._most_specific(path)})

    def functions(self) -> list[str]:
        return sorted({route.function for route in self.routes})
