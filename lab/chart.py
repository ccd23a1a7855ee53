"""The ingress settings wsfleet ships, read from the Helm chart's values.

The lab's nginx stands in for the NGINX Ingress a user deploys with the chart
(``deploy/helm/wsfleet``), so it takes the same values: the proxy timeouts,
``proxy-next-upstream`` and its tries, and the affinity cookie's name, from
``routing.nginx`` and ``routing.affinity`` of the chart's ``values.yaml``. What
the lab tests is then what users deploy; tests/deploy checks that the Ingress
annotations the chart renders and the ``nginx.conf`` :func:`lab.nginx.render`
writes agree.

:func:`ingress_settings` is pure (a mapping in, settings out);
:func:`load_ingress_settings` reads the file. :data:`SHIPPED` is read once, when
the lab is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "CHART_VALUES",
    "SHIPPED",
    "IngressSettings",
    "ingress_settings",
    "load_ingress_settings",
]

T = TypeVar("T")

CHART_VALUES = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "wsfleet" / "values.yaml"
"""The chart's default values."""


@dataclass(frozen=True, kw_only=True)
class IngressSettings:
    """The chart's NGINX Ingress settings, named after the nginx directives they become."""

    proxy_read_timeout: int
    """Seconds; annotation ``proxy-read-timeout``."""
    proxy_send_timeout: int
    """Seconds; annotation ``proxy-send-timeout``."""
    proxy_connect_timeout: int
    """Seconds; annotation ``proxy-connect-timeout``."""
    next_upstream: str
    """Annotation ``proxy-next-upstream``."""
    next_upstream_tries: int
    """Annotation ``proxy-next-upstream-tries``."""
    affinity_cookie: str
    """Annotation ``session-cookie-name`` (with ``affinity: cookie``)."""


def ingress_settings(values: Mapping[str, Any]) -> IngressSettings:
    """The settings in the chart's ``values`` (the parsed ``values.yaml``); pure.

    Raises ValueError naming the key when one is missing or of the wrong type.
    """
    routing = _section(values, "routing")
    nginx = _section(routing, "routing.nginx")
    affinity = _section(routing, "routing.affinity")
    return IngressSettings(
        proxy_read_timeout=_get(nginx, "routing.nginx", "proxyReadTimeout", int),
        proxy_send_timeout=_get(nginx, "routing.nginx", "proxySendTimeout", int),
        proxy_connect_timeout=_get(nginx, "routing.nginx", "proxyConnectTimeout", int),
        next_upstream=_get(nginx, "routing.nginx", "proxyNextUpstream", str),
        next_upstream_tries=_get(nginx, "routing.nginx", "proxyNextUpstreamTries", int),
        affinity_cookie=_get(affinity, "routing.affinity", "cookieName", str),
    )


def load_ingress_settings(path: Path = CHART_VALUES) -> IngressSettings:
    """The settings of the chart's ``values.yaml`` at ``path``."""
    with path.open() as file:
        values = yaml.safe_load(file)
    if not isinstance(values, Mapping):
        raise ValueError(f"{path}: expected a mapping of values")
    return ingress_settings(values)


def _section(parent: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    value = parent.get(path.rsplit(".", 1)[-1])
    if not isinstance(value, Mapping):
        raise ValueError(f"chart values: {path} is missing or not a mapping")
    return value


def _get(section: Mapping[str, Any], path: str, key: str, kind: type[T]) -> T:
    value = section.get(key)
    # bool is an int in Python; a YAML true is never a timeout.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"chart values: {path}.{key} is {value!r}, expected {kind.__name__}")
    return value


SHIPPED = load_ingress_settings()
"""The settings of the chart in this repository."""
