"""What deploy/ renders agrees with the server it deploys.

Read from the rendered manifests (every chart value set, every kustomize overlay)
and compared with the server's own code:

* the configuration a pod would load (its ConfigMap file and its environment,
  secrets included) loads with ``wsfleet.config.load_settings``: the manifests
  never give the server a configuration it refuses;
* the probes: startup and liveness on ``/livez``, readiness on ``/readyz``, all
  on the internal port the server listens on; the ports of the containers and
  Services are the server's;
* the grace period covers the preStop sleep plus ``drain.timeout`` plus 5 s,
  and the preStop sleep is ``drain.readiness_delay``;
* the metric the KEDA and HPA triggers name is one a real node exports on
  ``/metrics``;
* the NGINX Ingress proxy timeouts are above the pods' ``client.ping_interval``.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from tests.deploy.pods import container_port, pod_settings, wsfleet_container
from tests.deploy.rendering import Render
from tests.node_harness import running_node
from wsfleet.brokers import check_broker_url
from wsfleet.settings import Settings

GRACE_MARGIN = 5
"""Seconds the grace period keeps beyond preStop + drain.timeout (docs/topics/lifecycle.md)."""


def all_renders(
    chart_renders: dict[str, Render], overlay_renders: dict[str, Render]
) -> list[Render]:
    return [*chart_renders.values(), *overlay_renders.values()]


def deployments(renders: list[Render]) -> list[tuple[Render, dict[str, Any]]]:
    found = [(r, d) for r in renders for d in r.of_kind("Deployment")]
    assert found
    return found


@pytest.fixture(scope="module")
def renders(chart_renders: dict[str, Render], overlay_renders: dict[str, Render]) -> list[Render]:
    return all_renders(chart_renders, overlay_renders)


def test_pods_load_their_configuration(renders: list[Render]) -> None:
    for render, deployment in deployments(renders):
        settings = pod_settings(render, deployment)  # raises ConfigError if refused
        check_broker_url(settings.broker.url, key_prefix=settings.broker.key_prefix)
        assert settings.server.log_format == "json", render.name


def test_chart_config_carries_the_values(chart_renders: dict[str, Render]) -> None:
    custom = chart_renders["custom"]
    settings = pod_settings(custom, custom.one("Deployment"))
    assert settings.client.ping_interval == 20
    assert settings.server.connection_limit == 5000
    assert [n.name for n in settings.channel.namespaces] == ["chat"]
    assert (settings.drain.readiness_delay, settings.drain.window, settings.drain.timeout) == (
        10,
        60,
        90,
    )
    cluster = chart_renders["redis-cluster"]
    settings = pod_settings(cluster, cluster.one("Deployment"))
    assert settings.broker.url.startswith("redis+cluster://")
    assert settings.broker.key_prefix == "fleet1"
    assert settings.api.key == "test-api-key"
    assert settings.auth.token_hmac_secret == "test-hmac-secret"
    memory = chart_renders["defaults"]
    assert pod_settings(memory, memory.one("Deployment")).broker.url == "memory://"


def test_probes_and_ports_are_the_servers(renders: list[Render]) -> None:
    defaults = Settings()
    for render, deployment in deployments(renders):
        settings = pod_settings(render, deployment)
        # The ports the pod's server listens on are the server's defaults...
        assert settings.server.port == defaults.server.port, render.name
        assert settings.server.internal_port == defaults.server.internal_port, render.name
        container = wsfleet_container(deployment)
        # ...and the container declares them.
        declared = {int(p["containerPort"]) for p in container["ports"]}
        assert declared == {settings.server.port, settings.server.internal_port}, render.name
        for probe, path in (
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ):
            http = container[probe]["httpGet"]
            assert http["path"] == path, f"{render.name}: {probe}"
            port = container_port(container, http["port"])
            assert port == settings.server.internal_port, f"{render.name}: {probe} port {port}"


def test_services_reach_the_servers_ports(renders: list[Render]) -> None:
    for render, deployment in deployments(renders):
        settings = pod_settings(render, deployment)
        container = wsfleet_container(deployment)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        targets = set()
        for service in render.of_kind("Service"):
            selector = service["spec"].get("selector", {})
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for port in service["spec"]["ports"]:
                target = container_port(container, port.get("targetPort", port["port"]))
                targets.add(target)
                if target == settings.server.port:
                    assert port.get("appProtocol") == "kubernetes.io/ws", render.name
        assert targets == {settings.server.port, settings.server.internal_port}, render.name


def test_grace_period_covers_prestop_and_drain(renders: list[Render]) -> None:
    for render, deployment in deployments(renders):
        settings = pod_settings(render, deployment)
        spec = deployment["spec"]["template"]["spec"]
        container = wsfleet_container(deployment)
        pre_stop = container["lifecycle"]["preStop"]
        if "sleep" in pre_stop:
            sleep = pre_stop["sleep"]["seconds"]
        else:
            command = pre_stop["exec"]["command"]
            assert command[0] in ("sleep", "/bin/sleep"), f"{render.name}: preStop {command}"
            sleep = float(command[1])
        assert sleep == settings.drain.readiness_delay, render.name
        grace = spec["terminationGracePeriodSeconds"]
        assert grace >= sleep + settings.drain.timeout + GRACE_MARGIN, (
            f"{render.name}: grace {grace} < preStop {sleep} + drain.timeout "
            f"{settings.drain.timeout} + {GRACE_MARGIN}"
        )


def test_chart_computes_the_grace_period(chart_renders: dict[str, Render]) -> None:
    """The chart's grace period is exactly preStop + drain.timeout + 5, for any drain."""
    for name, expected in (("defaults", 5 + 30 + 5), ("custom", 10 + 90 + 5)):
        spec = chart_renders[name].one("Deployment")["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] == expected, name


def test_rolling_update_keeps_capacity(chart_renders: dict[str, Render]) -> None:
    """A fleet rolls with no pod missing; one memory-broker pod is replaced, never doubled."""
    for render in chart_renders.values():
        deployment = render.one("Deployment")
        spec = deployment["spec"]
        settings = pod_settings(render, deployment)
        if settings.broker.url.startswith("memory:"):
            assert spec["strategy"] == {"type": "Recreate"}, render.name
            assert spec["replicas"] == 1, render.name
            continue
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, render.name
        assert spec["minReadySeconds"] >= 1, render.name


def test_no_service_links_reach_the_server(
    chart_renders: dict[str, Render], overlay_renders: dict[str, Render]
) -> None:
    """Service links would put WSFLEET_PORT=tcp://... into the pods, which the server refuses."""
    for render in [*chart_renders.values(), *overlay_renders.values()]:
        pod = render.one("Deployment")["spec"]["template"]["spec"]
        assert pod.get("enableServiceLinks") is False, render.name


def test_ping_interval_is_below_proxy_timeouts(chart_renders: dict[str, Render]) -> None:
    checked = 0
    for render in chart_renders.values():
        for ingress in render.of_kind("Ingress"):
            settings = pod_settings(render, render.one("Deployment"))
            annotations = ingress["metadata"]["annotations"]
            for name in ("proxy-read-timeout", "proxy-send-timeout"):
                timeout = float(annotations[f"nginx.ingress.kubernetes.io/{name}"])
                assert timeout > settings.client.ping_interval, (
                    f"{render.name}: {name} {timeout}s is not above client.ping_interval "
                    f"{settings.client.ping_interval}s"
                )
            checked += 1
    assert checked >= 2


def autoscaler_metrics(chart_renders: dict[str, Render]) -> dict[str, set[str]]:
    """Metric names each autoscaler's trigger refers to."""
    found: dict[str, set[str]] = {}
    for render in chart_renders.values():
        for scaled in render.of_kind("ScaledObject"):
            for trigger in scaled["spec"]["triggers"]:
                assert trigger["type"] == "prometheus"
                query = trigger["metadata"]["query"]
                # PromQL: a metric name is an identifier outside {...} (label
                # matchers) and not followed by "(" (a function or aggregation).
                bare = re.sub(r"\{[^}]*\}", "", query)
                names = {
                    name
                    for name, call in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", bare)
                    if not call and name not in ("by", "without", "on", "ignoring")
                }
                found.setdefault("keda", set()).update(names)
        for hpa in render.of_kind("HorizontalPodAutoscaler"):
            for metric in hpa["spec"]["metrics"]:
                assert metric["type"] == "Pods"
                found.setdefault("hpa", set()).add(metric["pods"]["metric"]["name"])
    return found


async def test_autoscalers_use_a_metric_the_server_exports(
    chart_renders: dict[str, Render],
) -> None:
    wanted = autoscaler_metrics(chart_renders)
    assert set(wanted) == {"keda", "hpa"}
    assert wanted["keda"] == {"wsfleet_connections"}
    async with (
        running_node() as node,
        aiohttp.ClientSession() as session,
        session.get(f"{node.internal_url}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    # Every sample's name (a labelled counter without samples shows only # TYPE).
    exported = {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    for autoscaler, names in wanted.items():
        assert names <= exported, f"{autoscaler} names {sorted(names - exported)}, not exported"
    # A gauge, so that averaging it over the pods means connections per pod.
    assert "# TYPE wsfleet_connections gauge" in text
