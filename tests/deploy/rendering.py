"""Rendering deploy/ with the pinned tools: the Helm chart and the kustomize overlays.

A missing tool fails the test with a message naming how to install it
(tools/deploy_tools.py); nothing is skipped.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.deploy_tools import MissingTool, crd_dir, tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "wsfleet"
OVERLAYS = ROOT / "deploy" / "kustomize" / "overlays"
VALUES = Path(__file__).resolve().parent / "values"
VALUE_SETS = sorted(p.stem for p in VALUES.glob("*.yaml"))
NAMESPACE = "wsfleet"


def overlay_dirs() -> list[Path]:
    """Every kustomize overlay: each directory under deploy/kustomize/overlays."""
    if not OVERLAYS.is_dir():
        return []
    return sorted(p for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").is_file())


def require(name: str) -> str:
    """The path of a pinned tool, or a failed test naming how to install it."""
    try:
        return tool(name)
    except MissingTool as error:
        pytest.fail(str(error), pytrace=False)


def require_crd_dir() -> Path:
    try:
        return crd_dir()
    except MissingTool as error:
        pytest.fail(str(error), pytrace=False)


def run(argv: list[str], *, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool; on failure with ``check``, fail the test with its output."""
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if check and done.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited {done.returncode}\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    return done


def helm_template(
    release: str, *value_files: Path, sets: tuple[str, ...] = (), check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = [require("helm"), "template", release, str(CHART), "--namespace", NAMESPACE]
    for path in value_files:
        argv += ["--values", str(path)]
    for item in sets:
        argv += ["--set", item]
    return run(argv, check=check)


def documents(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a multi-document text."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass(frozen=True)
class Render:
    """One rendered set of manifests: a chart value set or a kustomize overlay."""

    name: str
    path: Path
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"{self.name}: expected one {kind}, found {len(found)}"
        return found[0]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        for o in self.of_kind(kind):
            if o["metadata"]["name"] == name:
                return o
        raise AssertionError(f"{self.name}: no {kind} named {name}")
