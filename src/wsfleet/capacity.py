"""The capacity planner: how many pods a load needs, and what each one requests.

From a :class:`Profile` (what a node costs, measured by the load generator on a named
machine) and a :class:`Load` (connections, publications, fan-out), :func:`plan` finds
the smallest fleet whose pods stay under a CPU target even with a neighbour down and
its clients reconnecting, and derives each pod's requests and limits and the
autoscaling threshold: the numbers of the Helm chart's ``replicaCount``, ``resources``
and ``autoscaling``.

Pure arithmetic: no files, no printing, no clock. Reading a profile file and showing a
plan belong to :mod:`wsfleet.capacity_cli`. Errors are the caller's: a bad profile or
a nonsensical load raise :class:`CapacityError` listing every problem; a load that the
memory broker's one pod cannot carry raises :class:`DoesNotFit` with the reason.

The model, for P pods of which S may be down at once (drained in a rollout or a
scale-in, or failed), so that ``up = P - S`` carry the whole load:

* fleet-wide deliveries ``D = R x F`` (publications per second times subscribers per
  publication); each pod delivers ``D / up`` plus a ping per connection every
  ``ping_interval``;
* each pod handles ``R / up`` publications it accepts (server API or client publish,
  handed to the broker) plus ``R x min(1, F / up)`` it receives from the broker: a node
  receives a publication when one of its clients subscribes to the channel, so at most
  every publication, and at most one pod per subscriber. With the memory broker the one
  node does both in one step: ``R``;
* the clients of ``max(S, 1)`` pods (``N / P`` each) reconnect onto the ``up`` pods
  within ``storm_window``, each reconnect a handshake and a connect command;
* CPU = deliveries x ``cpu_per_delivery_seconds`` + publications x
  ``cpu_per_publication_seconds`` + reconnects x ``cpu_per_connect_seconds``. A node is
  one single-threaded process: it never uses more than one core, so the CPU must stay
  under ``cpu_target`` of one core, and deliveries under ``cpu_target`` x
  ``max_deliveries_per_second``;
* memory = ``memory_base_bytes`` + connections x ``memory_per_connection_bytes``.

Requests cover a pod at that peak (S down, the reconnects under way): CPU rounded up to
50m, memory times ``1 + memory_headroom`` rounded up to 16 MiB. Limits: one core, and
the memory request plus ``slow_consumers`` full outboxes. ``connectionsPerPod`` is
``N / P`` rounded down: the autoscaler then keeps the per-pod load this plan was made
for, and ``minReplicas`` is P, because a smaller fleet at that threshold loses a larger
share of its clients with each pod.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from wsfleet.settings import ClientSettings, DrainSettings

__all__ = [
    "CPU_STEP_MILLICORES",
    "MEMORY_STEP_MIB",
    "MIB",
    "PROFILE_KEYS",
    "CapacityError",
    "DoesNotFit",
    "Headroom",
    "Load",
    "Plan",
    "PodLoad",
    "Problem",
    "Profile",
    "plan",
]

MIB = 1024 * 1024
CPU_STEP_MILLICORES = 50
"""CPU requests are rounded up to a multiple of this."""
MEMORY_STEP_MIB = 16
"""Memory requests and limits are rounded up to a multiple of this many MiB."""
MAX_PODS = 100_000
"""A fleet the planner refuses to plan: the load is almost certainly mistyped."""

Broker = Literal["memory", "redis"]


# -- problems -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a profile or a load; the caller's fault."""

    key: str
    """The profile key (``cpu_per_delivery_seconds``) or load option (``fanout``)."""
    value: object
    """The offending value as given; ``None`` when the key is missing."""
    allowed: str
    """What would be accepted."""

    def __str__(self) -> str:
        value = "missing" if self.value is None else repr(self.value)
        return f"{self.key} = {value}: expected {self.allowed}"


class CapacityError(ValueError):
    """A profile or a load the planner cannot use; :attr:`problems` lists every reason."""

    def __init__(self, subject: str, problems: list[Problem]) -> None:
        self.subject = subject
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in {subject}:\n{lines}")


class DoesNotFit(Exception):
    """The load cannot be carried as asked (the memory broker's one pod is too small)."""

    def __init__(self, reason: str, *, alternative: Plan | None = None) -> None:
        self.reason = reason
        self.alternative = alternative
        """The plan with the Redis broker, when there is one."""
        super().__init__(reason)


