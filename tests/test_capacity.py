"""The capacity planner: its arithmetic on hand-checked cases, every refusal, the CLI,
and the Helm chart's defaults, which must be its output for the shipped profile."""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from wsfleet import capacity_cli
from wsfleet.capacity import (
    MIB,
    PROFILE_KEYS,
    CapacityError,
    DoesNotFit,
    Headroom,
    Load,
    Plan,
    Profile,
    _round_up,
    plan,
)
from wsfleet.cli import _parser, main

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "wsfleet"
VALUES = CHART / "values.yaml"
KUSTOMIZE = ROOT / "deploy" / "kustomize"

COSTS: dict[str, Any] = {
    "machine": "a test machine",
    "measured": "2026-01-01",
    "wsfleet": "0.1.0",
    "memory_base_bytes": 60_000_000,
    "memory_per_connection_bytes": 14_800,
    "cpu_per_delivery_seconds": 2e-6,
    "cpu_per_publication_seconds": 3e-5,
    "cpu_per_connect_seconds": 3e-4,
    "max_deliveries_per_second": 400_000,
}
"""A fixed profile, so that the hand-checked numbers do not move with the shipped one."""

PROFILE = Profile.from_mapping(COSTS)

# Costs that make one thing dominate: the others are a billionth of a second.
TINY = 1e-9
QUIET = Headroom(ping_interval=1e9)


def costs(**changes: float) -> Profile:
    values = {**COSTS, **{k: TINY for k in COSTS if k.startswith("cpu_")}}
    return Profile.from_mapping({**values, "max_deliveries_per_second": 1e12, **changes})


# -- the arithmetic, checked by hand --------------------------------------------------


def test_the_charts_sizing_target_by_hand() -> None:
    # 10,000 connections over 3 pods, one down: the other 2 carry 5,000 each.
    load = Load(connections=10_000, channels=100, publish_rate=400, fanout=100)
    result = plan(PROFILE, load, Headroom(min_pods=3))
    assert result.pods == 3
    assert "min pods 3" in result.why
    peak = result.peak
    assert (peak.up, peak.connections) == (2, 5_000)
    assert peak.deliveries == 20_000  # 400 x 100 / 2
    assert peak.pings == 200  # 5,000 / 25 s
    assert peak.publications == 600  # 400 / 2 accepted + 400 x min(1, 100 / 2) received
    # The down pod's ceil(10,000 / 3) = 3,334 clients, half of them to each survivor.
    assert peak.reconnect_clients == 1_667
    assert peak.reconnects == pytest.approx(1_667 / 15)
    assert peak.cpu_deliveries == pytest.approx(20_200 * 2e-6)
    assert peak.cpu_publications == pytest.approx(600 * 3e-5)
    assert peak.cpu_reconnects == pytest.approx(1_667 / 15 * 3e-4)
    assert peak.cpu == pytest.approx(0.0917, abs=1e-4)
    assert result.cpu_request_millicores == 100
    assert result.working_set_mib == pytest.approx((60e6 + 5_000 * 14_800) / MIB)  # 127.8
    assert result.memory_request_mib == 192  # 127.8 x 1.5 = 191.7, rounded up to 16 Mi
    assert result.memory_limit_mib == 320  # 192 + 32 x 4 MiB
    assert result.connections_per_pod == 3_333
    assert (result.min_replicas, result.max_replicas) == (3, 12)
    steady = result.steady
    assert (steady.up, steady.connections, steady.reconnects) == (3, 3_334, 0)
    assert result.values() == {
        "replicaCount": 3,
        "resources": {
            "requests": {"cpu": "100m", "memory": "192Mi"},
            "limits": {"cpu": "1", "memory": "320Mi"},
        },
        "autoscaling": {"minReplicas": 3, "maxReplicas": 12, "connectionsPerPod": 3333},
    }


