"""The dependency arrows of docs/topics/architecture.md, enforced.

``cli -> node -> transport, http, brokers, core, protocol``: the lower layers
never import the upper ones, and only ``cli``/``config`` read the environment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "wsfleet"

# layer -> wsfleet modules (prefixes) it may import
ALLOWED = {
    "protocol": ("wsfleet.protocol",),
    "brokers": ("wsfleet.brokers", "wsfleet.protocol"),
    # core may use the broker *contract*, the pure auth module and the schema
    "core": (
        "wsfleet.core",
        "wsfleet.protocol",
        "wsfleet.brokers.base",
        "wsfleet.auth",
        "wsfleet.settings",
    ),
    "transport": ("wsfleet.transport", "wsfleet.core", "wsfleet.protocol"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.startswith("wsfleet")}


def _modules(layer: str) -> list[Path]:
    return sorted(p for p in (SRC / layer).rglob("*.py") if not p.name.endswith("_pb2.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_is_below_it(layer: str) -> None:
    bad = {
        f"{path.relative_to(SRC)} imports {name}"
        for path in _modules(layer)
        for name in _imports(path)
        if not name.startswith(ALLOWED[layer])
    }
    assert not bad, "layer boundary crossed:\n" + "\n".join(sorted(bad))


def test_only_cli_and_config_read_the_environment() -> None:
    readers = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "os.environ" in path.read_text() or "getenv(" in path.read_text()
    }
    assert readers <= {"cli.py", "config.py"}, readers