# -- the profile ----------------------------------------------------------------------

PROFILE_KEYS: dict[str, str] = {
    "machine": "where it was measured: cores, CPU model, kernel, Python",
    "measured": "when it was measured (a date)",
    "wsfleet": "the wsfleet version measured",
    "memory_base_bytes": "resident memory of an idle node with no connections, bytes",
    "memory_per_connection_bytes": "resident memory per idle connection with one "
    "subscription, bytes",
    "cpu_per_delivery_seconds": "server CPU per delivered message, seconds",
    "cpu_per_publication_seconds": "server CPU per publication a node receives, apart "
    "from its fan-out, seconds",
    "cpu_per_connect_seconds": "server CPU per WebSocket handshake and connect command, seconds",
    "max_deliveries_per_second": "deliveries per second one node reaches on one core",
}
"""Every key of a capacity profile and its meaning; all are required."""

_TEXT_KEYS = ("machine", "measured", "wsfleet")


@dataclass(frozen=True, kw_only=True)
class Profile:
    """What one node costs, measured by ``wsfleet bench`` on one machine.

    See :data:`PROFILE_KEYS` for the meaning of each field.
    """

    machine: str
    measured: str
    wsfleet: str
    memory_base_bytes: float
    memory_per_connection_bytes: float
    cpu_per_delivery_seconds: float
    cpu_per_publication_seconds: float
    cpu_per_connect_seconds: float
    max_deliveries_per_second: float

    @classmethod
    def from_mapping(cls, data: object, *, subject: str = "the capacity profile") -> Profile:
        """A profile from parsed JSON; :class:`CapacityError` naming every bad key.

        ``subject`` names the profile in the error, e.g. ``"the capacity profile in
        bench.json"``. Unknown keys are refused (a misspelt key would otherwise leave
        the real one missing, or hide a profile of another version).
        """
        if not isinstance(data, Mapping):
            raise CapacityError(
                subject,
                [Problem("(top level)", type(data).__name__, "a JSON object of the profile keys")],
            )
        problems = []
        for key in data:
            if key not in PROFILE_KEYS:
                problems.append(Problem(str(key), data[key], _unknown(str(key))))
        values: dict[str, object] = {}
        for key in PROFILE_KEYS:
            value = data.get(key)
            if key in _TEXT_KEYS:
                if not isinstance(value, str) or not value.strip():
                    problems.append(Problem(key, value, f"a non-empty string: {PROFILE_KEYS[key]}"))
                values[key] = value
            else:
                number = _positive(value)
                if number is None:
                    problems.append(Problem(key, value, f"a number > 0: {PROFILE_KEYS[key]}"))
                values[key] = number
        if problems:
            raise CapacityError(subject, problems)
        return cls(**values)  # type: ignore[arg-type]


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key, PROFILE_KEYS, n=1)
    if close:
        return f"a key of the profile, which has no {key}: did you mean {close[0]}?"
    return f"a key of the profile, which has no {key}: its keys are " + ", ".join(PROFILE_KEYS)


