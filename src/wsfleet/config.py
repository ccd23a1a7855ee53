"""Loading and validating the configuration: one :class:`Settings` from many layers.

Layers, lowest first: the schema defaults in :mod:`wsfleet.settings`, a file
(YAML or TOML), ``WSFLEET_*`` environment variables, and overrides from
command-line flags. The layers are merged as raw values first and validated
once, so a bad configuration is reported as *every* problem it has, each
naming the key, the value, what is allowed and which layer it came from.

This module is not the schema (that is :mod:`wsfleet.settings`) and does not
print anything: the CLI decides how to show problems and :data:`DEV_WARNING`.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

import yaml

from wsfleet.settings import Fraction, NamespaceOptions, PerSecond, Settings

__all__ = [
    "BROKER_SCHEMES",
    "CONFIG_PATH_ENV",
    "DEV_WARNING",
    "ENV_PREFIX",
    "NAMESPACE_NAME_PATTERN",
    "ConfigError",
    "ConfigProblem",
    "FieldSpec",
    "SectionSpec",
    "check_config",
    "format_duration",
    "load_settings",
    "parse_duration",
    "schema_sections",
    "settings_to_dict",
]

ENV_PREFIX = "WSFLEET_"

#: Not an option: the path of the config file, read when no path is passed.
#: In Kubernetes this points at a mounted ConfigMap.
CONFIG_PATH_ENV = "WSFLEET_CONFIG"

BROKER_SCHEMES = (
    "memory",
    "redis",
    "rediss",
    "redis+sentinel",
    "redis+cluster",
    "amqp",
    "amqps",
)

NAMESPACE_NAME_PATTERN = r"^[-a-zA-Z0-9_.]+$"
_NAMESPACE_NAME_RE = re.compile(NAMESPACE_NAME_PATTERN)

DEV_WARNING = """\
################################################################################
#  WSFLEET IS RUNNING IN DEV MODE. IT IS INSECURE.                             #
#                                                                              #
#  Anyone may connect without a token, subscribe to and publish on any         #
#  channel, read history and presence; the server API key is "dev".            #
#  Use it on your own machine only. NEVER let it face the internet.            #
################################################################################"""

_DEFAULT_SOURCE = "default"
_REDACTED = "***"

Kind: TypeAlias = Literal["bool", "int", "number", "duration", "str", "literal", "list", "section"]


# -- problems ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration; the user's fault, never the server's."""

    key: str
    """Dotted path of the option, e.g. ``channel.namespaces[1].history_ttl``."""
    value: object
    """The offending value as given (secrets are shown as ``***``)."""
    allowed: str
    """What would be accepted, e.g. ``a number of seconds >= 1, or a duration like '25s'``."""
    source: str
    """Where the value came from: a file path, ``env WSFLEET_X``, ``flag --port``, ``default``."""

    def __str__(self) -> str:
        return f"{self.key} = {self.value!r} (from {self.source}): expected {self.allowed}"


