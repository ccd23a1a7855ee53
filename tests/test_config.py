"""Loading, layering and validating the configuration (wsfleet.config)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from wsfleet.config import (
    DEV_WARNING,
    ConfigError,
    ConfigProblem,
    check_config,
    format_duration,
    load_settings,
    parse_duration,
    schema_sections,
    settings_to_dict,
)
from wsfleet.settings import Settings


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def problems_of(**kwargs: object) -> dict[str, ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)  # type: ignore[arg-type]
    return {p.key: p for p in info.value.problems}


# -- defaults and layers ----------------------------------------------------------------


def test_defaults_are_valid() -> None:
    assert load_settings(env={}) == Settings()
    assert check_config(None, {}) == []


def test_yaml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "wsfleet.yaml",
        """\
        server:
          port: 8100
          log_format: text
        client:
          ping_interval: 20s
          pong_timeout: 1500ms
        channel:
          namespaces:
            - name: chat
              history_size: 50
              history_ttl: 1h30m
              presence: true
        """,
    )
    s = load_settings(path=path, env={})
    assert s.server.port == 8100
    assert s.server.log_format == "text"
    assert s.client.ping_interval == 20.0
    assert s.client.pong_timeout == 1.5
    [chat] = s.channel.namespaces
    assert (chat.name, chat.history_size, chat.history_ttl, chat.presence) == (
        "chat",
        50,
        5400.0,
        True,
    )
    assert s.server.internal_port == 9000  # untouched options keep their defaults


def test_toml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "wsfleet.toml",
        """\
        dev = false
        [broker]
        url = "redis://redis:6379/0"
        [channel.without_namespace]
        history_size = 10
        history_ttl = 60
        [[channel.namespaces]]
        name = "news"
        allow_subscribe_for_client = true
        """,
    )
    s = load_settings(path=path, env={})
    assert s.broker.url == "redis://redis:6379/0"
    assert s.channel.without_namespace.history_ttl == 60.0
    assert s.channel.namespaces[0].name == "news"
    assert s.channel.namespaces[0].allow_subscribe_for_client is True


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(path=write(tmp_path, "empty.yaml", ""), env={}) == Settings()


def test_env_overrides_file_and_is_coerced(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "server:\n  port: 8100\nclient:\n  ping_interval: 20\n")
    env = {
        "WSFLEET_SERVER_PORT": "8200",
        "WSFLEET_CLIENT_PING_INTERVAL": "30s",
        "WSFLEET_DEV": "yes",
        "WSFLEET_BROKER_URL": "redis://r:6379",
        "WSFLEET_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE": "7",
        "WSFLEET_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL": "2m",
        "WSFLEET_CHANNEL_NAMESPACES": '[{"name": "a"}, {"name": "b", "presence": true}]',
        "OTHER_VARIABLE": "ignored",
    }
    s = load_settings(path=path, env=env)
    assert s.server.port == 8200
    assert s.client.ping_interval == 30.0
    assert s.dev is True
    assert s.broker.url == "redis://r:6379"
    assert s.channel.without_namespace.history_size == 7
    assert s.channel.without_namespace.history_ttl == 120.0
    assert [n.name for n in s.channel.namespaces] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False), ("no", False)],
)
def test_env_booleans(text: str, expected: bool) -> None:
    assert load_settings(env={"WSFLEET_API_INSECURE": text}).api.insecure is expected


def test_config_path_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "server:\n  port: 8300\n")
    assert load_settings(env={"WSFLEET_CONFIG": path}).server.port == 8300


def test_overrides_beat_env() -> None:
    env = {"WSFLEET_SERVER_PORT": "8200", "WSFLEET_BROKER_URL": "redis://env"}
    s = load_settings(
        env=env,
        overrides={"server.port": 8001, "broker.url": "redis://flag", "server.host": None},
    )
    assert s.server.port == 8001
    assert s.broker.url == "redis://flag"
    assert s.server.host == "0.0.0.0"  # None: the flag was not given


def test_override_problem_names_the_flag() -> None:
    found = problems_of(
        env={}, overrides={"server.port": 70000}, flag_names={"server.port": "--port"}
    )
    assert found["server.port"].source == "flag --port"
    assert found["server.port"].value == 70000


def test_unknown_override_key() -> None:
    found = problems_of(env={}, overrides={"server.prot": 1})
    assert "did you mean 'server.port'?" in found["server.prot"].allowed


def test_env_names_are_unique_and_follow_the_paths() -> None:
    names = [f.env for s in schema_sections() for f in s.fields if f.env]
    assert len(names) == len(set(names))
    assert "WSFLEET_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE" in names
    assert "WSFLEET_CLIENT_PING_INTERVAL" in names


# -- problems ---------------------------------------------------------------------------


def test_bad_file_reports_every_problem_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """\
        server:
          port: 99999
          log_format: xml
        client:
          pingg_interval: 3
          connect_timeout: soon
          max_subscriptions: "many"
        api:
          insecure: "perhaps"
        channel:
          namespaces:
            - name: chat
            - name: feed
              history_size: 10
              history_ttl: abc
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path=path, env={})
    found = {p.key: p for p in info.value.problems}
    expected = {
        "server.port": (99999, "an integer >= 0 and <= 65535"),
        "server.log_format": ("xml", "one of 'json', 'text'"),
        "client.pingg_interval": (3, "a known key; did you mean 'client.ping_interval'?"),
        "client.connect_timeout": ("soon", "a number of seconds >= 1, or a duration like '25s'"),
        "client.max_subscriptions": ("many", "an integer >= 0"),
        "api.insecure": ("perhaps", "true or false"),
        "channel.namespaces[1].history_ttl": (
            "abc",
            "a number of seconds >= 0, or a duration like '25s'",
        ),
    }
    assert {k: (p.value, p.allowed) for k, p in found.items()} == expected
    assert all(p.source == path for p in found.values())
    # The message carries all of them, one readable line each.
    message = str(info.value)
    assert message.startswith("7 problems in the configuration:")
    assert (
        f"channel.namespaces[1].history_ttl = 'abc' (from {path}): expected a number of "
        "seconds >= 0, or a duration like '25s'"
    ) in message.splitlines()[-1]