def _positive(value: object) -> float | None:
    """``value`` as a float if it is a finite number > 0 (JSON's true is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


# -- the load and the headroom --------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Load:
    """The load to plan for, across the whole fleet."""

    connections: int
    """Open client connections at the busiest time. Required, at least 1."""
    channels: int | None = None
    """Channels with subscribers. ``None``: ``connections / fanout``, every connection
    subscribed to one channel (which is what the profile measured); ``connections``
    when ``fanout`` is ``None`` too. Only the subscriptions per connection it implies are
    checked against the profile."""
    publish_rate: float = 0.0
    """Publications per second to the whole fleet (server API and client publishes).
    Default 0: only connections, pings and reconnects cost CPU."""
    fanout: float | None = None
    """Average subscribers of a publication across the fleet, at most ``connections``.
    ``None``: ``connections / channels`` (1 when both are ``None``)."""
    broker: Broker = "redis"
    """``redis`` (any shared broker: a fleet of pods) or ``memory`` (one pod)."""

    @property
    def resolved_fanout(self) -> float:
        if self.fanout is not None:
            return self.fanout
        return self.connections / (self.channels or self.connections)

    @property
    def resolved_channels(self) -> int:
        if self.channels is not None:
            return self.channels
        if self.fanout:
            return max(1, round(self.connections / self.fanout))
        return self.connections

    @property
    def deliveries(self) -> float:
        """Deliveries per second across the fleet: ``publish_rate x fanout``."""
        return self.publish_rate * self.resolved_fanout

    @property
    def subscriptions_per_connection(self) -> float:
        """``channels x fanout / connections``, if publications spread evenly over channels."""
        return self.resolved_channels * self.resolved_fanout / self.connections


@dataclass(frozen=True, kw_only=True)
class Headroom:
    """How much room a plan leaves; every default is documented in docs/reference/cli.md."""

    cpu_target: float = 0.7
    """Share of the one core a node can use that a pod may use at its peak (a neighbour
    down, its clients reconnecting). Default 0.7: the event loop keeps latency low."""
    spare_pods: int | None = None
    """Pods that may be down at once (a rollout drains one; the chart's
    PodDisruptionBudget allows one), whose clients the others carry. ``None``: 1 with
    the Redis broker, 0 with the memory broker (one pod: nothing to spare)."""
    min_pods: int | None = None
    """Fewest pods to plan. ``None``: 2 with the Redis broker (so that a pod can drain
    onto another), 1 with the memory broker, which is always exactly one pod."""
    storm_window: float = DrainSettings().window
    """Seconds within which the clients of a drained or failed pod reconnect to the
    others. Default: ``drain.window``'s default, 15 s, the pace of a drain."""
    ping_interval: float = ClientSettings().ping_interval
    """Seconds between the pings each connection gets. Default: ``client.ping_interval``'s
    default, 25 s."""
    memory_headroom: float = 0.5
    """Memory requested beyond the working set, as a share of it: send queues in
    bursts, history in the memory broker, allocator fragmentation. Default 0.5."""
    slow_consumers: int = 32
    """Clients whose outbox may be full at once; the memory limit leaves room for them
    above the request. Default 32."""
    outbox_bytes: int = ClientSettings().outbox_max_bytes
    """Bytes one slow consumer may queue before it is cut off. Default:
    ``client.outbox_max_bytes``'s default, 4 MiB."""
    max_growth: float = 4.0
    """``autoscaling.maxReplicas`` is the planned pods times this. Default 4."""


def _load_problems(load: Load, room: Headroom) -> list[Problem]:
    problems = []

    def need(key: str, value: object, ok: bool, allowed: str) -> None:
        if value is not None and not ok:
            problems.append(Problem(key, value, allowed))

    def finite(value: float | None) -> bool:
        return value is None or math.isfinite(value)

    n = load.connections
    need("connections", n, n >= 1, "a whole number of connections >= 1")
    need("channels", load.channels, (load.channels or 0) >= 1, "a whole number >= 1")
    rate = load.publish_rate
    need("publish_rate", rate, finite(rate) and rate >= 0, "publications per second >= 0")
    fanout = load.fanout
    need("fanout", fanout, finite(fanout) and (fanout or 0) >= 0, "subscribers >= 0")
    if fanout is not None and math.isfinite(fanout) and fanout > n >= 1:
        problems.append(
            Problem(
                "fanout",
                fanout,
                f"at most connections ({n}): a publication reaches each connection once",
            )
        )
    need("broker", load.broker, load.broker in ("memory", "redis"), "memory or redis")
    target = room.cpu_target
    need(
        "cpu_target", target, finite(target) and 0 < target <= 1, "a share of one core, 0 < x <= 1"
    )
    spare, least = room.spare_pods, room.min_pods
    need("spare_pods", spare, (spare or 0) >= 0, "a whole number of pods >= 0")
    need("min_pods", least, least is None or least >= 1, "a whole number of pods >= 1")
    if load.broker == "memory":
        need("spare_pods", spare, not spare, "0 with the memory broker: it is one pod")
        need("min_pods", least, least in (None, 1), "1 with the memory broker: it is one pod")
    window, ping = room.storm_window, room.ping_interval
    need("storm_window", window, finite(window) and window > 0, "seconds > 0")
    need("ping_interval", ping, finite(ping) and ping > 0, "seconds > 0")
    mem = room.memory_headroom
    need("memory_headroom", mem, finite(mem) and mem >= 0, "a share of the working set >= 0")
    need("slow_consumers", room.slow_consumers, room.slow_consumers >= 0, "a whole number >= 0")
    need("outbox_bytes", room.outbox_bytes, room.outbox_bytes >= 1024, "bytes >= 1024")
    growth = room.max_growth
    need("max_growth", growth, finite(growth) and growth >= 1, "a factor >= 1")
    return problems


