"""What a rendered pod would run: its container, its configuration, its settings.

:func:`pod_settings` loads the configuration a wsfleet container of a rendered
Deployment would load, the way the server does (``wsfleet.config.load_settings``):
the file named by ``--config`` (or ``WSFLEET_CONFIG``), read from the ConfigMap
mounted at that path, and the container's environment, with values from the
rendered Secrets and ConfigMaps, and stand-ins for the downward API and for
Secrets the manifests do not contain (``secrets.existingSecret``).
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from tests.deploy.rendering import Render
from wsfleet.config import load_settings
from wsfleet.settings import Settings

STAND_INS = {
    "metadata.name": "wsfleet-6d5f7c9b8-abcde",
    "status.podIP": "10.1.2.3",
}
"""Values of the downward API fields a pod would see."""

EXTERNAL_SECRETS = {
    "WSFLEET_API_KEY": "external-api-key",
    "WSFLEET_AUTH_TOKEN_HMAC_SECRET": "external-hmac-secret",
    "WSFLEET_BROKER_URL": "redis://redis.data.svc:6379/0",
}
"""What a Secret the manifests only refer to (one the user manages) would hold."""


def wsfleet_container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The wsfleet container of a Deployment (named wsfleet, or the only one)."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    for container in containers:
        if container["name"] == "wsfleet":
            return dict(container)
    assert len(containers) == 1, "no container named wsfleet"
    return dict(containers[0])


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    """A port number, resolving a named port of the container."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"container has no port named {port!r}")


def _data(obj: Mapping[str, Any]) -> dict[str, str]:
    data = {k: str(v) for k, v in (obj.get("data") or {}).items()}
    if obj["kind"] == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        data.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
    return data


def _lookup(render: Render, kind: str, name: str) -> dict[str, str] | None:
    for obj in render.of_kind(kind):
        if obj["metadata"]["name"] == name:
            return _data(obj)
    return None


def pod_environment(render: Render, container: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment as the pod would see it."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in source:
                data = _lookup(render, kind, source[key]["name"])
                assert data is not None or source[key].get("optional"), (
                    f"{render.name}: envFrom names a missing {kind} {source[key]['name']}"
                )
                env.update(data or {})
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = str(var["value"])
            continue
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            env[name] = STAND_INS[ref["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in ref or "configMapKeyRef" in ref:
            kind, key = (
                ("Secret", "secretKeyRef")
                if "secretKeyRef" in ref
                else ("ConfigMap", "configMapKeyRef")
            )
            data = _lookup(render, kind, ref[key]["name"])
            if data is None:
                # A Secret the user manages: what it would hold.
                env[name] = EXTERNAL_SECRETS[name]
            elif ref[key]["key"] in data:
                env[name] = data[ref[key]["key"]]
            else:
                assert ref[key].get("optional"), (
                    f"{render.name}: {name} refers to a missing key {ref[key]['key']}"
                )
        else:
            raise AssertionError(f"{render.name}: unexpected env source for {name}: {ref}")
    return env


def config_file(render: Render, deployment: Mapping[str, Any]) -> tuple[str, str] | None:
    """(path in the container, text) of the configuration file the container loads."""
    container = wsfleet_container(deployment)
    argv = [*container.get("command", []), *container.get("args", [])]
    path = None
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    env = {v["name"]: v.get("value") for v in container.get("env", [])}
    path = path or env.get("WSFLEET_CONFIG")
    if not path:
        return None
    target = PurePosixPath(path)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        mount_path = PurePosixPath(mount["mountPath"])
        if mount.get("subPath"):
            if mount_path != target:
                continue
            key = mount["subPath"]
        elif target.parent == mount_path:
            key = target.name
        else:
            continue
        volume = volumes[mount["name"]]
        assert "configMap" in volume, f"{render.name}: {path} is not from a ConfigMap"
        data = _lookup(render, "ConfigMap", volume["configMap"]["name"])
        assert data is not None, f"{render.name}: ConfigMap {volume['configMap']['name']} missing"
        assert key in data, f"{render.name}: ConfigMap has no key {key} for {path}"
        return path, data[key]
    raise AssertionError(f"{render.name}: nothing mounted at {path}")


def pod_settings(render: Render, deployment: Mapping[str, Any]) -> Settings:
    """The settings the server in the rendered pod would run with.

    Raises ``wsfleet.config.ConfigError`` if the server would refuse them.
    """
    container = wsfleet_container(deployment)
    env = pod_environment(render, container)
    found = config_file(render, deployment)
    if found is None:
        return load_settings(env=env)
    path, text = found
    suffix = Path(path).suffix or ".yaml"
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / f"wsfleet{suffix}"
        file.write_text(text)
        env.pop("WSFLEET_CONFIG", None)
        return load_settings(path=str(file), env=env)