def test_problem_renders_one_line() -> None:
    problem = ConfigProblem("server.port", 0.5, "an integer", "env WSFLEET_SERVER_PORT")
    assert str(problem) == "server.port = 0.5 (from env WSFLEET_SERVER_PORT): expected an integer"


def test_unknown_section_key_lists_the_keys_when_nothing_is_close() -> None:
    problems = check_config(None, {"WSFLEET_CHANNEL_NAMESPACES": '[{"name": "a", "zzz": 1}]'})
    [problem] = problems
    assert problem.key == "channel.namespaces[0].zzz"
    assert problem.source == "env WSFLEET_CHANNEL_NAMESPACES"
    assert problem.allowed.startswith("a known key of channel.namespaces[0]: ")
    assert "history_size" in problem.allowed


def test_unknown_env_variable_with_suggestion() -> None:
    problems = check_config(None, {"WSFLEET_CLIENT_PING_INTERVALL": "5"})
    assert problems == [
        ConfigProblem(
            key="WSFLEET_CLIENT_PING_INTERVALL",
            value="5",
            allowed="a known WSFLEET_* variable; did you mean WSFLEET_CLIENT_PING_INTERVAL?",
            source="env WSFLEET_CLIENT_PING_INTERVALL",
        )
    ]


def test_bad_env_values() -> None:
    found = {
        p.key: p
        for p in check_config(
            None,
            {
                "WSFLEET_DEV": "maybe",
                "WSFLEET_SERVER_PORT": "80.5",
                "WSFLEET_CHANNEL_NAMESPACES": "[{name: x}]",
            },
        )
    }
    assert found["dev"].allowed.startswith("true or false")
    assert found["dev"].source == "env WSFLEET_DEV"
    assert found["server.port"].value == "80.5"
    assert found["channel.namespaces"].allowed.startswith("a JSON a list of mappings")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yaml")
    [problem] = check_config(path, {})
    assert problem.source == path
    assert "No such file" in problem.allowed


def test_unparsable_files_carry_the_parser_message(tmp_path: Path) -> None:
    yaml_path = write(tmp_path, "broken.yaml", "a: [1,\nb: 2\n")
    [problem] = check_config(yaml_path, {})
    assert problem.source == yaml_path
    assert "valid YAML" in problem.allowed and "line" in problem.allowed
    assert "\n" not in str(problem)

    toml_path = write(tmp_path, "broken.toml", "[server\nport = 1\n")
    [problem] = check_config(toml_path, {})
    assert "valid TOML" in problem.allowed and "line 1" in problem.allowed