# -- the plan -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PodLoad:
    """What one pod carries, and what it costs, with ``up`` of the fleet's pods serving."""

    up: int
    """Pods serving; the others are down (drained or failed)."""
    connections: int
    """Connections on this pod: the fleet's divided by ``up``, rounded up."""
    deliveries: float
    """Messages per second this pod writes: its share of the fan-out."""
    pings: float
    """Pings per second this pod sends: ``connections / ping_interval``."""
    publications: float
    """Publications per second this pod accepts and receives."""
    reconnect_clients: int
    """Clients of the down pods (or of a restarted pod) that reconnect here."""
    reconnects: float
    """Reconnects per second onto this pod: ``reconnect_clients / storm_window``."""
    cpu_deliveries: float
    cpu_publications: float
    cpu_reconnects: float
    memory_bytes: float
    """Resident memory: the profile's base plus each connection's cost."""

    @property
    def cpu(self) -> float:
        """Cores this pod uses."""
        return self.cpu_deliveries + self.cpu_publications + self.cpu_reconnects


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A fleet for a load: pods, each pod's resources, the autoscaling threshold."""

    profile: Profile
    load: Load
    headroom: Headroom
    pods: int
    spare_pods: int
    """Resolved :attr:`Headroom.spare_pods`."""
    min_pods: int
    """Resolved :attr:`Headroom.min_pods`."""
    why: str
    """Why this many pods, one sentence."""
    steady: PodLoad
    """One pod with every pod serving and no reconnects."""
    peak: PodLoad
    """One pod with ``spare_pods`` down and their clients reconnecting: what it is sized for."""
    cpu_request_millicores: int
    cpu_limit_millicores: int
    working_set_mib: float
    memory_request_mib: int
    memory_limit_mib: int
    connections_per_pod: int
    """``autoscaling.connectionsPerPod``: the fleet's connections over the pods, rounded down."""
    min_replicas: int
    max_replicas: int

    def values(self) -> dict[str, object]:
        """The Helm chart's values this plan sets (deploy/helm/wsfleet/values.yaml)."""
        values: dict[str, object] = {
            "replicaCount": self.pods,
            "resources": {
                "requests": {
                    "cpu": f"{self.cpu_request_millicores}m",
                    "memory": f"{self.memory_request_mib}Mi",
                },
                "limits": {
                    "cpu": _cores(self.cpu_limit_millicores),
                    "memory": f"{self.memory_limit_mib}Mi",
                },
            },
        }
        if self.load.broker != "memory":
            values["autoscaling"] = {
                "minReplicas": self.min_replicas,
                "maxReplicas": self.max_replicas,
                "connectionsPerPod": self.connections_per_pod,
            }
        return values


def _cores(millicores: int) -> str:
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def plan(profile: Profile, load: Load, headroom: Headroom | None = None) -> Plan:
    """The smallest fleet that carries ``load`` within ``headroom``.

    Raises :class:`CapacityError` for a nonsensical load or headroom (every problem at
    once), and :class:`DoesNotFit` when the memory broker's one pod cannot carry it.
    """
    room = headroom or Headroom()
    problems = _load_problems(load, room)
    if problems:
        raise CapacityError("the load", problems)
    memory = load.broker == "memory"
    spare = 0 if memory else (1 if room.spare_pods is None else room.spare_pods)
    least = 1 if memory else (2 if room.min_pods is None else room.min_pods)
    first = max(least, spare + 1)

    def over(pods: int) -> str | None:
        return _over_target(profile, load, room, _pod(profile, load, room, pods, down=spare))

    if memory:
        excess = over(1)
        if excess:
            alternative = plan(profile, replace(load, broker="redis"), room)
            raise DoesNotFit(
                f"the memory broker runs one pod, and this load does not fit one: {excess}",
                alternative=alternative,
            )
        pods, why = 1, "the memory broker is one pod"
    elif not over(first):
        if first == least:
            why = f"the fewest planned (min pods {least})"
        else:
            why = f"spare pods {spare} + 1, so that one pod still serves"
        pods = first
    else:
        pods = _smallest_fitting(first, lambda p: over(p) is None)
        why = f"because with {pods - 1} {over(pods - 1)}"
    return _plan(profile, load, room, pods, spare, least, why)