def test_cpu_for_deliveries_sets_the_pods() -> None:
    # 10 µs per delivery, 1,000,000 deliveries/s, 0.7 core per pod with one down:
    # 1e6 / (P - 1) x 1e-5 <= 0.7 needs P - 1 >= 14.3: 16 pods (with 15: 0.714 core).
    profile = costs(cpu_per_delivery_seconds=1e-5)
    load = Load(connections=100_000, publish_rate=1_000, fanout=1_000)
    result = plan(profile, load, QUIET)
    assert result.pods == 16
    assert result.why == (
        "because with 15 a pod would need 0.71 core at its peak, over the CPU target of 0.7 core"
    )
    assert result.peak.cpu == pytest.approx(1e6 / 15 * 1e-5, rel=1e-3)
    assert result.cpu_request_millicores == 700  # 0.667 core, rounded up to 50m


def test_the_measured_delivery_ceiling_sets_the_pods() -> None:
    # Cheap CPU, but one node delivers at most 100,000/s: 0.7 x 100,000 = 70,000 per
    # pod, so 1,000,000 / (P - 1) <= 70,000: again 16 pods.
    profile = costs(max_deliveries_per_second=100_000)
    load = Load(connections=100_000, publish_rate=1_000, fanout=1_000)
    result = plan(profile, load, QUIET)
    assert result.pods == 16
    assert "deliver 71,429 messages/s" in result.why
    assert "= 70,000" in result.why


def test_a_reconnect_storm_sets_the_pods() -> None:
    # 1,000,000 idle connections; a down pod's clients reconnect onto the others within
    # 15 s at 300 µs each. With 5 pods: 200,000 / 4 / 15 s x 300 µs = 1.0 core. With 6:
    # ceil(166,667 / 5) = 33,334 / 15 s x 300 µs = 0.667 core.
    profile = costs(cpu_per_connect_seconds=3e-4)
    result = plan(profile, Load(connections=1_000_000), QUIET)
    assert result.pods == 6
    assert result.peak.reconnect_clients == 33_334
    assert result.peak.cpu == pytest.approx(33_334 / 15 * 3e-4, rel=1e-6)
    assert result.connections_per_pod == 166_666


def test_publications_reach_each_pod_with_subscribers() -> None:
    # 4 pods, one down: each survivor accepts 1/3 of the publications, and receives a
    # publication when one of its channel's subscribers is here: all of them with 100
    # subscribers, about a third with 1.
    wide = plan(
        PROFILE, Load(connections=1_000, publish_rate=300, fanout=100), Headroom(min_pods=4)
    )
    assert wide.peak.publications == pytest.approx(100 + 300)
    narrow = plan(
        PROFILE, Load(connections=1_000, publish_rate=300, fanout=1), Headroom(min_pods=4)
    )
    assert narrow.peak.publications == pytest.approx(100 + 100)
    assert narrow.peak.deliveries == pytest.approx(100)


def test_the_memory_broker_is_one_pod_sized_for_its_restart() -> None:
    load = Load(connections=5_000, publish_rate=100, fanout=50, broker="memory")
    result = plan(PROFILE, load)
    assert (result.pods, result.spare_pods, result.min_pods) == (1, 0, 1)
    peak = result.peak
    assert peak.publications == 100  # one node accepts and delivers: counted once
    assert peak.reconnect_clients == 5_000
    # 5,200 deliveries x 2 µs + 100 x 30 µs + 5,000 / 15 s x 300 µs = 0.1134 core
    assert peak.cpu == pytest.approx(0.0104 + 0.003 + 0.1)
    assert result.cpu_request_millicores == 150
    assert result.steady.reconnects == 0
    assert result.values() == {
        "replicaCount": 1,
        "resources": {
            "requests": {"cpu": "150m", "memory": "192Mi"},
            "limits": {"cpu": "1", "memory": "320Mi"},
        },
    }


