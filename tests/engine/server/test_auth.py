"""The Authenticator's key cache: a request's key is looked up in the store once per
``key_cache_ttl``, a key revoked through this server is refused at once, and one revoked behind
its back (by another server of the same store) within the TTL."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from virtrio.engine.server import Role, open_store
from virtrio.engine.server._auth import Authenticator, AuthError


async def test_a_revoked_key_is_refused_at_once_here_and_within_the_ttl_elsewhere(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    store = await open_store(f"sqlite:{tmp_path / 'store.db'}")
    try:
        auth = Authenticator(store, secret=b"s" * 32, key_cache_ttl=5.0)
        record, key = await auth.create_key(Role.VIEWER)
        assert (await auth.check_key(key)).key_id == record.id
        lookups = 0
        get_key = store.get_key

        async def counted(key_id: str) -> object:
            nonlocal lookups
            lookups += 1
            return await get_key(key_id)

        store.get_key = counted  # type: ignore[method-assign]
        for _ in range(3):
            await auth.check_key(key)
        assert lookups == 0  # the cached record served them

        assert await store.revoke_key(record.id)  # as another server of the store would
        lookups = 0
        await auth.check_key(key)  # still cached: up to key_cache_ttl
        await trio.sleep(5.0)
        with pytest.raises(AuthError, match="revoked"):
            await auth.check_key(key)
        assert lookups == 1

        other, other_key = await auth.create_key(Role.VIEWER)
        await auth.check_key(other_key)
        await store.revoke_key(other.id)
        auth.forget(other.id)  # what revoking through this server's route does
        with pytest.raises(AuthError, match="revoked"):
            await auth.check_key(other_key)
    finally:
        store.close()
