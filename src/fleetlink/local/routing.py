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

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The route for ``method`` and raw ``path``, with decoded path parameters; None if none."""
        candidates = [(r, m) for r, m in self._matching(path) if r.method == method.upper()]
        if not candidates:
            return None
        route, match = max(candidates, key=lambda found: found[0].literal_segments)
        return RouteMatch(route, {name: unquote(value) for name, value in match.groupdict().items()})

    def allowed_methods(self, path: str) -> list[str]:
        """The methods some route accepts on ``path`` (empty: no route has this path)."""
        return sorted({route.method for route, _ in self._matching(path)})

    def functions(self) -> list[str]:
        return sorted({route.function for route in self.routes})