def test_no_spare_pods_means_no_reconnects_and_one_pod_may_serve() -> None:
    result = plan(PROFILE, Load(connections=1_000), Headroom(spare_pods=0, min_pods=1))
    assert result.pods == 1
    assert result.peak.reconnects == 0
    assert result.peak.connections == result.steady.connections == 1_000


def test_spare_pods_raise_the_fewest_pods() -> None:
    result = plan(PROFILE, Load(connections=1_000), Headroom(spare_pods=2))
    assert result.pods == 3
    assert result.why == "spare pods 2 + 1, so that one pod still serves"
    assert result.peak.connections == 1_000


def test_defaults_of_channels_and_fanout() -> None:
    assert Load(connections=1_000).resolved_fanout == 1
    assert Load(connections=1_000).resolved_channels == 1_000
    assert Load(connections=1_000, channels=10).resolved_fanout == 100
    assert Load(connections=1_000, fanout=50).resolved_channels == 20
    load = Load(connections=1_000, channels=100, fanout=50)
    assert load.subscriptions_per_connection == 5
    assert load.deliveries == 0


def test_rounding() -> None:
    assert _round_up((0.1 + 0.2) * 1000, 50) == 300  # float dust is not a step
    assert _round_up(300.1, 50) == 350
    assert _round_up(191.7, 16) == 192
    assert _round_up(192, 16) == 192
    # The smallest CPU request is one step, even for a pod that does nothing.
    assert plan(PROFILE, Load(connections=1), QUIET).cpu_request_millicores == 50


def test_headroom_knobs_change_what_they_say() -> None:
    load = Load(connections=10_000)
    room = Headroom(memory_headroom=1.0, slow_consumers=0, max_growth=2.5)
    result = plan(PROFILE, load, room)
    assert result.memory_request_mib == _round_up(result.working_set_mib * 2, 16)
    assert result.memory_limit_mib == result.memory_request_mib
    assert result.max_replicas == math.ceil(result.pods * 2.5)
    slower = plan(PROFILE, load, Headroom(storm_window=60))
    assert slower.peak.reconnects == pytest.approx(result.peak.reconnects / 4)


def test_more_load_never_needs_fewer_pods() -> None:
    previous = 0
    for connections in (1_000, 10_000, 100_000, 1_000_000, 3_000_000):
        load = Load(connections=connections, publish_rate=connections / 100, fanout=100)
        pods = plan(PROFILE, load).pods
        assert pods >= previous
        previous = pods


# -- refusals -------------------------------------------------------------------------


def test_every_bad_profile_key_is_named() -> None:
    bad = {
        **COSTS,
        "memory_base_bytes": -1,
        "cpu_per_delivery_seconds": "2us",
        "cpu_per_connect_seconds": True,
        "max_deliveries_per_second": float("inf"),
        "machine": "",
        "memory_per_conection_bytes": 14_800,
    }
    del bad["memory_per_connection_bytes"]
    with pytest.raises(CapacityError) as caught:
        Profile.from_mapping(bad, subject="bench.json")
    message = str(caught.value)
    assert message.startswith("7 problems in bench.json:\n")
    for line in (
        "memory_base_bytes = -1: expected a number > 0: resident memory of an idle node",
        "cpu_per_delivery_seconds = '2us': expected a number > 0",
        "cpu_per_connect_seconds = True: expected a number > 0",
        "max_deliveries_per_second = inf: expected a number > 0",
        "machine = '': expected a non-empty string",
        "memory_per_connection_bytes = missing: expected a number > 0",
        "memory_per_conection_bytes = 14800: expected a key of the profile, which has no "
        "memory_per_conection_bytes: did you mean memory_per_connection_bytes?",
    ):
        assert f"  - {line}" in message, message


def test_a_profile_must_be_an_object() -> None:
    with pytest.raises(CapacityError, match=r"\(top level\) = 'list': expected a JSON object"):
        Profile.from_mapping([1, 2])


