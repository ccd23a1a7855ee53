"""``wsfleet capacity``: the capacity planner on the command line.

Reads the capacity profile (a ``wsfleet bench`` results file, a bare profile, or the
shipped one), runs :func:`wsfleet.capacity.plan` and prints the plan as text, as the
Helm chart's values (YAML, the arithmetic in comments) or as JSON. The arithmetic is
:mod:`wsfleet.capacity`'s; this module only reads and shows.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import textwrap
from dataclasses import asdict, fields
from importlib import resources
from pathlib import Path
from typing import Any

from wsfleet.capacity import (
    MIB,
    PROFILE_KEYS,
    CapacityError,
    DoesNotFit,
    Headroom,
    Load,
    Plan,
    PodLoad,
    Problem,
    Profile,
    plan,
)

__all__ = [
    "SHIPPED_PROFILE",
    "add_parser",
    "as_json",
    "command_line",
    "notes",
    "plan_from_args",
    "run",
    "snippet",
    "snippet_blocks",
    "text",
]

SHIPPED_PROFILE = "capacity_profile.json"
"""The package-data file holding the profile used without ``--profile``."""

BENCH_KEY = "capacity_profile"
"""The key of the profile in a ``wsfleet bench`` results file."""

_WIDTH = 88
"""Comment lines of the YAML snippet are wrapped to this width."""

_LOAD_FLAGS = ("connections", "channels", "publish_rate", "fanout", "broker")
_HEADROOM_FLAGS = tuple(f.name for f in fields(Headroom))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_parser(sub: Any) -> None:
    """Add the ``capacity`` subcommand to the ``wsfleet`` subparsers ``sub``."""
    p = sub.add_parser(
        "capacity",
        help="plan pods, requests, limits and autoscaling for a load",
        description="Plan a fleet for a load from measured costs, and print the Helm "
        "chart's values. Defaults are in docs/reference/cli.md.",
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="a wsfleet bench results file (its capacity_profile) or a bare capacity "
        "profile (JSON); default: the profile shipped with wsfleet",
    )
    load = p.add_argument_group("the load, across the fleet")
    load.add_argument("--connections", type=int, required=True, help="open connections")
    load.add_argument(
        "--channels", type=int, help="channels (default: connections / fanout, or connections)"
    )
    load.add_argument(
        "--publish-rate", type=float, default=0.0, help="publications per second (default 0)"
    )
    load.add_argument(
        "--fanout",
        type=float,
        help="subscribers per publication (default: connections / channels, or 1)",
    )
    load.add_argument(
        "--broker",
        choices=["redis", "memory"],
        default="redis",
        help="redis: a fleet; memory: one pod (default redis)",
    )
    room = p.add_argument_group("headroom")
    defaults = Headroom()
    room.add_argument(
        "--cpu-target",
        type=float,
        help=f"share of one core at the peak ({defaults.cpu_target:g})",
    )
    room.add_argument(
        "--spare-pods", type=int, help="pods that may be down at once (1; memory broker 0)"
    )
    room.add_argument("--min-pods", type=int, help="fewest pods (2; memory broker 1)")
    room.add_argument(
        "--storm-window",
        type=float,
        help=f"seconds in which a down pod's clients reconnect ({defaults.storm_window:g})",
    )
    room.add_argument(
        "--ping-interval", type=float, help=f"seconds between pings ({defaults.ping_interval:g})"
    )
    room.add_argument(
        "--memory-headroom",
        type=float,
        help=f"memory requested beyond the working set, a share ({defaults.memory_headroom:g})",
    )
    room.add_argument(
        "--slow-consumers",
        type=int,
        help=f"full outboxes the memory limit holds ({defaults.slow_consumers})",
    )
    room.add_argument(
        "--outbox-bytes",
        type=int,
        help=f"bytes of one full outbox ({defaults.outbox_bytes})",
    )
    room.add_argument(
        "--max-growth", type=float, help=f"maxReplicas = pods x this ({defaults.max_growth:g})"
    )
    p.add_argument(
        "--format",
        choices=["text", "yaml", "json"],
        default="text",
        help="text (default), yaml (the chart's values) or json",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``wsfleet capacity``: 0 with a plan, 1 when the load does not fit, 2 on bad input."""
    try:
        result, source = plan_from_args(args)
    except CapacityError as exc:
        if exc.subject == "the load":
            exc = CapacityError("the options", [_as_flag(p) for p in exc.problems])
        print(f"wsfleet capacity: {exc}", file=sys.stderr)
        return 2
    except DoesNotFit as exc:
        print(f"wsfleet capacity: {exc.reason}", file=sys.stderr)
        if exc.alternative is not None:
            other = exc.alternative
            print(
                f"With --broker redis it needs {other.pods} pods: "
                f"{command_line(other, args.profile)}",
                file=sys.stderr,
            )
        return 1
    if args.format == "json":
        print(json.dumps(as_json(result, source), indent=2))
    elif args.format == "yaml":
        print(snippet(result, args.profile, source), end="")
    else:
        print(text(result, args.profile, source), end="")
    return 0


