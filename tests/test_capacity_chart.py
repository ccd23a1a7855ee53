"""The capacity planner's YAML is values the Helm chart takes as they are.

``helm lint --strict`` checks them against values.schema.json (which refuses unknown
keys), and ``helm template`` shows them in the Deployment and the autoscaler. The
pinned helm of tools/deploy_tools.py; a missing tool fails the test (see
tests/deploy/rendering.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy.rendering import CHART, documents, helm_template, require, run
from tests.test_capacity import COSTS
from wsfleet.cli import main

REDIS = {"broker": {"mode": "redis", "url": "redis://redis:6379/0"}}


def planned(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> Path:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(COSTS))
    assert main(["capacity", "--profile", str(profile), *args, "--format", "yaml"]) == 0
    path = tmp_path / "capacity.yaml"
    path.write_text(capsys.readouterr().out)
    return path


@pytest.mark.parametrize("autoscaler", ["none", "hpa", "keda"])
def test_the_snippet_is_valid_chart_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, autoscaler: str
) -> None:
    snippet = planned(
        capsys, tmp_path, "--connections", "200000", "--publish-rate", "1000", "--fanout", "5000"
    )
    values = yaml.safe_load(snippet.read_text())
    # 5,000,000 deliveries/s, at most 0.7 x 400,000 per pod with one down: 19 pods, more
    # than the chart's default maxReplicas, which the snippet raises with them.
    assert values["replicaCount"] == 19
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({**REDIS, "autoscaling": {"type": autoscaler}}))
    lint = [require("helm"), "lint", "--strict", str(CHART), "--namespace", "wsfleet"]
    done = run([*lint, "--values", str(snippet), "--values", str(extra)])
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout

    objects = documents(helm_template("t", snippet, extra).stdout)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == values["resources"]
    # With an autoscaler the Deployment leaves the replicas to it.
    assert deployment["spec"].get("replicas", values["replicaCount"]) == values["replicaCount"]
    if autoscaler == "none":
        assert deployment["spec"]["replicas"] == values["replicaCount"]
    scaling = values["autoscaling"]
    if autoscaler == "hpa":
        (hpa,) = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
        assert hpa["spec"]["minReplicas"] == scaling["minReplicas"]
        assert hpa["spec"]["maxReplicas"] == scaling["maxReplicas"]
        target = hpa["spec"]["metrics"][0]["pods"]["target"]
        assert target["averageValue"] == str(scaling["connectionsPerPod"])
    if autoscaler == "keda":
        (scaled,) = [o for o in objects if o["kind"] == "ScaledObject"]
        assert scaled["spec"]["minReplicaCount"] == scaling["minReplicas"]
        assert scaled["spec"]["maxReplicaCount"] == scaling["maxReplicas"]
        assert str(scaling["connectionsPerPod"]) in str(scaled["spec"]["triggers"])


def test_the_memory_brokers_snippet_is_valid_chart_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    snippet = planned(capsys, tmp_path, "--connections", "3000", "--broker", "memory")
    values = yaml.safe_load(snippet.read_text())
    objects = documents(helm_template("t", snippet).stdout)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == values["resources"]
    assert deployment["spec"]["replicas"] == 1
