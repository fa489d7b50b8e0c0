"""The layers: arm64 wheels for python3.13 minus what the runtime ships, the server-side package,
everything a handler imports found in them, and the whole under Lambda's 250 MB unzipped limit."""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from layers import build

from infra import constants

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

ELF_MACHINE_AARCH64 = 183


@dataclass(frozen=True)
class Built:
    """What the tests need from the built layers, read while holding the build lock."""

    deps_files: frozenset[str]
    shared_files: frozenset[str]
    distributions: frozenset[str]
    top_level: frozenset[str]
    binaries: dict[str, bytes]
    report: str
    total: int
    deps_dir: Path


def _distribution(dist_info: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_info.removesuffix(".dist-info").rsplit("-", 1)[0]).lower()


@pytest.fixture(scope="module")
def built() -> Built:
    """Build the layers (the deps layer only if its inputs changed) and read them."""
    with build.built_layers() as dirs:
        python = dirs.deps / "python"
        deps_files = frozenset(p.relative_to(python).as_posix() for p in python.rglob("*") if p.is_file())
        shared_python = dirs.shared / "python"
        shared_files = frozenset(
            p.relative_to(shared_python).as_posix() for p in shared_python.rglob("*") if p.is_file()
        )
        entries = list(python.iterdir())
        distributions = frozenset(_distribution(e.name) for e in entries if e.name.endswith(".dist-info"))
        top_level = frozenset(
            e.name.split(".")[0]
            for e in entries
            if not e.name.endswith((".dist-info", ".pyi")) and (e.is_dir() or e.suffix in (".py", ".so"))
        )
        binaries = {p.relative_to(python).as_posix(): p.read_bytes()[:20] for p in python.rglob("*.so")}
        report = build.report(dirs)
        _, total = build.unzipped_total(dirs)
        return Built(deps_files, shared_files, distributions, top_level, binaries, report, total, dirs.deps)


def test_the_whole_fits_lambdas_unzipped_limit(built: Built) -> None:
    # Given both layers and the largest function asset
    print("\n" + built.report)
    # Then together they stay under Lambda's 250 MB (unzipped) limit, with room to spare
    assert built.total < build.LAMBDA_UNZIPPED_LIMIT / 2


def test_deps_layer_leaves_out_what_the_runtime_ships(built: Built) -> None:
    assert not built.distributions & build.RUNTIME_PROVIDED
    assert not built.top_level & build.RUNTIME_PROVIDED_MODULES


def test_deps_layer_holds_every_runtime_dependency(built: Built) -> None:
    # Given the [project.dependencies] of pyproject.toml
    names = {
        re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()
        for requirement in build.runtime_dependencies()
    }
    # Then each one the runtime does not ship is in the layer
    assert names - build.RUNTIME_PROVIDED <= built.distributions


def test_native_code_is_for_python_313_on_arm64(built: Built) -> None:
    # Given every shared object in the deps layer
    assert built.binaries
    for path, header in built.binaries.items():
        # Then it is an aarch64 ELF, and CPython extensions are built for 3.13 (or the stable ABI)
        assert header[:4] == b"\x7fELF", path
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64, path
        if ".cpython-" in path:
            assert ".cpython-313-aarch64-linux-gnu.so" in path, path


def test_no_bytecode_or_scripts_in_the_layers(built: Built) -> None:
    assert not [f for f in built.deps_files | built.shared_files if f.endswith(".pyc") or "__pycache__" in f]
    assert not [f for f in built.deps_files if f.startswith("bin/")]


def test_shared_layer_is_the_package_without_the_node_side(built: Built) -> None:
    package = {
        p.relative_to(constants.PACKAGE_DIR.parent).as_posix()
        for p in constants.PACKAGE_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    node_side = {
        f for f in package if f.startswith(("fleetlink/agent/", "fleetlink/local/", "fleetlink/cli/"))
    }
    assert set(built.shared_files) == package - node_side


def test_deps_layer_is_not_rebuilt_when_its_inputs_did_not_change(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a built deps layer and pip unavailable
    def no_pip(*_args: str) -> str:
        raise AssertionError("pip ran although nothing changed")

    monkeypatch.setattr(build, "_pip", no_pip)
    # When it is built again (as every synth does)
    # Then it is taken from the cache
    with build.built_layers() as dirs:
        assert dirs.deps == built.deps_dir


def test_the_cache_key_follows_the_dependencies(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["pydantic>=2"]\n')
    first = build.inputs_hash(build.deps_inputs(pyproject))
    pyproject.write_text('[project]\ndependencies = ["pydantic>=2", "attrs"]\n')
    assert build.inputs_hash(build.deps_inputs(pyproject)) != first


# --- what the handlers import is in the layers --------------------------------------------------


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere (functions too), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for statement in node.body for child in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _module_file(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable(name: str, shared_python: Path) -> tuple[set[str], set[str], set[str]]:
    """From a function's handler (its routers too, in ``fleetlink.api.function_routers``): fleetlink
    modules reached, those missing from the shared layer, and third-party top-level names imported."""
    seen: set[str] = set()
    missing: set[str] = set()
    third_party: set[str] = set()
    todo = [*_imports(constants.FUNCTIONS_DIR / name / "handler.py")]
    while todo:
        module = todo.pop()
        top = module.split(".")[0]
        if top != "fleetlink":
            if top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
            continue
        if module in seen:
            continue
        seen.add(module)
        in_layer = _module_file(module, shared_python)
        if in_layer is None:
            if _module_file(module, constants.PACKAGE_DIR.parent) is not None:
                missing.add(module)  # in the package, not in the layer
            continue  # `from package import name`: a name, not a module
        todo += _imports(in_layer)
    return seen, missing, third_party


@pytest.mark.parametrize("name", constants.FUNCTION_NAMES)
def test_everything_a_handler_imports_is_in_the_layers(built: Built, name: str) -> None:
    # Given the function's handler and every fleetlink module it reaches (lazy imports included)
    shared_python = build.BUILD_DIR / "shared" / "python"
    seen, missing, third_party = reachable(name, shared_python)
    assert seen
    # Then each fleetlink module is in the shared layer
    assert not missing, f"{name} imports modules the shared layer leaves out: {sorted(missing)}"
    # And each third-party module is in the deps layer or shipped by the runtime
    available = built.top_level | build.RUNTIME_PROVIDED_MODULES
    assert third_party <= available, f"{name} imports {sorted(third_party - available)}, in no layer"