def plan_from_args(args: argparse.Namespace) -> tuple[Plan, str]:
    """The plan the parsed command line asks for, and where its profile came from."""
    profile, source = _read_profile(args.profile)
    load = Load(**{name: getattr(args, name) for name in _LOAD_FLAGS})
    given = {n: getattr(args, n) for n in _HEADROOM_FLAGS if getattr(args, n) is not None}
    return plan(profile, load, Headroom(**given)), source


def _as_flag(problem: Problem) -> Problem:
    return Problem(_flag(problem.key), problem.value, problem.allowed)


# -- the profile ----------------------------------------------------------------------


def _read_profile(path: str | None) -> tuple[Profile, str]:
    """The profile and a phrase naming where it came from."""
    if path is None:
        shipped = resources.files("wsfleet").joinpath(SHIPPED_PROFILE)
        subject = f"the shipped profile {shipped}"
        return Profile.from_mapping(json.loads(shipped.read_text()), subject=subject), (
            "the shipped profile"
        )
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        problem = Problem("--profile", path, f"a readable file ({exc.strerror})")
        raise CapacityError("the options", [problem]) from exc
    except ValueError as exc:
        problem = Problem("--profile", path, f"a JSON file ({exc})")
        raise CapacityError("the options", [problem]) from exc
    if isinstance(data, dict) and BENCH_KEY in data:
        subject = f"{path} (its {BENCH_KEY})"
        return Profile.from_mapping(data[BENCH_KEY], subject=subject), path
    if isinstance(data, dict) and not set(data) & set(PROFILE_KEYS):
        problem = Problem(BENCH_KEY, None, "a wsfleet bench results file, or a bare profile")
        raise CapacityError(path, [problem])
    return Profile.from_mapping(data, subject=path), path


# -- showing a plan -------------------------------------------------------------------


def command_line(result: Plan, profile: str | None = None) -> str:
    """The shortest ``wsfleet capacity`` command that makes ``result``'s plan."""
    argv = ["wsfleet", "capacity"]
    if profile is not None:
        argv += ["--profile", profile]
    load = result.load
    argv += ["--connections", str(load.connections)]
    for name in ("channels", "publish_rate", "fanout"):
        value = getattr(load, name)
        if value is not None and value != getattr(Load(connections=1), name):
            argv += [_flag(name), _g(value)]
    argv += ["--broker", load.broker]
    defaults = Headroom()
    for name in _HEADROOM_FLAGS:
        value = getattr(result.headroom, name)
        if value is not None and value != getattr(defaults, name):
            argv += [_flag(name), _g(value)]
    return shlex.join(argv)


def snippet(result: Plan, profile: str | None = None, source: str = "") -> str:
    """The Helm chart's values for ``result``, the arithmetic in comments.

    Four blocks, each ending in a newline: the header (comments), ``replicaCount``,
    ``resources`` and, with a shared broker, ``autoscaling``.
    """
    return "".join(snippet_blocks(result, profile, source))


def snippet_blocks(result: Plan, profile: str | None = None, source: str = "") -> list[str]:
    """:func:`snippet`'s blocks, so that each can go where the chart's values.yaml has it."""
    return [
        _header(result, profile, source),
        f"replicaCount: {result.pods}\n",
        _resources(result),
        _autoscaling(result),
    ]


def _header(result: Plan, profile: str | None, source: str) -> str:
    load, p = result.load, result.profile
    lines = ["Sized by the capacity planner (docs/howto/kubernetes.md, Sizing):"]
    lines += _wrap_command(command_line(result, profile))
    lines += _wrap(
        f"Profile: {p.machine}; measured {p.measured} with wsfleet {p.wsfleet}"
        + (f" ({source})." if source else ".")
    )
    lines += _wrap(
        f"Load: {_n(load.connections)} connections; {_n(load.publish_rate)} publications/s x "
        f"{_n(load.resolved_fanout)} subscribers = {_n(load.deliveries)} deliveries/s; "
        f"{_n(load.resolved_channels)} channels; broker {load.broker}."
    )
    lines += _wrap(f"Pods: {result.pods}, {result.why}. {_sized_for(result)}.")
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def _sized_for(result: Plan) -> str:
    peak = result.peak
    if result.load.broker == "memory":
        return f"Sized for its restart, all {_n(peak.reconnect_clients)} clients reconnecting to it"
    if not result.spare_pods:
        return "Sized for every pod serving (spare_pods 0)"
    down = result.spare_pods
    return (
        f"Sized for {down} down (drained or failed), the other {peak.up} carrying "
        f"{_n(peak.connections)} connections each"
    )