def test_file_extension_and_top_level_shape(tmp_path: Path) -> None:
    [problem] = check_config(write(tmp_path, "c.json", "{}"), {})
    assert problem.allowed == "a .yaml, .yml or .toml file"
    [problem] = check_config(write(tmp_path, "list.yaml", "- 1\n- 2\n"), {})
    assert problem.allowed == "a YAML mapping of options at the top"


# -- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("25s", 25.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m0.5s", 60.5),
        ("30d", 2592000.0),
        ("2.5", 2.5),
        (" 10 ", 10.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5 m", "5x", "m5", "1h 30m", "-5s", "nan", "inf"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.0, 0.3, 25.0, 60.0, 90.0, 3600.0, 2592000.0, 1.25])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_duration_fields_accept_numbers_and_strings_and_check_bounds() -> None:
    s = load_settings(env={}, overrides={"client.ping_interval": 12, "client.pong_timeout": "2s"})
    assert (s.client.ping_interval, s.client.pong_timeout) == (12.0, 2.0)
    found = problems_of(env={}, overrides={"client.ping_interval": "500ms"})
    assert found["client.ping_interval"].allowed == (
        "a number of seconds >= 1, or a duration like '25s'"
    )
    found = problems_of(env={}, overrides={"client.ping_interval": True})
    assert "client.ping_interval" in found


# -- literals ---------------------------------------------------------------------------


def test_literal_values() -> None:
    found = problems_of(env={"WSFLEET_SERVER_LOG_LEVEL": "verbose"})
    assert found["server.log_level"].allowed == "one of 'debug', 'info', 'warning', 'error'"
    assert found["server.log_level"].source == "env WSFLEET_SERVER_LOG_LEVEL"
    found = problems_of(
        env={
            "WSFLEET_CHANNEL_WITHOUT_NAMESPACE_ALLOWED_DELTA_TYPES": '["xdelta"]',
            "WSFLEET_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE": "10",
            "WSFLEET_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL": "60",
        }
    )
    problem = found["channel.without_namespace.allowed_delta_types[0]"]
    assert (problem.value, problem.allowed) == ("xdelta", "one of 'fossil'")


# -- rules across fields ----------------------------------------------------------------


def namespaces_env(*namespaces: str) -> dict[str, str]:
    return {"WSFLEET_CHANNEL_NAMESPACES": "[" + ",".join(namespaces) + "]"}


def test_history_size_and_ttl_go_together() -> None:
    found = problems_of(
        env=namespaces_env('{"name": "a", "history_size": 10}', '{"name": "b", "history_ttl": 60}')
    )
    assert found["channel.namespaces[0].history_ttl"].allowed == (
        "a duration > 0 when history_size is set (history_size = 10)"
    )
    assert found["channel.namespaces[1].history_size"].allowed == (
        "an integer > 0 when history_ttl is set (history_ttl = 60)"
    )
    assert found["channel.namespaces[0].history_ttl"].source == "env WSFLEET_CHANNEL_NAMESPACES"


def test_tags_filter_and_deltas_exclude_each_other() -> None:
    found = problems_of(
        env=namespaces_env(
            '{"name": "a", "allow_tags_filter": true, "allowed_delta_types": ["fossil"],'
            ' "history_size": 5, "history_ttl": "1m"}'
        )
    )
    assert set(found) == {"channel.namespaces[0].allow_tags_filter"}
    problem = found["channel.namespaces[0].allow_tags_filter"]
    assert problem.value is True and "allowed_delta_types" in problem.allowed
    # Each alone is fine, and a tags filter needs no history.
    load_settings(env=namespaces_env('{"name": "a", "allow_tags_filter": true}'))


def test_delta_and_recovery_need_history() -> None:
    found = problems_of(
        env=namespaces_env(
            '{"name": "a", "allowed_delta_types": ["fossil"], "delta_publish": true,'
            ' "force_recovery": true}'
        )
    )
    assert set(found) == {
        "channel.namespaces[0].allowed_delta_types",
        "channel.namespaces[0].delta_publish",
        "channel.namespaces[0].force_recovery",
    }
    assert all("history" in p.allowed for p in found.values())
    # With history, the same options are fine; join/leave never needs presence.
    load_settings(
        env=namespaces_env(
            '{"name": "a", "allowed_delta_types": ["fossil"], "delta_publish": true,'
            ' "force_recovery": true, "history_size": 5, "history_ttl": "1m",'
            ' "join_leave": true, "force_push_join_leave": true}'
        )
    )


def test_namespace_names() -> None:
    found = problems_of(
        env=namespaces_env(
            '{"name": "chat"}',
            '{"name": "chat"}',
            '{"name": "bad name"}',
            '{"name": ""}',
            '{"presence": true}',
        )
    )
    assert found["channel.namespaces[1].name"].allowed == (
        "a unique name (channel.namespaces[0] has it already)"
    )
    assert "^[-a-zA-Z0-9_.]+$" in found["channel.namespaces[2].name"].allowed
    assert "^[-a-zA-Z0-9_.]+$" in found["channel.namespaces[3].name"].allowed
    assert found["channel.namespaces[4].name"].allowed == "a value: name is required"
    assert "channel.namespaces[0].name" not in found


def test_pong_timeout_below_ping_interval() -> None:
    found = problems_of(env={"WSFLEET_CLIENT_PONG_TIMEOUT": "25s"})
    assert found["client.pong_timeout"].allowed == ("a duration below client.ping_interval (25s)")


def test_ports_differ_unless_zero() -> None:
    found = problems_of(env={}, overrides={"server.port": 9000})
    assert found["server.internal_port"].value == 9000
    load_settings(env={}, overrides={"server.port": 0, "server.internal_port": 0})


@pytest.mark.parametrize(
    "url",
    [
        "memory://",
        "redis://localhost:6379/0",
        "rediss://h",
        "redis+sentinel://h:26379/mymaster",
        "redis+cluster://h:7000",
        "amqp://guest:guest@h/",
        "amqps://h",
    ],
)
def test_broker_schemes_accepted(url: str) -> None:
    assert load_settings(env={"WSFLEET_BROKER_URL": url}).broker.url == url


@pytest.mark.parametrize("url", ["http://h", "localhost:6379", "", "kafka://h"])
def test_broker_schemes_refused(url: str) -> None:
    found = problems_of(env={"WSFLEET_BROKER_URL": url})
    assert found["broker.url"].allowed.startswith("a URL whose scheme is one of memory://")


def test_personal_channel_namespace_must_exist() -> None:
    found = problems_of(
        env={"WSFLEET_CLIENT_USER_PERSONAL_CHANNEL_NAMESPACE": "personal", **namespaces_env()}
    )
    assert found["client.user_personal_channel_namespace"].allowed == (
        "the name of a namespace in channel.namespaces (none are configured)"
    )
    s = load_settings(
        env={
            "WSFLEET_CLIENT_USER_PERSONAL_CHANNEL_NAMESPACE": "personal",
            **namespaces_env('{"name": "personal"}'),
        }
    )
    assert s.client.user_personal_channel_namespace == "personal"


def test_a_wrong_value_does_not_cause_a_second_misleading_problem() -> None:
    # history_ttl is wrong; it must not also be reported as "history_size needs a ttl".
    found = problems_of(env=namespaces_env('{"name": "a", "history_size": 3, "history_ttl": "x"}'))
    assert list(found) == ["channel.namespaces[0].history_ttl"]


# -- dev mode ---------------------------------------------------------------------------


def test_dev_mode_opens_everything() -> None:
    s = load_settings(
        env=namespaces_env(
            '{"name": "chat"}',
            '{"name": "kept", "history_size": 5, "history_ttl": 10,'
            ' "allowed_delta_types": ["fossil"]}',
        ),
        overrides={"dev": True},
    )
    assert s.auth.allow_anonymous_connect_without_token is True
    assert s.api.key == "dev"
    for options in (s.channel.without_namespace, *s.channel.namespaces):
        assert options.allow_subscribe_for_client and options.allow_subscribe_for_anonymous
        assert options.allow_publish_for_client and options.allow_publish_for_anonymous
        assert options.allow_presence_for_client and options.allow_history_for_client
        assert options.presence and options.join_leave
    assert (s.channel.without_namespace.history_size, s.channel.without_namespace.history_ttl) == (
        100,
        300.0,
    )
    assert (s.channel.namespaces[0].history_size, s.channel.namespaces[0].history_ttl) == (
        100,
        300.0,
    )
    # Configured history is kept.
    assert (s.channel.namespaces[1].history_size, s.channel.namespaces[1].history_ttl) == (5, 10.0)
    # Tags filters too, except where deltas are allowed (the two exclude each other).
    assert s.channel.without_namespace.allow_tags_filter and s.channel.namespaces[0].allow_tags_filter
    assert not s.channel.namespaces[1].allow_tags_filter


def test_dev_mode_keeps_a_configured_api_key_and_runs_before_validation() -> None:
    # delta_publish needs history; dev mode supplies it, so this is valid.
    s = load_settings(
        env={"WSFLEET_DEV": "1", "WSFLEET_API_KEY": "mine"},
        overrides={"channel.without_namespace.delta_publish": True},
    )
    assert s.api.key == "mine"
    assert s.channel.without_namespace.delta_publish is True


def test_no_dev_mode_changes_nothing() -> None:
    s = load_settings(env={})
    assert s.channel.without_namespace.allow_publish_for_anonymous is False
    assert s.api.key == ""


def test_dev_warning_is_loud() -> None:
    assert "INSECURE" in DEV_WARNING
    assert "internet" in DEV_WARNING
    assert len(DEV_WARNING.splitlines()) >= 3


# -- redaction --------------------------------------------------------------------------


def test_settings_to_dict_redacts_secrets() -> None:
    s = load_settings(
        env={
            "WSFLEET_AUTH_TOKEN_HMAC_SECRET": "s3cr3t",
            "WSFLEET_AUTH_TOKEN_RSA_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----",
            "WSFLEET_API_KEY": "k",
            "WSFLEET_BROKER_KEY_PREFIX": "tenant1",
        }
    )
    data = settings_to_dict(s)
    assert data["auth"]["token_hmac_secret"] == "***"
    assert data["auth"]["token_rsa_public_key"] == "***"
    assert data["auth"]["subscription_token_hmac_secret"] == ""  # empty stays visible
    assert data["api"]["key"] == "***"
    assert data["broker"]["key_prefix"] == "tenant1"
    assert data["client"]["ping_interval"] == 25.0
    assert "s3cr3t" not in repr(data)
    assert s.auth.token_hmac_secret == "s3cr3t"  # the settings themselves are untouched


def test_problems_do_not_leak_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "auth:\n  token_hmac_secret: 12345\n")
    [problem] = check_config(path, {})
    assert problem.key == "auth.token_hmac_secret"
    assert problem.value == "***"


