"""The fleet lab's nginx runs the settings the chart's NGINX Ingress ships.

lab/nginx.py takes its proxy timeouts, ``proxy_next_upstream`` and the affinity
cookie's name from the chart's values.yaml (lab/chart.py). Here the
``nginx.conf`` the lab renders and the Ingress annotations ``helm template``
renders from the same values are compared directive by directive, so what the
end-to-end tests prove behind nginx is what users deploy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.chart import CHART_VALUES, SHIPPED, ingress_settings, load_ingress_settings
from lab.nginx import NginxOptions, check_timeouts, render
from tests.deploy.rendering import documents, helm_template
from wsfleet.settings import Settings

ANNOTATION = "nginx.ingress.kubernetes.io/"

# nginx.conf directive -> ingress-nginx annotation, with the unit nginx.conf adds.
DIRECTIVES = {
    "proxy_read_timeout": ("proxy-read-timeout", "s"),
    "proxy_send_timeout": ("proxy-send-timeout", "s"),
    "proxy_connect_timeout": ("proxy-connect-timeout", "s"),
    "proxy_next_upstream": ("proxy-next-upstream", ""),
    "proxy_next_upstream_tries": ("proxy-next-upstream-tries", ""),
}


def lab_conf(*, affinity: bool) -> str:
    return render(
        NginxOptions(
            listen_port=8080,
            prefix=Path("/nonexistent/lab-nginx"),
            affinity=affinity,
            upstreams=("127.0.0.1:18001", "127.0.0.1:18002"),
        )
    )


def ingress_annotations(*, affinity: bool) -> dict[str, str]:
    sets = ("routing.type=nginx", f"routing.affinity.enabled={str(affinity).lower()}")
    objects = documents(helm_template("lab", sets=sets).stdout)
    (ingress,) = [o for o in objects if o["kind"] == "Ingress"]
    annotations: dict[str, str] = ingress["metadata"]["annotations"]
    return annotations


def directive(conf: str, name: str) -> str:
    values = re.findall(rf"^\s*{name} (.+);$", conf, re.MULTILINE)
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


@pytest.mark.parametrize("affinity", [False, True])
def test_lab_nginx_matches_the_ingress(affinity: bool) -> None:
    conf = lab_conf(affinity=affinity)
    annotations = ingress_annotations(affinity=affinity)
    for name, (annotation, unit) in DIRECTIVES.items():
        assert directive(conf, name) == annotations[ANNOTATION + annotation] + unit, name
    if affinity:
        assert annotations[ANNOTATION + "affinity"] == "cookie"
        cookie = annotations[ANNOTATION + "session-cookie-name"]
        assert f"map $cookie_{cookie} $wsfleet_affinity_key" in conf
        assert f'add_header Set-Cookie "{cookie}=' in conf
    else:
        assert ANNOTATION + "affinity" not in annotations
        assert "$cookie_" not in conf


def test_lab_reads_the_charts_values() -> None:
    assert load_ingress_settings(CHART_VALUES) == SHIPPED
    options = NginxOptions(listen_port=1, prefix=Path("/x"))
    assert (options.proxy_read_timeout, options.next_upstream, options.affinity_cookie) == (
        SHIPPED.proxy_read_timeout,
        SHIPPED.next_upstream,
        SHIPPED.affinity_cookie,
    )
    check_timeouts(options, Settings().client.ping_interval)


def test_ingress_settings_is_pure_and_names_bad_keys() -> None:
    values = {
        "routing": {
            "affinity": {"cookieName": "C"},
            "nginx": {
                "proxyReadTimeout": 100,
                "proxySendTimeout": 200,
                "proxyConnectTimeout": 3,
                "proxyNextUpstream": "error",
                "proxyNextUpstreamTries": 2,
            },
        }
    }
    settings = ingress_settings(values)
    assert (settings.proxy_read_timeout, settings.affinity_cookie) == (100, "C")
    values["routing"]["nginx"]["proxyReadTimeout"] = "1h"  # type: ignore[index]
    with pytest.raises(ValueError, match=r"routing\.nginx\.proxyReadTimeout"):
        ingress_settings(values)
