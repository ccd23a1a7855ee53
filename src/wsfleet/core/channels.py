"""Channel names, namespaces and the permissions that follow from them.

A channel ``ns:rest`` belongs to namespace ``ns``; a channel without ``:``
uses the options of channels without namespace. A channel ending in
``#alice,bob`` is user-limited: only the listed users may subscribe, where the
namespace allows user-limited channels. A user's personal channel is
``#<user>`` (or ``<namespace>:#<user>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from wsfleet.brokers.base import HistoryOptions
from wsfleet.protocol.codes import ErrorCode, ProtocolError
from wsfleet.settings import ChannelSettings, ClientSettings, NamespaceOptions

NAMESPACE_BOUNDARY = ":"
USER_BOUNDARY = "#"
USER_SEPARATOR = ","


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """A namespace's options resolved for one channel, plus what derives from them."""

    name: str
    namespace: str
    options: NamespaceOptions
    history: HistoryOptions

    @property
    def history_enabled(self) -> bool:
        return self.history.enabled


class ChannelRules:
    """Resolves channels to their namespace's options.

    dev: in development mode a channel in an unconfigured namespace uses the
    options of channels without namespace instead of being unknown.
    """

    def __init__(
        self, channels: ChannelSettings, client: ClientSettings, *, dev: bool = False
    ) -> None:
        self._default = channels.without_namespace
        self._namespaces: dict[str, NamespaceOptions] = {n.name: n for n in channels.namespaces}
        self._client = client
        self._dev = dev
        self._cache: dict[str, tuple[str, NamespaceOptions, HistoryOptions]] = {}

    def resolve(self, channel: str) -> ChannelOptions:
        """Options of ``channel``; raises error 107 for a bad name, 102 for an unknown namespace."""
        if not channel or len(channel.encode()) > self._client.channel_max_length:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "bad channel name")
        ns, sep, _ = channel.partition(NAMESPACE_BOUNDARY)
        namespace = ns if sep else ""
        entry = self._cache.get(namespace)
        if entry is None:
            entry = self._lookup(namespace)
        return ChannelOptions(channel, entry[0], entry[1], entry[2])

    def _lookup(self, namespace: str) -> tuple[str, NamespaceOptions, HistoryOptions]:
        if not namespace:
            opts = self._default
        elif namespace in self._namespaces:
            opts = self._namespaces[namespace]
        elif self._dev:
            opts = self._default
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL)
        history = HistoryOptions(
            size=opts.history_size, ttl=opts.history_ttl, meta_ttl=opts.history_meta_ttl
        )
        entry = (namespace, opts, history)
        self._cache[namespace] = entry
        return entry

    @staticmethod
    def allowed_users(channel: str) -> frozenset[str] | None:
        """Users a user-limited channel admits, or None when it is not user-limited."""
        _, sep, users = channel.rpartition(USER_BOUNDARY)
        if not sep:
            return None
        return frozenset(u for u in users.split(USER_SEPARATOR) if u)

    def personal_channel(self, user: str) -> str:
        """The personal channel of ``user``."""
        ns = self._client.user_personal_channel_namespace
        prefix = ns + NAMESPACE_BOUNDARY if ns else ""
        return f"{prefix}{USER_BOUNDARY}{user}"
