"""The Helm chart lints strictly for every value set, and refuses what would not work.

``helm lint --strict`` runs the chart's templates and checks the values against
values.schema.json. The refusals are checked with ``helm template``, which runs
the chart's ``fail`` rules (``helm lint`` only logs them).
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.rendering import CHART, ROOT, VALUE_SETS, VALUES, helm_template, require, run


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_strict(value_set: str) -> None:
    done = run(
        [
            require("helm"), "lint", "--strict", str(CHART),
            "--namespace", "wsfleet", "--values", str(VALUES / f"{value_set}.yaml"),
        ]
    )  # fmt: skip
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_value_sets_cover_every_choice() -> None:
    """Each routing type, broker mode and autoscaler has a value set of its own."""
    seen: dict[str, set[str]] = {"routing": set(), "broker": set(), "autoscaling": set()}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for name in VALUE_SETS:
        values = yaml.safe_load((VALUES / f"{name}.yaml").read_text()) or {}
        seen["routing"].add(values.get("routing", {}).get("type", defaults["routing"]["type"]))
        seen["broker"].add(values.get("broker", {}).get("mode", defaults["broker"]["mode"]))
        seen["autoscaling"].add(
            values.get("autoscaling", {}).get("type", defaults["autoscaling"]["type"])
        )
    assert seen["routing"] == {"gateway", "nginx", "traefik", "none"}
    assert seen["broker"] == {"memory", "redis", "redis-sentinel", "redis-cluster"}
    assert seen["autoscaling"] == {"none", "keda", "hpa"}


def test_app_version_is_the_servers() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == project["version"]


def test_unknown_values_are_refused() -> None:
    done = helm_template("t", sets=("replicas=3",), check=False)
    assert done.returncode != 0
    assert "Additional property replicas is not allowed" in done.stderr


REFUSED = {
    "rabbitmq mode": (
        ("broker.mode=rabbitmq",),
        "RabbitMQ (amqp://, amqps://) is not implemented",
    ),
    "amqp url": (
        ("broker.mode=redis", "broker.url=amqp://guest:guest@rabbitmq:5672/"),
        "RabbitMQ (amqp://, amqps://) is not implemented",
    ),
    "memory with keda": (
        ("autoscaling.type=keda",),
        "autoscaling needs a shared broker",
    ),
    "memory with hpa": (
        ("autoscaling.type=hpa",),
        "autoscaling needs a shared broker",
    ),
    "redis without url": (
        ("broker.mode=redis",),
        "broker.mode redis needs broker.url",
    ),
    "sentinel mode with a plain url": (
        ("broker.mode=redis-sentinel", "broker.url=redis://redis:6379"),
        "broker.url must start with redis+sentinel:// for broker.mode redis-sentinel",
    ),
    "cluster mode with a sentinel url": (
        ("broker.mode=redis-cluster", "broker.url=redis+sentinel://s:26379/m"),
        "broker.url must start with redis+cluster:// for broker.mode redis-cluster",
    ),
    "drain timeout too short": (
        ("drain.readinessDelay=5", "drain.window=25", "drain.timeout=30"),
        "drain.timeout (30) must exceed drain.readinessDelay + drain.window (5 + 25)",
    ),
    "drain in config": (
        ("config.drain.timeout=60",),
        "config.drain: set the drain with the chart's drain.readinessDelay",
    ),
    "port in config": (
        ("config.server.port=8080",),
        "config.server.port is set by the chart",
    ),
    "api key in config": (
        ("config.api.key=plain",),
        "put the API key in secrets.apiKey",
    ),
    "hmac secret in config": (
        ("config.auth.token_hmac_secret=plain",),
        "put it in secrets.tokenHmacSecret",
    ),
    "broker url in config": (
        ("config.broker.url=redis://r:6379",),
        "set broker.mode and broker.url",
    ),
    "ingress peer on the internal port": (
        (
            "networkPolicy.enabled=true",
            "networkPolicy.publicFrom[0].namespaceSelector.matchLabels.team=ingress",
            "networkPolicy.internalFrom[0].namespaceSelector.matchLabels.team=ingress",
        ),
        "the ingress must never reach the internal port",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(case: str) -> None:
    sets, message = REFUSED[case]
    done = helm_template("t", sets=sets, check=False)
    assert done.returncode != 0, f"rendered although {case}"
    assert message in done.stderr


def test_memory_broker_is_one_pod() -> None:
    done = helm_template("t", sets=("replicaCount=5",))
    deployment = next(
        doc for doc in yaml.safe_load_all(done.stdout) if doc and doc["kind"] == "Deployment"
    )
    assert deployment["spec"]["replicas"] == 1


def test_old_kubernetes_is_refused() -> None:
    """The preStop `sleep` action needs Kubernetes >= 1.30; older clusters are refused."""
    done = run(
        [require("helm"), "template", "t", str(CHART), "--kube-version", "1.29.9"], check=False
    )
    assert done.returncode != 0
    assert "kubeVersion" in done.stderr or "incompatible" in done.stderr


def leaf_keys(values: dict[str, object], prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and key != "config":
            keys += leaf_keys(value, path)
        else:
            keys.append(path)
    return keys


def test_readme_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = []
    for path in leaf_keys(values):
        parent, _, leaf = path.rpartition(".")
        if f"`{path}`" in readme:
            continue
        # A row may group siblings: `probes.startup.periodSeconds`, `.failureThreshold`.
        rows = [line for line in readme.splitlines() if parent and f"`{parent}." in line]
        if not any(f"`.{leaf}`" in row for row in rows):
            missing.append(path)
    assert not missing, f"values missing from README.md: {missing}"


def render_notes(tmp_path: Path, values: Path, release: str) -> str:
    """NOTES.txt as `helm install` would print it (`helm template` skips it): rendered
    from a copy of the chart where it is wrapped in a ConfigMap."""
    chart = tmp_path / "wsfleet"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_test_notes.tpl").write_text(
        '{{- define "test.notes" -}}\n' + notes + "{{- end -}}\n"
    )
    (chart / "templates" / "test-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: |\n{{ include "test.notes" . | indent 4 }}\n'
    )
    done = run(
        [
            require("helm"), "template", release, str(chart), "--namespace", "wsfleet",
            "--values", str(values), "--show-only", "templates/test-notes.yaml",
        ]
    )  # fmt: skip
    text: str = yaml.safe_load(done.stdout)["data"]["notes"]
    return text


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_notes_render(value_set: str, tmp_path: Path) -> None:
    notes = render_notes(tmp_path, VALUES / f"{value_set}.yaml", value_set)
    assert f"svc/{value_set}-wsfleet 8000:8000" in notes
    assert f"svc/{value_set}-wsfleet-internal 9000:9000" in notes
    assert "grace period of" in notes
