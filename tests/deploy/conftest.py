"""Offline validation of deploy/: the Helm chart and the kustomize overlays.

No cluster, no image: every manifest is rendered by the real tools (``helm
template``, ``kubectl kustomize``), pinned by tools/deploy_tools.py, and checked
by schema validators, a linter and the server's own configuration loader. A
missing tool fails the tests with a message naming how to install it; nothing is
skipped.

The fixtures render each value set of ``values/`` and each overlay once per
session, into a temporary directory (one file per render).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.rendering import (
    OVERLAYS,
    ROOT,
    VALUE_SETS,
    VALUES,
    Render,
    documents,
    helm_template,
    overlay_dirs,
    require,
    require_crd_dir,
    run,
)


@pytest.fixture(scope="session")
def render_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rendered")


@pytest.fixture(scope="session")
def chart_renders(render_dir: Path) -> dict[str, Render]:
    """``helm template`` of every value set; the release is named after the set, so
    that the renders' labels differ (checkov links objects by their labels)."""
    renders = {}
    for name in VALUE_SETS:
        text = helm_template(name, VALUES / f"{name}.yaml").stdout
        path = render_dir / f"chart-{name}.yaml"
        path.write_text(text)
        renders[name] = Render(f"chart values/{name}.yaml", path, documents(text))
    return renders


@pytest.fixture(scope="session")
def overlay_renders(render_dir: Path) -> dict[str, Render]:
    """``kubectl kustomize`` of every overlay; fails if there is none."""
    overlays = overlay_dirs()
    if not overlays:
        pytest.fail(f"no kustomize overlay found under {OVERLAYS.relative_to(ROOT)}")
    kubectl = require("kubectl")
    renders = {}
    for overlay in overlays:
        text = run([kubectl, "kustomize", str(overlay)]).stdout
        path = render_dir / f"kustomize-{overlay.name}.yaml"
        path.write_text(text)
        renders[overlay.name] = Render(f"kustomize overlay {overlay.name}", path, documents(text))
    return renders


@pytest.fixture(scope="session")
def crd_validator() -> tuple[str, Path]:
    """``node`` and the installed tools/crd-validate packages."""
    return require("node"), require_crd_dir()
