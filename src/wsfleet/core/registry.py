"""The connections of one node, by client id and by user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Registered(Protocol):
    @property
    def client_id(self) -> str: ...

    @property
    def user(self) -> str: ...


T = TypeVar("T", bound=Registered)


class ConnectionRegistry(Generic[T]):
    """Authenticated connections, indexed for the server API and the limits."""

    def __init__(self) -> None:
        self._by_id: dict[str, T] = {}
        self._by_user: dict[str, dict[str, T]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._by_id.values()))

    @property
    def num_users(self) -> int:
        """Distinct users with at least one connection (anonymous counts as one)."""
        return len(self._by_user)

    def add(self, conn: T) -> None:
        self._by_id[conn.client_id] = conn
        self._by_user.setdefault(conn.user, {})[conn.client_id] = conn

    def remove(self, conn: T) -> None:
        if self._by_id.pop(conn.client_id, None) is None:
            return
        user_conns = self._by_user.get(conn.user)
        if user_conns is not None:
            user_conns.pop(conn.client_id, None)
            if not user_conns:
                del self._by_user[conn.user]

    def get(self, client_id: str) -> T | None:
        return self._by_id.get(client_id)

    def by_user(self, user: str) -> list[T]:
        return list(self._by_user.get(user, {}).values())

    def users(self) -> list[str]:
        """The users with at least one connection."""
        return list(self._by_user)

    def user_count(self, user: str) -> int:
        return len(self._by_user.get(user, ()))