class ConfigError(Exception):
    """The configuration is invalid; :attr:`problems` lists every reason."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the configuration:\n{lines}"
        )


# -- durations --------------------------------------------------------------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# "ms" must be tried before "m" and "s".
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)")
_DURATION_SYNTAX = "a number of seconds, or a duration like '300ms', '25s', '5m', '1h30m', '30d'"


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a plain number (``"2.5"``) or units (``"300ms"``, ``"1h30m"``).

    Units: ``ms``, ``s``, ``m``, ``h``, ``d``. Raises :class:`ValueError` otherwise.
    """
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"not a finite duration: {text!r}")
        return seconds
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        raise ValueError(f"not a duration: {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` that :func:`parse_duration` reads back."""
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        count = seconds / _DURATION_UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    millis = seconds * 1000
    if millis == int(millis):
        return f"{int(millis)}ms"
    return f"{seconds}s"


# -- the schema, walked -----------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """One option of the schema, as the loader and the reference generator see it."""

    path: str
    """Dotted path; items of a list of sections use ``[]``: ``channel.namespaces[].name``."""
    name: str
    kind: Kind
    annotation: Any
    default: object
    doc: str
    env: str | None
    """Environment variable, or None for fields of list items (set with the list's JSON)."""
    choices: tuple[str, ...] = ()
    """Allowed values of a Literal field, or of the items of a list of Literals."""
    min: float | None = None
    max: float | None = None
    required: bool = False


@dataclass(frozen=True)
class SectionSpec:
    """A group of options: the top level (path ``""``), a section, or list items."""

    path: str
    doc: str
    fields: tuple[FieldSpec, ...]


def schema_sections() -> list[SectionSpec]:
    """Every section of :class:`Settings`, in declaration order, each with its leaf fields."""
    out: list[SectionSpec] = []
    _walk_section(Settings, "", "Options at the top level.", out, with_env=True)
    return out


def _walk_section(
    cls: type, path: str, doc: str, out: list[SectionSpec], *, with_env: bool
) -> None:
    hints = _hints(cls)
    leaves: list[FieldSpec] = []
    nested: list[tuple[type, str, str, bool]] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        fpath = _join(path, f.name)
        fdoc = str(f.metadata.get("doc", ""))
        if _is_dataclass_type(tp):
            nested.append((tp, fpath, fdoc, with_env))
            continue
        item = _list_item(tp)
        if item is not None and _is_dataclass_type(item):
            nested.append((item, fpath + "[]", fdoc, False))
        leaves.append(
            FieldSpec(
                path=fpath,
                name=f.name,
                kind=_kind(tp),
                annotation=tp,
                default=_default_of(f),
                doc=fdoc,
                env=_env_name(fpath) if with_env else None,
                choices=_choices(item if item is not None else tp),
                min=f.metadata.get("min"),
                max=f.metadata.get("max"),
                required=bool(f.metadata.get("required", False)),
            )
        )
    # Required fields (a namespace's name) read best first.
    leaves.sort(key=lambda spec: not spec.required)
    out.append(SectionSpec(path=path, doc=doc, fields=tuple(leaves)))
    for ncls, npath, ndoc, nenv in nested:
        _walk_section(ncls, npath, ndoc, out, with_env=nenv)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    # settings.py uses postponed annotations, so the strings must be resolved.
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _list_item(tp: Any) -> Any:
    if typing.get_origin(tp) is list:
        return typing.get_args(tp)[0]
    return None


def _choices(tp: Any) -> tuple[str, ...]:
    if typing.get_origin(tp) is Literal:
        return tuple(str(arg) for arg in typing.get_args(tp))
    return ()


def _kind(tp: Any) -> Kind:
    if _is_dataclass_type(tp):
        return "section"
    origin = typing.get_origin(tp)
    if origin is list:
        return "list"
    if origin is Literal:
        return "literal"
    if tp is bool:
        return "bool"
    if tp is int:
        return "int"
    if tp is PerSecond or tp is Fraction:
        return "number"
    if tp is float:
        # Every other float in the schema is a number of seconds.
        return "duration"
    if tp is str:
        return "str"
    raise TypeError(f"unsupported config type {tp!r}")  # a schema bug, caught by the tests


def _default_of(f: dataclasses.Field[Any]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _env_name(path: str) -> str:
    return ENV_PREFIX + path.replace(".", "_").upper()


def _env_fields() -> dict[str, FieldSpec]:
    return {spec.env: spec for section in schema_sections() for spec in section.fields if spec.env}


def _is_secret(key: str) -> bool:
    name = key.rsplit(".", 1)[-1]
    return name != "key_prefix" and ("secret" in name or "key" in name)


# -- problems, collected ----------------------------------------------------------------


class _Problems:
    """Problems in the order found, at most one per key, each with its source."""

    def __init__(self) -> None:
        self.items: list[ConfigProblem] = []
        self.sources: dict[str, str] = {}
        self._keys: set[str] = set()

    def source_of(self, key: str) -> str:
        if key in self.sources:
            return self.sources[key]
        # Items of a list came with the list, e.g. channel.namespaces[1].x -> channel.namespaces.
        if "[" in key:
            return self.sources.get(key.split("[", 1)[0], _DEFAULT_SOURCE)
        return _DEFAULT_SOURCE

    def add(self, key: str, value: object, allowed: str, source: str | None = None) -> None:
        if key in self._keys:
            return
        self._keys.add(key)
        if _is_secret(key) and value not in ("", None):
            value = _REDACTED
        self.items.append(ConfigProblem(key, value, allowed, source or self.source_of(key)))

    def has(self, *keys: str) -> bool:
        return any(k in self._keys for k in keys)

    def has_under(self, prefix: str) -> bool:
        return any(k == prefix or k.startswith((prefix + ".", prefix + "[")) for k in self._keys)


# -- layers -----------------------------------------------------------------------------


def _read_file(path: str, problems: _Problems) -> dict[str, Any]:
    lower = path.lower()
    if lower.endswith((".yaml", ".yml")):
        fmt = "YAML"
    elif lower.endswith(".toml"):
        fmt = "TOML"
    else:
        problems.add("file", path, "a .yaml, .yml or .toml file", source=path)
        return {}
    try:
        if fmt == "TOML":
            with open(path, "rb") as fb:
                data: Any = tomllib.load(fb)
        else:
            with open(path, encoding="utf-8") as ft:
                data = yaml.safe_load(ft)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        # Parser messages span lines (YAML draws a caret); one line keeps the report readable.
        message = " ".join(str(exc).split())
        problems.add("file", path, f"a readable, valid {fmt} file ({message})", source=path)
        return {}
    if data is None:  # an empty YAML file
        return {}
    if not isinstance(data, dict):
        problems.add(
            "file", type(data).__name__, f"a {fmt} mapping of options at the top", source=path
        )
        return {}
    _record_sources(data, "", path, problems)
    return data


def _record_sources(data: Mapping[Any, Any], path: str, source: str, problems: _Problems) -> None:
    for key, value in data.items():
        kpath = _join(path, str(key))
        problems.sources[kpath] = source
        if isinstance(value, Mapping):
            _record_sources(value, kpath, source, problems)


def _set_path(data: dict[str, Any], path: str, value: object) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            # A more specific layer wins over a malformed section below it.
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class _Invalid(Exception):
    """A value that cannot be used; ``allowed`` says what would be."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


def _from_text(spec: FieldSpec, text: str) -> object:
    """A string from the environment (or a string flag) read as the field's type."""
    if spec.kind == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _Invalid("true or false (also 1/0, yes/no, on/off)")
    if spec.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise _Invalid(_allowed_for(spec.annotation, spec.min, spec.max)) from None
    if spec.kind == "number":
        try:
            return float(text.strip())
        except ValueError:
            raise _Invalid(_allowed_for(spec.annotation, spec.min, spec.max)) from None
    if spec.kind in ("list", "section"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Invalid(f"a JSON {_allowed_for(spec.annotation, None, None)} ({exc})") from None
    # Durations stay strings: the duration parser reads them with the other layers.
    return text


# What Kubernetes puts in every pod for each Service of its namespace unless
# the pod sets enableServiceLinks: false; a Service named "wsfleet" or
# "wsfleet-server" makes WSFLEET_PORT or WSFLEET_SERVER_PORT look like options.
_SERVICE_LINK = re.compile(r"^(tcp|udp|sctp)://[^/]+:\d+$")
_SERVICE_LINK_NAME = re.compile(
    r"_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)\w*)?)$"
)


def _unknown_env_hint(name: str, value: str, known: Mapping[str, FieldSpec]) -> str:
    if _SERVICE_LINK.match(value) or _SERVICE_LINK_NAME.search(name):
        return (
            f"a known {ENV_PREFIX}* variable; this looks like a Kubernetes service link "
            "(a Service named wsfleet...): set enableServiceLinks: false in the pod spec"
        )
    match = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {match[0]}?" if match else " (see docs/reference/config.md)"
    return f"a known {ENV_PREFIX}* variable{hint}"


def _apply_env(env: Mapping[str, str], data: dict[str, Any], problems: _Problems) -> None:
    known = _env_fields()
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_PATH_ENV:
            continue
        value = env[name]
        source = f"env {name}"
        spec = known.get(name)
        if spec is None or _SERVICE_LINK.match(value):
            problems.add(name, value, _unknown_env_hint(name, value, known), source=source)
            continue
        problems.sources[spec.path] = source
        try:
            _set_path(data, spec.path, _from_text(spec, value))
        except _Invalid as exc:
            problems.add(spec.path, value, exc.allowed)


def _apply_overrides(
    overrides: Mapping[str, object],
    flag_names: Mapping[str, str],
    data: dict[str, Any],
    problems: _Problems,
) -> None:
    known = {spec.path: spec for s in schema_sections() for spec in s.fields if spec.env}
    for key, value in overrides.items():
        if value is None:  # a flag that was not given
            continue
        source = f"flag {flag_names.get(key, '--' + key)}"
        spec = known.get(key)
        if spec is None:
            match = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{match[0]}'?" if match else " (see docs/reference/config.md)"
            problems.add(key, value, f"a known option{hint}", source=source)
            continue
        problems.sources[key] = source
        try:
            if isinstance(value, str) and spec.kind not in ("str", "literal", "duration"):
                value = _from_text(spec, value)
            _set_path(data, key, value)
        except _Invalid as exc:
            problems.add(key, value, exc.allowed)


# -- raw values -> dataclasses ----------------------------------------------------------


def _bounds(lo: float | None, hi: float | None, unit: str = "") -> str:
    parts = []
    if lo is not None:
        parts.append(f">= {lo:g}{unit}")
    if hi is not None:
        parts.append(f"<= {hi:g}{unit}")
    return " and ".join(parts)


def _allowed_for(tp: Any, lo: float | None, hi: float | None) -> str:
    """What a field accepts, in words that follow "expected"."""
    kind = _kind(tp)
    bounds = _bounds(lo, hi)
    if kind == "bool":
        return "true or false"
    if kind == "int":
        return f"an integer {bounds}".rstrip()
    if kind == "number":
        return f"a number {bounds}".rstrip()
    if kind == "duration":
        return f"a number of seconds {bounds}, or a duration like '25s'".replace("  ", " ")
    if kind == "str":
        return "a string"
    if kind == "literal":
        return "one of " + ", ".join(repr(c) for c in _choices(tp))
    if kind == "section":
        return f"a mapping of {tp.__name__} options"
    item = _list_item(tp)
    if _is_dataclass_type(item):
        return f"a list of mappings of {item.__name__} options"
    return f"a list, each item {_allowed_for(item, None, None)}"


_SENTINEL = object()


def _convert(
    tp: Any, meta: Mapping[str, Any], value: object, key: str, problems: _Problems
) -> object:
    """``value`` as a ``tp``, or :data:`_SENTINEL` after adding a problem."""
    lo, hi = meta.get("min"), meta.get("max")
    allowed = _allowed_for(tp, lo, hi)
    kind = _kind(tp)
    if kind == "section":
        if not isinstance(value, Mapping):
            problems.add(key, value, allowed)
            return _SENTINEL
        return _build(tp, value, key, problems)
    if kind == "list":
        if not isinstance(value, list):
            problems.add(key, value, allowed)
            return _SENTINEL
        item_tp = _list_item(tp)
        items = [_convert(item_tp, {}, v, f"{key}[{i}]", problems) for i, v in enumerate(value)]
        # A list with a broken item falls back whole, so indexes in later problems stay true.
        return _SENTINEL if any(i is _SENTINEL for i in items) else items
    if kind == "literal":
        if isinstance(value, str) and value in _choices(tp):
            return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "str":
        if isinstance(value, str):
            return value
    elif kind == "int":
        # bool is an int in Python; `port: true` is still a mistake.
        if isinstance(value, int) and not isinstance(value, bool) and _in_bounds(value, lo, hi):
            return value
    elif kind == "number":
        number = _number(value)
        if number is not None and _in_bounds(number, lo, hi):
            return number
    elif kind == "duration":
        seconds = _seconds(value)
        if seconds is not None and _in_bounds(seconds, lo, hi):
            return seconds
    problems.add(key, value, allowed)
    return _SENTINEL


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            return None
    return None


def _in_bounds(value: float, lo: float | None, hi: float | None) -> bool:
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _build(cls: type, raw: Mapping[Any, Any], path: str, problems: _Problems) -> Any:
    hints = _hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for raw_key, value in raw.items():
        name = str(raw_key)
        key = _join(path, name)
        field = known.get(name)
        if field is None:
            match = difflib.get_close_matches(name, known, n=1)
            if match:
                allowed = f"a known key; did you mean '{_join(path, match[0])}'?"
            else:
                where = f"of {path}" if path else "at the top level"
                allowed = f"a known key {where}: {', '.join(known)}"
            problems.add(key, value, allowed)
            continue
        converted = _convert(hints[name], field.metadata, value, key, problems)
        if converted is not _SENTINEL:
            kwargs[name] = converted
    for name, field in known.items():
        if field.metadata.get("required") and name not in raw:
            problems.add(_join(path, name), None, f"a value: {name} is required")
    return cls(**kwargs)


# -- dev mode and rules across fields ---------------------------------------------------


def _apply_dev(settings: Settings) -> None:
    settings.auth.allow_anonymous_connect_without_token = True
    if not settings.api.key:
        settings.api.key = "dev"
    for options in _all_namespace_options(settings):
        options.allow_subscribe_for_client = True
        options.allow_subscribe_for_anonymous = True
        options.allow_publish_for_client = True
        options.allow_publish_for_anonymous = True
        options.allow_presence_for_client = True
        options.allow_history_for_client = True
        options.allow_presence_for_anonymous = True
        options.allow_history_for_anonymous = True
        options.presence = True
        options.join_leave = True
        if not options.allowed_delta_types:  # the two exclude each other
            options.allow_tags_filter = True
        if options.history_size == 0 and options.history_ttl == 0:
            options.history_size = 100
            options.history_ttl = 300.0


def _all_namespace_options(settings: Settings) -> Iterator[NamespaceOptions]:
    yield settings.channel.without_namespace
    yield from settings.channel.namespaces


def _check_namespace(options: NamespaceOptions, path: str, problems: _Problems) -> None:
    if options.allow_tags_filter and options.allowed_delta_types:
        # A filtered subscriber skips publications, so it has no delta base to patch.
        problems.add(
            f"{path}.allow_tags_filter", True, "false when allowed_delta_types is not empty"
        )
    size_key, ttl_key = f"{path}.history_size", f"{path}.history_ttl"
    if problems.has(size_key, ttl_key):
        return  # a wrong value was replaced by its default; rules on it would mislead
    if options.history_size > 0 and options.history_ttl <= 0:
        problems.add(
            ttl_key,
            options.history_ttl,
            f"a duration > 0 when history_size is set (history_size = {options.history_size})",
        )
    if options.history_ttl > 0 and options.history_size <= 0:
        problems.add(
            size_key,
            options.history_size,
            f"an integer > 0 when history_ttl is set (history_ttl = {options.history_ttl:g})",
        )
    has_history = options.history_size > 0 and options.history_ttl > 0
    if has_history:
        return
    needs = "history (history_size and history_ttl > 0)"
    if options.allowed_delta_types:
        problems.add(
            f"{path}.allowed_delta_types", options.allowed_delta_types, f"[] unless {needs}"
        )
    if options.delta_publish:
        problems.add(f"{path}.delta_publish", True, f"false unless {needs}")
    if options.force_recovery:
        problems.add(f"{path}.force_recovery", True, f"false unless {needs}")


def _check_rules(settings: Settings, problems: _Problems) -> None:
    _check_namespace(settings.channel.without_namespace, "channel.without_namespace", problems)
    seen: dict[str, int] = {}
    for index, namespace in enumerate(settings.channel.namespaces):
        path = f"channel.namespaces[{index}]"
        _check_namespace(namespace, path, problems)
        name = namespace.name
        if not _NAMESPACE_NAME_RE.match(name):
            problems.add(
                f"{path}.name", name, f"a non-empty name matching {NAMESPACE_NAME_PATTERN}"
            )
        elif name in seen:
            problems.add(
                f"{path}.name",
                name,
                f"a unique name (channel.namespaces[{seen[name]}] has it already)",
            )
        else:
            seen[name] = index

    client = settings.client
    if (
        not problems.has("client.pong_timeout", "client.ping_interval")
        and client.pong_timeout >= client.ping_interval
    ):
        problems.add(
            "client.pong_timeout",
            client.pong_timeout,
            f"a duration below client.ping_interval ({client.ping_interval:g}s)",
        )
    personal = client.user_personal_channel_namespace
    if personal and not problems.has_under("channel.namespaces") and personal not in seen:
        names = ", ".join(repr(n) for n in seen) or "none are configured"
        problems.add(
            "client.user_personal_channel_namespace",
            personal,
            f"the name of a namespace in channel.namespaces ({names})",
        )

    server = settings.server
    if (
        not problems.has("server.port", "server.internal_port")
        and server.port != 0
        and server.port == server.internal_port
    ):
        problems.add(
            "server.internal_port",
            server.internal_port,
            f"a port other than server.port ({server.port}), or 0",
        )

    _check_drain(settings, problems)
    _check_proxies(settings.server.trusted_proxies, problems)

    url = settings.broker.url
    if not problems.has("broker.url"):
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
        if scheme not in BROKER_SCHEMES:
            problems.add(
                "broker.url",
                url,
                "a URL whose scheme is one of " + ", ".join(f"{s}://" for s in BROKER_SCHEMES),
            )


def _check_drain(settings: Settings, problems: _Problems) -> None:
    drain = settings.drain
    keys = ("drain.timeout", "drain.readiness_delay", "drain.window")
    if problems.has(*keys):
        return
    needed = drain.readiness_delay + drain.window
    if drain.timeout <= needed:
        problems.add(
            "drain.timeout",
            drain.timeout,
            f"a duration above drain.readiness_delay + drain.window ({needed:g}s), with room "
            "to close the broker",
        )


def _check_proxies(proxies: list[str], problems: _Problems) -> None:
    for index, text in enumerate(proxies):
        try:
            ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            problems.add(
                f"server.trusted_proxies[{index}]",
                text,
                "an IP address or CIDR network, such as 10.0.0.0/8 or 2001:db8::/32",
            )


# -- the public entry points ------------------------------------------------------------


def _load(
    path: str | None,
    env: Mapping[str, str],
    overrides: Mapping[str, object],
    flag_names: Mapping[str, str],
) -> tuple[Settings, list[ConfigProblem]]:
    problems = _Problems()
    if path is None:
        path = env.get(CONFIG_PATH_ENV) or None
    data: dict[str, Any] = _read_file(path, problems) if path is not None else {}
    _apply_env(env, data, problems)
    _apply_overrides(overrides, flag_names, data, problems)
    settings: Settings = _build(Settings, data, "", problems)
    if settings.dev:
        _apply_dev(settings)
    _check_rules(settings, problems)
    return settings, problems.items


def load_settings(
    *,
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    flag_names: Mapping[str, str] | None = None,
) -> Settings:
    """Load, merge and validate the configuration; raise :class:`ConfigError` if invalid.

    :param path: a ``.yaml``/``.yml`` or ``.toml`` file. Default None: the file named by
        ``WSFLEET_CONFIG`` in ``env``, or no file (schema defaults only).
    :param env: the environment, read for ``WSFLEET_*`` variables. Default None:
        :data:`os.environ`. Pass ``{}`` to ignore the environment.
    :param overrides: values from command-line flags by dotted key, e.g.
        ``{"server.port": 8001, "dev": True}``; they beat every other layer. A None
        value means the flag was not given. Strings are read as the environment's are.
        Default None: no overrides.
    :param flag_names: the flag each override came from, e.g. ``{"server.port":
        "--port"}``, so problems name it. Default None: ``--<dotted key>``.

    With ``dev`` set, dev mode opens every channel to anyone (see :data:`DEV_WARNING`),
    applied after loading and before the rules across fields are checked.
    """
    settings, problems = _load(
        path,
        os.environ if env is None else env,
        overrides or {},
        flag_names or {},
    )
    if problems:
        raise ConfigError(problems)
    return settings


def check_config(path: str | None, env: Mapping[str, str]) -> list[ConfigProblem]:
    """Every problem of the configuration in ``path`` and ``env``; empty if it is valid.

    ``path`` None means the file in ``WSFLEET_CONFIG``, or none. For ``wsfleet check-config``.
    """
    return _load(path, env, {}, {})[1]


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    """``settings`` as plain data, for /status and debugging, with secrets shown as ``***``.

    A secret is a non-empty string whose field name contains ``secret`` or ``key``
    (``key_prefix`` is not one).
    """
    return _redact(dataclasses.asdict(settings))


def _redact(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict):
            out[name] = _redact(value)
        elif isinstance(value, list):
            out[name] = [_redact(v) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, str) and value and _is_secret(name):
            out[name] = _REDACTED
        else:
            out[name] = value
    return out
