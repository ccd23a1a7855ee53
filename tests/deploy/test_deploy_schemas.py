"""Every rendered object is schema-valid, strictly, for several Kubernetes versions.

Built-in kinds: ``kubernetes-validate --strict`` (unknown fields are errors)
against Kubernetes 1.30 (the chart's floor: the preStop ``sleep`` action), 1.33
and 1.37 (the newest the pinned kubernetes-validate knows).

Custom resources (HTTPRoute, IngressRoute, ScaledObject, ServiceMonitor), for
which kubernetes-validate has no schema (it only warns, and has no option to be
given more): tools/crd-validate/validate.mjs, against the types the projects
publish, packaged on the npm registry as @kubernetes-models/* and pinned by
package-lock.json; strictly too (TypeScript's excess-property check). A kind that
neither knows fails the test.

Both validators are shown to reject a bad object first, so a green run means
something.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.rendering import Render, require, run

VERSIONS = ("1.30.0", "1.33.0", "1.37.0")

CUSTOM_KINDS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("traefik.io/v1alpha1", "IngressRoute"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
"""The custom resources deploy/ may ship; validated by tools/crd-validate."""

MISSING = re.compile(
    r"^WARN (?P<file>\S+) Couldn't find schema for kind (?P<kind>\S+) "
    r"with api version (?P<api>\S+) for kubernetes version"
)
PASSED = re.compile(r"^INFO (?P<file>\S+) passed for resource (?P<resource>\S+) against version")


def kubernetes_validate(paths: list[Path], version: str) -> tuple[int, set[tuple[str, str]]]:
    """Validate every object of ``paths``; return (objects passed, kinds without schema).

    Fails the test on any error.
    """
    done = run(
        [require("kubernetes-validate"), "--strict", "--kubernetes-version", version]
        + [str(p) for p in paths],
        check=False,
    )
    lines = done.stdout.splitlines()
    errors = [line for line in lines if not (PASSED.match(line) or MISSING.match(line))]
    assert done.returncode == 0 and not errors, "\n".join(errors or lines) + done.stderr
    passed = sum(1 for line in lines if PASSED.match(line))
    missing = set()
    for line in lines:
        if m := MISSING.match(line):
            missing.add((m["api"], m["kind"]))
    return passed, missing


def check_renders(renders: list[Render], version: str) -> None:
    paths = [r.path for r in renders]
    passed, missing = kubernetes_validate(paths, version)
    assert missing <= CUSTOM_KINDS, f"no schema for {sorted(missing - CUSTOM_KINDS)}"
    total = sum(len(r.objects) for r in renders)
    custom = sum(
        1 for r in renders for o in r.objects if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS
    )
    assert passed + custom == total, "some objects were neither validated nor custom"


@pytest.mark.parametrize("version", VERSIONS)
def test_chart_renders_are_valid(chart_renders: dict[str, Render], version: str) -> None:
    check_renders(list(chart_renders.values()), version)


@pytest.mark.parametrize("version", VERSIONS)
def test_overlays_are_valid(overlay_renders: dict[str, Render], version: str) -> None:
    check_renders(list(overlay_renders.values()), version)


def validate_custom(
    crd_validator: tuple[str, Path], tmp_path: Path, entries: list[dict[str, Any]]
) -> tuple[int, str]:
    node, install_dir = crd_validator
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(entries))
    script = Path(__file__).resolve().parents[2] / "tools" / "crd-validate" / "validate.mjs"
    done = run([node, str(script), str(install_dir), str(objects)], check=False)
    return done.returncode, done.stdout + done.stderr


def test_custom_resources_are_valid(
    chart_renders: dict[str, Render],
    overlay_renders: dict[str, Render],
    crd_validator: tuple[str, Path],
    tmp_path: Path,
) -> None:
    entries = [
        {"source": r.name, "object": o}
        for r in [*chart_renders.values(), *overlay_renders.values()]
        for o in r.objects
        if "." in o["apiVersion"].split("/")[0] and (o["apiVersion"], o["kind"]) in CUSTOM_KINDS
    ]
    shipped = {(e["object"]["apiVersion"], e["object"]["kind"]) for e in entries}
    assert shipped == CUSTOM_KINDS, f"value sets render no {sorted(CUSTOM_KINDS - shipped)}"
    code, output = validate_custom(crd_validator, tmp_path, entries)
    assert code == 0, output
    assert output.count("OK ") == len(entries), output


# -- the validators reject bad objects --------------------------------------------------


def test_kubernetes_validate_rejects_an_unknown_field(
    chart_renders: dict[str, Render], tmp_path: Path
) -> None:
    deployment = copy.deepcopy(chart_renders["defaults"].one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deployment))
    done = run(
        [require("kubernetes-validate"), "--strict", "-k", VERSIONS[0], str(path)], check=False
    )
    assert done.returncode != 0
    assert "readinesProbe" in done.stdout


def test_crd_validator_rejects_bad_objects(
    chart_renders: dict[str, Render], crd_validator: tuple[str, Path], tmp_path: Path
) -> None:
    route = copy.deepcopy(chart_renders["defaults"].one("HTTPRoute"))
    route["spec"]["rules"][0]["backendRefs"][0]["prot"] = 8000  # a typo of port
    scaled = copy.deepcopy(chart_renders["keda"].one("ScaledObject"))
    scaled["spec"]["minReplicaCount"] = "three"  # not an integer
    monitor = copy.deepcopy(chart_renders["keda"].one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "fifteen seconds"  # not a duration
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    entries = [
        {"source": "typo", "object": route},
        {"source": "type", "object": scaled},
        {"source": "pattern", "object": monitor},
        {"source": "unknown", "object": unknown},
    ]
    code, output = validate_custom(crd_validator, tmp_path, entries)
    assert code != 0
    for source in ("typo", "type", "pattern", "unknown"):
        assert re.search(rf"^ERROR .* in {source}: ", output, re.MULTILINE), output
    assert "'\"prot\"' does not exist" in output