def _smallest_fitting(start: int, fits: Callable[[int], bool]) -> int:
    """The smallest pods > start (which does not fit) for which ``fits``; every cost
    falls as pods are added, so: double, then bisect."""
    low, high = start, start * 2
    while not fits(high):
        low, high = high, high * 2
        if high > MAX_PODS:
            raise CapacityError(
                "the load",
                [Problem("connections", None, f"a load that fits in {MAX_PODS:,} pods")],
            )
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return high


def _pod(
    profile: Profile, load: Load, room: Headroom, pods: int, *, down: int, storm: bool = True
) -> PodLoad:
    """One pod of ``pods`` while ``down`` of them are down and, with ``storm``, their
    clients reconnect (with the memory broker: all the clients of its restarted pod)."""
    up = pods - down
    n = math.ceil(load.connections / up)
    fanout = load.resolved_fanout
    deliveries = load.deliveries / up
    pings = n / room.ping_interval
    if load.broker == "memory":
        publications = load.publish_rate
    else:
        publications = load.publish_rate / up + load.publish_rate * min(1.0, fanout / up)
    # A drained or failed pod's clients, or all of a restarted single pod's.
    if storm and (load.broker == "memory" or down):
        moving = max(down, 1) * math.ceil(load.connections / pods)
        reconnect_clients = math.ceil(moving / up)
    else:
        reconnect_clients = 0
    reconnects = reconnect_clients / room.storm_window
    return PodLoad(
        up=up,
        connections=n,
        deliveries=deliveries,
        pings=pings,
        publications=publications,
        reconnect_clients=reconnect_clients,
        reconnects=reconnects,
        cpu_deliveries=(deliveries + pings) * profile.cpu_per_delivery_seconds,
        cpu_publications=publications * profile.cpu_per_publication_seconds,
        cpu_reconnects=reconnects * profile.cpu_per_connect_seconds,
        memory_bytes=profile.memory_base_bytes + n * profile.memory_per_connection_bytes,
    )


def _over_target(profile: Profile, load: Load, room: Headroom, pod: PodLoad) -> str | None:
    """Why ``pod`` is over the headroom's targets, or ``None``."""
    if pod.cpu > room.cpu_target:
        return (
            f"a pod would need {pod.cpu:.2f} core at its peak, over the "
            f"CPU target of {room.cpu_target:g} core"
        )
    ceiling = room.cpu_target * profile.max_deliveries_per_second
    sent = pod.deliveries + pod.pings
    if sent > ceiling:
        return (
            f"a pod would deliver {sent:,.0f} messages/s at its peak, over the CPU "
            f"target x max_deliveries_per_second = {ceiling:,.0f}"
        )
    return None


def _plan(
    profile: Profile, load: Load, room: Headroom, pods: int, spare: int, least: int, why: str
) -> Plan:
    steady = _pod(profile, load, room, pods, down=0, storm=False)
    peak = _pod(profile, load, room, pods, down=spare)
    working_set_mib = peak.memory_bytes / MIB
    request_mib = _round_up(working_set_mib * (1 + room.memory_headroom), MEMORY_STEP_MIB)
    outboxes_mib = room.slow_consumers * room.outbox_bytes / MIB
    return Plan(
        profile=profile,
        load=load,
        headroom=room,
        pods=pods,
        spare_pods=spare,
        min_pods=least,
        why=why,
        steady=steady,
        peak=peak,
        cpu_request_millicores=max(
            CPU_STEP_MILLICORES, _round_up(peak.cpu * 1000, CPU_STEP_MILLICORES)
        ),
        cpu_limit_millicores=1000,
        working_set_mib=working_set_mib,
        memory_request_mib=request_mib,
        memory_limit_mib=_round_up(request_mib + outboxes_mib, MEMORY_STEP_MIB),
        connections_per_pod=max(1, load.connections // pods),
        min_replicas=pods,
        max_replicas=math.ceil(pods * room.max_growth),
    )


def _round_up(value: float, step: int) -> int:
    """``value`` rounded up to a multiple of ``step``, ignoring float dust (0.1 + 0.2)."""
    return math.ceil(round(value / step, 6)) * step