def _resources(result: Plan) -> str:
    p, peak, room, load = result.profile, result.peak, result.headroom, result.load
    up = peak.up
    if load.broker == "memory":
        where = f"The pod, restarted, its {_n(peak.reconnect_clients)} clients reconnecting:"
        publications = f"{_n(load.publish_rate)}/s (one node accepts and delivers)"
        shared = ""
    else:
        where = f"One pod of {result.pods} with {result.spare_pods} down" + (
            f", {_n(peak.reconnect_clients)} clients reconnecting to it:"
            if peak.reconnect_clients
            else ":"
        )
        publications = (
            f"{_n(load.publish_rate)}/s / {up} + {_n(load.publish_rate)}/s x "
            f"min(1, {_n(load.resolved_fanout)} / {up}) = {_n(peak.publications)}/s"
        )
        shared = f" / {up}"
    cpu_lines = [
        where,
        f"  deliveries {_n(load.deliveries)}/s{shared} + pings {_n(peak.connections)} / "
        f"{_g(room.ping_interval)} s = {_n(peak.deliveries + peak.pings)}/s "
        f"x {_us(p.cpu_per_delivery_seconds)} = {_core(peak.cpu_deliveries)}",
        f"  publications {publications} x {_us(p.cpu_per_publication_seconds)} "
        f"= {_core(peak.cpu_publications)}",
        f"  reconnects {_n(peak.reconnect_clients)} / {_g(room.storm_window)} s "
        f"= {_n(peak.reconnects)}/s x {_us(p.cpu_per_connect_seconds)} "
        f"= {_core(peak.cpu_reconnects)}",
        f"  CPU {_core(peak.cpu)} (--cpu-target {_g(room.cpu_target)} of one core) "
        f"-> request {result.cpu_request_millicores}m (50m steps)",
        f"  memory {_n(p.memory_base_bytes)} B + {_n(peak.connections)} x "
        f"{_n(p.memory_per_connection_bytes)} B = {result.working_set_mib:.1f} MiB, "
        f"x {_g(1 + room.memory_headroom)} (--memory-headroom) -> request "
        f"{result.memory_request_mib}Mi (16Mi steps)",
        f"  limit {result.memory_request_mib}Mi + {room.slow_consumers} slow consumers x "
        f"{_g(room.outbox_bytes / MIB)} MiB outbox -> {result.memory_limit_mib}Mi",
    ]
    values = result.values()["resources"]
    assert isinstance(values, dict)
    requests, limits = values["requests"], values["limits"]
    body = [f"  # {part}" for line in cpu_lines for part in _wrap(line, indent=4)]
    body += [
        "  requests:",
        f"    cpu: {requests['cpu']}",
        f"    memory: {requests['memory']}",
        "  limits:",
        "    # a node is one single-threaded process: it never uses more than one core",
        f"    cpu: {_quoted(limits['cpu'])}",
        f"    memory: {limits['memory']}",
    ]
    return "resources:\n" + "".join(line + "\n" for line in body)


def _autoscaling(result: Plan) -> str:
    if result.load.broker == "memory":
        return ""
    return (
        "autoscaling:\n"
        f"  # the planned pods: with fewer, each at connectionsPerPod, a pod down\n"
        f"  # leaves the others more than they are sized for\n"
        f"  minReplicas: {result.min_replicas}\n"
        f"  # {result.pods} x --max-growth {_g(result.headroom.max_growth)}\n"
        f"  maxReplicas: {result.max_replicas}\n"
        f"  # {_n(result.load.connections)} connections / {result.pods} pods\n"
        f"  connectionsPerPod: {result.connections_per_pod}\n"
    )


