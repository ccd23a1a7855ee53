from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.node_harness import RunningNode, running_node


@pytest.fixture
async def dev_node() -> AsyncIterator[RunningNode]:
    """A development-mode node: anonymous clients may do anything; API key ``dev``."""
    async with running_node({"dev": True}) as node:
        yield node