@pytest.mark.parametrize(
    ("load", "room", "expected"),
    [
        (
            Load(connections=0),
            Headroom(),
            "connections = 0: expected a whole number of connections >= 1",
        ),
        (
            Load(connections=10, publish_rate=-1),
            Headroom(),
            "publish_rate = -1: expected publications per second >= 0",
        ),
        (Load(connections=10, publish_rate=math.nan), Headroom(), "publish_rate = nan"),
        (Load(connections=10, fanout=-2), Headroom(), "fanout = -2: expected subscribers >= 0"),
        (
            Load(connections=10, fanout=11),
            Headroom(),
            "fanout = 11: expected at most connections (10): a publication reaches each connection once",
        ),
        (
            Load(connections=10, channels=0),
            Headroom(),
            "channels = 0: expected a whole number >= 1",
        ),
        (
            Load(connections=10, broker=cast(Any, "rabbitmq")),
            Headroom(),
            "broker = 'rabbitmq': expected memory or redis",
        ),
        (
            Load(connections=10),
            Headroom(cpu_target=0),
            "cpu_target = 0: expected a share of one core, 0 < x <= 1",
        ),
        (Load(connections=10), Headroom(cpu_target=1.5), "cpu_target = 1.5"),
        (
            Load(connections=10),
            Headroom(spare_pods=-1),
            "spare_pods = -1: expected a whole number of pods >= 0",
        ),
        (
            Load(connections=10),
            Headroom(min_pods=0),
            "min_pods = 0: expected a whole number of pods >= 1",
        ),
        (
            Load(connections=10, broker="memory"),
            Headroom(spare_pods=1),
            "spare_pods = 1: expected 0 with the memory broker: it is one pod",
        ),
        (
            Load(connections=10, broker="memory"),
            Headroom(min_pods=2),
            "min_pods = 2: expected 1 with the memory broker: it is one pod",
        ),
        (Load(connections=10), Headroom(storm_window=0), "storm_window = 0: expected seconds > 0"),
        (
            Load(connections=10),
            Headroom(ping_interval=-1),
            "ping_interval = -1: expected seconds > 0",
        ),
        (Load(connections=10), Headroom(memory_headroom=-0.5), "memory_headroom = -0.5"),
        (Load(connections=10), Headroom(slow_consumers=-1), "slow_consumers = -1"),
        (
            Load(connections=10),
            Headroom(outbox_bytes=10),
            "outbox_bytes = 10: expected bytes >= 1024",
        ),
        (
            Load(connections=10),
            Headroom(max_growth=0.5),
            "max_growth = 0.5: expected a factor >= 1",
        ),
    ],
)
def test_nonsensical_loads_are_refused(load: Load, room: Headroom, expected: str) -> None:
    with pytest.raises(CapacityError) as caught:
        plan(PROFILE, load, room)
    assert caught.value.subject == "the load"
    assert f"  - {expected}" in str(caught.value)


def test_every_problem_of_a_load_at_once() -> None:
    with pytest.raises(CapacityError) as caught:
        plan(PROFILE, Load(connections=10, publish_rate=-1, fanout=20), Headroom(cpu_target=2))
    assert [p.key for p in caught.value.problems] == ["publish_rate", "fanout", "cpu_target"]


def test_the_memory_broker_refuses_a_load_one_pod_cannot_carry() -> None:
    # 50,000 clients reconnecting to the restarted pod within 15 s: 1 core of handshakes.
    load = Load(connections=50_000, publish_rate=100, fanout=50, broker="memory")
    with pytest.raises(DoesNotFit) as caught:
        plan(PROFILE, load)
    assert caught.value.reason == (
        "the memory broker runs one pod, and this load does not fit one: a pod would need "
        "1.02 core at its peak, over the CPU target of 0.7 core"
    )
    alternative = caught.value.alternative
    assert alternative is not None
    assert alternative.load == replace(load, broker="redis")
    assert alternative.pods == plan(PROFILE, replace(load, broker="redis")).pods


