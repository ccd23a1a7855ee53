from __future__ import annotations

import pytest

from wsfleet.core.channels import ChannelRules
from wsfleet.protocol.codes import ErrorCode, ProtocolError
from wsfleet.settings import ChannelSettings, ClientSettings, Namespace, NamespaceOptions


def rules(dev: bool = False) -> ChannelRules:
    channels = ChannelSettings(
        without_namespace=NamespaceOptions(),
        namespaces=[Namespace(name="chat", history_size=10, history_ttl=60)],
    )
    return ChannelRules(channels, ClientSettings(channel_max_length=20), dev=dev)


def test_namespace_options_apply_to_its_channels() -> None:
    opts = rules().resolve("chat:room")
    assert opts.namespace == "chat" and opts.history_enabled
    assert not rules().resolve("plain").history_enabled


def test_unknown_namespace_is_error_102_except_in_dev_mode() -> None:
    with pytest.raises(ProtocolError) as exc:
        rules().resolve("nope:room")
    assert exc.value.code is ErrorCode.UNKNOWN_CHANNEL
    assert rules(dev=True).resolve("nope:room").namespace == "nope"


@pytest.mark.parametrize("name", ["", "x" * 21])
def test_empty_or_too_long_channel_is_a_bad_request(name: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        rules().resolve(name)
    assert exc.value.code is ErrorCode.BAD_REQUEST


def test_user_limited_channels_and_personal_channels() -> None:
    assert ChannelRules.allowed_users("dialog#alice,bob") == {"alice", "bob"}
    assert ChannelRules.allowed_users("public") is None
    assert rules().personal_channel("alice") == "#alice"