def test_rates_are_plain_numbers_never_durations(tmp_path: Path) -> None:
    # "1m" would read as 60 per second if a rate were parsed as a duration.
    path = write(tmp_path, "r.yaml", "fleet:\n  connection_rate_limit: 250\n")
    s = load_settings(path=path, env={"WSFLEET_CLIENT_COMMAND_RATE_LIMIT": "12.5"})
    assert (s.fleet.connection_rate_limit, s.client.command_rate_limit) == (250.0, 12.5)
    for key, value in [("client.command_rate_limit", "1m"), ("fleet.connection_rate_limit", -1)]:
        with pytest.raises(ConfigError) as info:
            load_settings(env={}, overrides={key: value})
        assert f"{key} = {value!r}" in str(info.value)
        assert "expected a number >= 0" in str(info.value)


# -- connection limits, drain and rebalancing -------------------------------------------


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    proxies = ["10.0.0.0/8", " 127.0.0.1 ", "2001:db8::/32", "fd00::1"]
    assert (
        load_settings(env={}, overrides={"server.trusted_proxies": proxies}).server.trusted_proxies
        == proxies
    )
    found = problems_of(
        env={"WSFLEET_SERVER_TRUSTED_PROXIES": '["not-an-ip", "10.0.0.0/8", "10.0.0.0/33"]'}
    )
    assert set(found) == {"server.trusted_proxies[0]", "server.trusted_proxies[2]"}
    problem = found["server.trusted_proxies[0]"]
    assert problem.value == "not-an-ip"
    assert problem.allowed == "an IP address or CIDR network, such as 10.0.0.0/8 or 2001:db8::/32"
    assert problem.source == "env WSFLEET_SERVER_TRUSTED_PROXIES"
    assert found["server.trusted_proxies[2]"].value == "10.0.0.0/33"