def test_a_load_beyond_any_fleet_is_refused() -> None:
    load = Load(connections=10**9, publish_rate=10**9, fanout=10**6)
    with pytest.raises(CapacityError, match="a load that fits in 100,000 pods"):
        plan(PROFILE, load)


# -- the command ----------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["capacity", *args])
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_cli_reads_a_bench_results_file_or_a_bare_profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bench = write(tmp_path / "bench.json", {"results": [], "capacity_profile": COSTS})
    bare = write(tmp_path / "profile.json", COSTS)
    outputs = []
    for path in (bench, bare):
        code, out, err = run(
            capsys, "--profile", path, "--connections", "10000", "--format", "json"
        )
        assert (code, err) == (0, "")
        data = json.loads(out)
        assert data["profile"]["machine"] == "a test machine"
        assert data["profile"]["source"] == path
        outputs.append({k: v for k, v in data.items() if k != "profile"})
    assert outputs[0] == outputs[1]


def test_cli_json_is_the_plan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bare = write(tmp_path / "profile.json", COSTS)
    code, out, _ = run(
        capsys, "--profile", bare, "--connections", "10000", "--channels", "100",
        "--publish-rate", "400", "--fanout", "100", "--min-pods", "3", "--format", "json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["pods"] == 3
    assert data["load"]["deliveries"] == 40_000
    assert data["headroom"]["spare_pods"] == 1
    assert data["peak"]["connections"] == 5_000
    assert data["peak"]["cpu"] == pytest.approx(0.0917, abs=1e-4)
    assert data["values"]["resources"]["requests"] == {"cpu": "100m", "memory": "192Mi"}


def test_cli_text_shows_the_load_the_pods_and_the_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bare = write(tmp_path / "profile.json", COSTS)
    code, out, _ = run(
        capsys, "--profile", bare, "--connections", "10000", "--channels", "1000",
        "--fanout", "100",
    )  # fmt: skip
    assert code == 0
    assert "Load: 10,000 connections, 0 publications/s to 100 subscribers each" in out
    assert "Pods: 2, the fewest planned (min pods 2)." in out
    assert re.search(r"connections\s+5,000\s+10,000", out)
    # 1,000 channels x 100 subscribers: 10 subscriptions per connection.
    assert "Note: about 10.0 subscriptions per connection" in out
    assert out.endswith(capacity_cli.snippet(plan_of(bare, "10000", "1000", "100"), bare, bare))
    # Every line fits in 88 columns, but for the long path of the profile.
    assert all(len(line) <= 88 for line in out.splitlines() if bare not in line)


def plan_of(profile: str, connections: str, channels: str, fanout: str) -> Plan:
    return plan(
        Profile.from_mapping(json.loads(Path(profile).read_text())),
        Load(connections=int(connections), channels=int(channels), fanout=float(fanout)),
    )


def test_cli_yaml_is_the_charts_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "--connections",
        "20000",
        "--publish-rate",
        "50",
        "--fanout",
        "2000",
        "--format",
        "yaml",
    )
    assert code == 0
    snippet = yaml.safe_load(out)
    chart = yaml.safe_load(VALUES.read_text())
    assert set(snippet) == {"replicaCount", "resources", "autoscaling"}
    assert set(snippet["autoscaling"]) == {"minReplicas", "maxReplicas", "connectionsPerPod"}
    # Every key it sets is one of the chart's, with a value of the same type.
    for path, value in leaves(snippet):
        default = dig(chart, path)
        assert type(value) is type(default), (path, value, default)
    assert out.startswith("# Sized by the capacity planner")
    assert "\n#   wsfleet capacity --connections 20000 --publish-rate 50 --fanout 2000 \\\n" in out


