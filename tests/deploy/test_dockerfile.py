"""The container image's Dockerfile: checkov finds nothing unexplained, and it agrees
with the manifests and the server.

No Docker engine runs here, so the image is not built by the tests; what can be
checked offline is: the user the image runs as is the one the chart and the
overlays require, the ports it exposes are the server's, the version it installs
is the package's, and .dockerignore lets in exactly what the build copies.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import tomllib
from pathlib import Path

from tests.deploy.test_deploy_checkov import checkov, unexplained_findings
from wsfleet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
POD_SPECS = [
    ROOT / "deploy/helm/wsfleet/templates/deployment.yaml",
    ROOT / "deploy/kustomize/base/deployment.yaml",
]


def instructions(name: str) -> list[str]:
    """The arguments of every ``name`` instruction of the Dockerfile, in order."""
    pattern = re.compile(rf"^{name}\s+(.*)$")
    return [
        m.group(1).strip()
        for line in DOCKERFILE.read_text().splitlines()
        if (m := pattern.match(line))
    ]


def test_checkov_finds_nothing_unexplained_in_the_dockerfile(tmp_path: Path) -> None:
    shutil.copyfile(DOCKERFILE, tmp_path / "Dockerfile")
    report = checkov(tmp_path, "dockerfile")
    assert report["summary"]["passed"] > 0, report["summary"]
    failed, unexplained = unexplained_findings(report)
    assert not failed, "checkov findings in the Dockerfile:\n" + "\n".join(failed)
    assert not unexplained, "checks skipped without a reason:\n" + "\n".join(unexplained)


def test_the_image_runs_as_the_user_the_manifests_require() -> None:
    assert instructions("USER")[-1] == "10001:10001"
    for spec in POD_SPECS:
        text = spec.read_text()
        assert "runAsUser: 10001" in text and "runAsGroup: 10001" in text, spec


def test_the_image_exposes_the_server_ports_and_runs_serve() -> None:
    server = Settings().server
    assert instructions("EXPOSE") == [f"{server.port} {server.internal_port}"]
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["wsfleet"]
    assert json.loads(instructions("CMD")[-1]) == ["serve"]


def test_the_image_installs_the_version_of_the_package() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"VERSION={version}" in instructions("ARG")


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    copied = [
        src for args in instructions("COPY") if "--from" not in args for src in args.split()[:-1]
    ]
    assert copied, "the Dockerfile copies nothing from the context"
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for src in copied:
        assert any(fnmatch.fnmatch(src.rstrip("/"), pattern) for pattern in allowed), src
        assert (ROOT / src).exists(), src