@pytest.mark.parametrize(
    ("readiness_delay", "window", "timeout"), [(5, 15, 20), (5, 15, 10), ("2s", "1m", "62s")]
)
def test_drain_timeout_must_exceed_readiness_delay_plus_window(
    readiness_delay: object, window: object, timeout: object
) -> None:
    found = problems_of(
        env={},
        overrides={
            "drain.readiness_delay": readiness_delay,
            "drain.window": window,
            "drain.timeout": timeout,
        },
    )
    assert list(found) == ["drain.timeout"]
    assert found["drain.timeout"].allowed.startswith(
        "a duration above drain.readiness_delay + drain.window ("
    )
    ok = load_settings(
        env={}, overrides={"drain.readiness_delay": 5, "drain.window": 15, "drain.timeout": 21}
    )
    assert ok.drain.timeout == 21.0


def test_a_wrong_drain_part_is_reported_alone() -> None:
    # The window is wrong: the timeout is not also reported against its default.
    found = problems_of(env={}, overrides={"drain.window": "soon", "drain.timeout": 2})
    assert list(found) == ["drain.window"]


@pytest.mark.parametrize("jitter", [2, -0.1, "lots"])
def test_connection_lifetime_jitter_is_a_fraction(jitter: object) -> None:
    found = problems_of(env={}, overrides={"client.connection_lifetime_jitter": jitter})
    assert list(found) == ["client.connection_lifetime_jitter"]
    assert found["client.connection_lifetime_jitter"].value == jitter
    for fine in (0, 0.25, 1):
        s = load_settings(env={}, overrides={"client.connection_lifetime_jitter": fine})
        assert s.client.connection_lifetime_jitter == fine