def test_cli_yaml_with_the_memory_broker_has_no_autoscaling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "--connections", "2000", "--broker", "memory", "--format", "yaml")
    assert code == 0
    assert set(yaml.safe_load(out)) == {"replicaCount", "resources"}


def test_cli_refuses_a_bad_profile_with_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bench = write(
        tmp_path / "bench.json", {"capacity_profile": {**COSTS, "cpu_per_delivery_seconds": 0}}
    )
    code, out, err = run(capsys, "--profile", bench, "--connections", "10")
    assert (code, out) == (2, "")
    assert err == (
        f"wsfleet capacity: 1 problem in {bench} (its capacity_profile):\n"
        "  - cpu_per_delivery_seconds = 0: expected a number > 0: server CPU per delivered "
        "message, seconds\n"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "--profile = '{path}': expected a readable file (No such file or directory)"),
        ("{", "--profile = '{path}': expected a JSON file (Expecting property name"),
        (
            '{"results": []}',
            "capacity_profile = missing: expected a wsfleet bench results file, or a bare profile",
        ),
        ("[1]", "(top level) = 'list': expected a JSON object of the profile keys"),
    ],
)
def test_cli_refuses_what_is_not_a_profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run(capsys, "--profile", str(path), "--connections", "10")
    assert (code, out) == (2, "")
    assert expected.format(path=path) in err


def test_cli_names_bad_options_by_their_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "--connections",
        "100",
        "--fanout",
        "200",
        "--publish-rate",
        "-1",
        "--cpu-target",
        "2",
    )
    assert (code, out) == (2, "")
    assert err == (
        "wsfleet capacity: 3 problems in the options:\n"
        "  - --publish-rate = -1.0: expected publications per second >= 0\n"
        "  - --fanout = 200.0: expected at most connections (100): a publication reaches each connection once\n"
        "  - --cpu-target = 2.0: expected a share of one core, 0 < x <= 1\n"
    )


def test_cli_refuses_an_overloaded_memory_broker_with_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bare = write(tmp_path / "profile.json", COSTS)
    code, out, err = run(
        capsys,
        "--profile",
        bare,
        "--connections",
        "50000",
        "--publish-rate",
        "100",
        "--fanout",
        "50",
        "--broker",
        "memory",
    )
    assert (code, out) == (1, "")
    assert err == (
        "wsfleet capacity: the memory broker runs one pod, and this load does not fit one: a "
        "pod would need 1.02 core at its peak, over the CPU target of 0.7 core\n"
        "With --broker redis it needs 2 pods: wsfleet capacity --profile "
        f"{bare} --connections 50000 --publish-rate 100 --fanout 50 --broker redis\n"
    )


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["capacity", "--publish-rate", "10"])
    assert caught.value.code == 2
    assert "the following arguments are required: --connections" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["capacity", "--connections", "10", "--broker", "rabbitmq"])


def test_the_command_line_in_the_output_makes_the_same_plan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--connections", "12345", "--publish-rate", "77", "--fanout", "300", "--spare-pods", "2",
            "--cpu-target", "0.5", "--storm-window", "30", "--ping-interval", "10",
            "--memory-headroom", "0.25", "--slow-consumers", "8", "--outbox-bytes", "1048576",
            "--max-growth", "3", "--format", "yaml"]  # fmt: skip
    code, out, _ = run(capsys, *args)
    assert code == 0
    again = command_in(out)
    assert again[:2] == ["wsfleet", "capacity"]
    code, out_again, _ = run(capsys, *again[2:], "--format", "yaml")
    assert (code, out_again) == (0, out)


# -- the chart's defaults come from the planner ---------------------------------------