def text(result: Plan, profile: str | None = None, source: str = "") -> str:
    """The plan for a reader: the load, the pods, each pod's load and cost, the values."""
    load, steady, peak = result.load, result.steady, result.peak
    if load.broker == "memory":
        columns = ("serving", "restarted")
    else:
        columns = (f"all {result.pods} up", f"{result.spare_pods} down (sized for)")

    def row(label: str, a: str, b: str) -> str:
        return f"  {label:<18}{a:>14}{b:>22}\n"

    def per_pod(pod: PodLoad) -> list[str]:
        return [
            _n(pod.connections),
            _n(pod.deliveries + pod.pings),
            _n(pod.publications),
            _n(pod.reconnects),
            f"{pod.cpu:.3f}",
            f"{pod.memory_bytes / MIB:.1f}",
        ]

    labels = (
        "connections",
        "deliveries/s",
        "publications/s",
        "reconnects/s",
        "CPU, cores",
        "memory, MiB",
    )
    profile_ = result.profile
    out = _paragraph(
        f"Capacity plan from {source or 'the profile'}: {profile_.machine}; measured "
        f"{profile_.measured} with wsfleet {profile_.wsfleet}."
    )
    out.append("\n")
    out += _paragraph(
        f"Load: {_n(load.connections)} connections, {_n(load.publish_rate)} publications/s "
        f"to {_n(load.resolved_fanout)} subscribers each = {_n(load.deliveries)} "
        f"deliveries/s, {_n(load.resolved_channels)} channels, broker {load.broker}."
    )
    out += _paragraph(f"Pods: {result.pods}, {result.why}.")
    out.append("\n")
    out.append(row("per pod", *columns))
    for label, a, b in zip(labels, per_pod(steady), per_pod(peak), strict=True):
        out.append(row(label, a, b))
    out.append(
        f"\n(deliveries include a ping per connection every "
        f"{_g(result.headroom.ping_interval)} s; CPU target "
        f"{_g(result.headroom.cpu_target)} core)\n"
    )
    if notes(result):
        out.append("\n")
    for note in notes(result):
        out += _paragraph(f"Note: {note}")
    out.append("\nHelm chart values (deploy/helm/wsfleet/values.yaml):\n\n")
    out.append(snippet(result, profile, source))
    return "".join(out)


def notes(result: Plan) -> list[str]:
    """What the reader of a plan should know about its limits."""
    found = []
    per_connection = result.load.subscriptions_per_connection
    if per_connection > 1.05:
        found.append(
            f"about {per_connection:.1f} subscriptions per connection (channels x fanout / "
            "connections); the profile's memory per connection is for one, so memory is "
            "underestimated: measure your own profile with wsfleet bench"
        )
    if result.load.broker == "memory":
        found.append(
            "the memory broker is one pod: every restart disconnects every client, and "
            "history lives in that pod's memory, which this plan does not count"
        )
    return found


def as_json(result: Plan, source: str) -> dict[str, Any]:
    """The plan as JSON-ready data."""
    load = result.load
    return {
        "profile": {**asdict(result.profile), "source": source},
        "load": {
            **asdict(load),
            "channels": load.resolved_channels,
            "fanout": load.resolved_fanout,
            "deliveries": load.deliveries,
        },
        "headroom": {
            **asdict(result.headroom),
            "spare_pods": result.spare_pods,
            "min_pods": result.min_pods,
        },
        "pods": result.pods,
        "why": result.why,
        "steady": {**asdict(result.steady), "cpu": result.steady.cpu},
        "peak": {**asdict(result.peak), "cpu": result.peak.cpu},
        "values": result.values(),
        "notes": notes(result),
    }


# -- numbers --------------------------------------------------------------------------


def _n(value: float) -> str:
    """A count or rate as a reader wants it: 40,000; 111; 2.5; 0.333."""
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _g(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:g} µs"


def _core(cores: float) -> str:
    return f"{cores:.3f} core"


def _quoted(cpu: object) -> str:
    text = str(cpu)
    return f'"{text}"' if text.isdigit() else text


def _wrap_command(command: str) -> list[str]:
    """``command`` as shell lines of at most :data:`_WIDTH`, continued with backslashes;
    a flag stays on the line of its value."""
    words = shlex.split(command)
    units = [shlex.join(words[:2])]
    for word in words[2:]:
        if word.startswith("--") or units[-1].startswith("wsfleet"):
            units.append(shlex.quote(word))
        else:
            units[-1] += " " + shlex.quote(word)
    lines: list[str] = []
    current = "  " + units[0]
    for unit in units[1:]:
        if len(current) + 1 + len(unit) > _WIDTH - 4:
            lines.append(current + " \\")
            current = "   "
        current += " " + unit
    return [*lines, current]


def _paragraph(text: str) -> list[str]:
    return [line + "\n" for line in textwrap.wrap(text, _WIDTH, break_on_hyphens=False)]


_UNITS = re.compile(r" (?=(core|µs|s|B|MiB|Mi)\b)")


def _wrap(line: str, *, indent: int = 2) -> list[str]:
    """``line`` wrapped for a comment, continuation lines indented; a number and its unit
    stay together."""
    lead = len(line) - len(line.lstrip())
    glued = _UNITS.sub("\x00", line)
    parts = textwrap.wrap(
        glued,
        _WIDTH - indent,
        subsequent_indent=" " * (lead + 2),
        break_on_hyphens=False,
        break_long_words=False,
    )
    return [part.replace("\x00", " ") for part in parts]