def test_fractions_are_plain_numbers_never_durations() -> None:
    # A fraction is no duration: "500ms" must not read as 0.5, nor "1s" as 1, and
    # the problem must not ask for seconds.
    for key in ("client.connection_lifetime_jitter", "rebalance.tolerance"):
        found = problems_of(env={}, overrides={key: "500ms"})
        assert list(found) == [key]
        assert "seconds" not in found[key].allowed and "duration" not in found[key].allowed
    found = problems_of(env={}, overrides={"client.connection_lifetime_jitter": 2})
    assert "seconds" not in found["client.connection_lifetime_jitter"].allowed


def test_rebalance_rate_and_mode() -> None:
    found = problems_of(env={}, overrides={"rebalance.rate": 0, "rebalance.mode": "sometimes"})
    assert (found["rebalance.rate"].value, found["rebalance.rate"].allowed) == (
        0,
        "a number >= 0.1",
    )
    assert (found["rebalance.mode"].value, found["rebalance.mode"].allowed) == (
        "sometimes",
        "one of 'auto', 'on', 'off'",
    )
    s = load_settings(env={"WSFLEET_REBALANCE_MODE": "on", "WSFLEET_REBALANCE_RATE": "0.5"})
    assert (s.rebalance.mode, s.rebalance.rate) == ("on", 0.5)


@pytest.mark.parametrize(
    "key",
    [
        "server.connection_limit",
        "server.ip_connection_limit",
        "server.connection_rate_limit",
        "server.connection_rate_burst",
        "client.max_connection_lifetime",
    ],
)
def test_connection_limits_are_off_at_zero_and_never_negative(key: str) -> None:
    assert load_settings(env={}, overrides={key: 0}) == load_settings(env={})
    assert list(problems_of(env={}, overrides={key: -1})) == [key]


@pytest.mark.parametrize(
    "env",
    [
        {"WSFLEET_PORT": "tcp://10.0.0.5:8000"},  # a Service named wsfleet
        {"WSFLEET_SERVICE_HOST": "10.0.0.5"},
        {"WSFLEET_PORT_8000_TCP_ADDR": "10.0.0.5"},
        {"WSFLEET_SERVER_PORT": "tcp://10.0.0.6:8000"},  # a Service named wsfleet-server
    ],
)
def test_kubernetes_service_links_are_refused_with_the_fix(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(path=None, env=env, overrides={})
    (name,) = env
    text = str(err.value)
    assert name in text and "set enableServiceLinks: false" in text


def test_a_port_from_the_environment_is_still_a_port() -> None:
    assert load_settings(path=None, env={"WSFLEET_SERVER_PORT": "8001"}, overrides={}).server.port == 8001