def command_in(text: str) -> list[str]:
    """The ``wsfleet capacity`` command in a snippet's (or values.yaml's) comments."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   wsfleet capacity "))
    command = ""
    for line in lines[start:]:
        command += line.lstrip("#").strip().removesuffix("\\") + " "
        if not line.endswith("\\"):
            break
    return shlex.split(command)


def chart_plan(capsys: pytest.CaptureFixture[str]) -> tuple[str, list[str]]:
    """The planner's YAML for the command written in values.yaml, with the shipped profile."""
    command = command_in(VALUES.read_text())
    assert "--profile" not in command, "values.yaml must come from the shipped profile"
    code, out, err = run(capsys, *command[2:], "--format", "yaml")
    assert (code, err) == (0, "")
    args = _parser().parse_args(command[1:])
    result, source = capacity_cli.plan_from_args(args)
    blocks = capacity_cli.snippet_blocks(result, None, source)
    assert "".join(blocks) == out
    return out, blocks


def test_the_charts_defaults_are_the_planners_output(capsys: pytest.CaptureFixture[str]) -> None:
    out, (header, _, resources, _) = chart_plan(capsys)
    planned = yaml.safe_load(out)
    text = VALUES.read_text()
    values = yaml.safe_load(text)
    actual = {
        "replicaCount": values["replicaCount"],
        "resources": values["resources"],
        "autoscaling": {k: values["autoscaling"][k] for k in planned["autoscaling"]},
    }
    regenerate = (
        "deploy/helm/wsfleet/values.yaml is not the capacity planner's output for the "
        "command in its Resources section, with the shipped profile "
        "(src/wsfleet/capacity_profile.json). Replace the comment from '# Sized by the "
        "capacity planner' down to the end of `resources:` with the lines below, and set "
        "replicaCount and autoscaling.minReplicas, maxReplicas and connectionsPerPod to "
        "what they say (and the same resources in deploy/kustomize/base/deployment.yaml, "
        "the defaults in deploy/helm/wsfleet/README.md):\n\n" + out
    )
    assert actual == planned, regenerate
    assert header + resources in text, regenerate


def test_the_kustomize_base_and_the_chart_readme_agree(capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = chart_plan(capsys)
    planned = yaml.safe_load(out)
    deployment = yaml.safe_load((KUSTOMIZE / "base" / "deployment.yaml").read_text())
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "wsfleet"
    ]
    assert container["resources"] == planned["resources"], (
        "deploy/kustomize/base/deployment.yaml: set its resources to the chart's:\n" + out
    )
    overlay = yaml.safe_load((KUSTOMIZE / "overlays" / "redis" / "kustomization.yaml").read_text())
    assert overlay["replicas"] == [{"name": "wsfleet", "count": planned["replicaCount"]}]
    readme = (CHART / "README.md").read_text()
    for path, value in leaves(planned):
        row = f"| `{'.'.join(path)}` | `{value}` |"
        assert row in readme, f"deploy/helm/wsfleet/README.md: expected the row {row}"


def test_the_shipped_profile_is_valid_and_complete() -> None:
    profile, source = capacity_cli._read_profile(None)
    assert source == "the shipped profile"
    data = json.loads((ROOT / "src" / "wsfleet" / "capacity_profile.json").read_text())
    assert set(data) == set(PROFILE_KEYS)
    assert profile.memory_base_bytes == data["memory_base_bytes"]


def leaves(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for key, value in data.items():
        if isinstance(value, dict):
            found += leaves(value, (*prefix, key))
        else:
            found.append(((*prefix, key), value))
    return found


def dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def test_every_flag_is_in_the_reference() -> None:
    reference = (ROOT / "docs" / "reference" / "cli.md").read_text()
    section = reference[reference.index("## wsfleet capacity") :]
    capacity = _parser()._subparsers._group_actions[0].choices["capacity"]  # type: ignore[union-attr]
    flags = [flag for action in capacity._actions for flag in action.option_strings]
    missing = [f for f in flags if f not in ("-h", "--help") and f"`{f}" not in section]
    assert not missing, f"docs/reference/cli.md, wsfleet capacity: flags not documented: {missing}"
