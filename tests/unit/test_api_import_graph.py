"""The API's modules import one another without a cycle, function-level imports included."""

from __future__ import annotations

import grimp


def test_no_api_module_imports_itself_back() -> None:
    # Given every import of the API package (lazy ones inside functions too)
    graph = grimp.build_graph("fleetlink")
    modules = sorted(m for m in graph.modules if m == "fleetlink.api" or m.startswith("fleetlink.api."))
    # When each module's imports are followed
    cycles = [
        chain
        for module in modules
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("fleetlink.api")
        and (chain := graph.find_shortest_chain(importer=imported, imported=module)) is not None
    ]
    # Then none leads back to it (the routers that serve the document get it from their entry point)
    assert cycles == []
