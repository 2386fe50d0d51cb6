"""API keys, bearer tokens, roles and the per-key rate limit (feature S2).

A key reads ``vk_<id>_<secret>``: the id finds its record, the secret is checked against the
argon2 hash stored there (the key itself is shown once, when created, and never stored). A
verified key is remembered by its SHA-256 for the process's life, so argon2's deliberate cost
is paid once per key, not per request. Bearer tokens are HS256 JWTs minted from a key, with
an expiry, signed with the server's secret.
"""

from __future__ import annotations

import enum
import hashlib
import math
import secrets
import time

import attrs
import trio

from ._store import KeyRecord, Store

__all__ = ["Principal", "RateLimiter", "Role", "Authenticator", "new_key"]


class Role(enum.StrEnum):
    """What a caller may do: admin everything; developer its own sessions; viewer read-only."""

    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


@attrs.frozen
class Principal:
    """The caller of a request: the key it authenticated with and that key's role."""

    key_id: str
    role: Role

    def can_write(self) -> bool:
        """Whether this caller may change anything at all."""
        return self.role is not Role.VIEWER

    def owns(self, owner: str) -> bool:
        """Whether this caller may act on a resource owned by ``owner``."""
        return self.role is Role.ADMIN or (self.role is Role.DEVELOPER and owner == self.key_id)


def new_key() -> tuple[str, str, str]:
    """A fresh key: ``(key_id, secret, full key)``."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    return key_id, secret, f"vk_{key_id}_{secret}"


class AuthError(Exception):
    """A request's credentials are missing or wrong (401)."""


class Authenticator:
    """Checks API keys and bearer tokens against the store."""

    def __init__(
        self,
        store: Store,
        *,
        secret: bytes,
        token_ttl: float = 3600.0,
        key_cache_ttl: float = 1.0,
    ) -> None:
        from argon2 import PasswordHasher  # the server extra

        self._store = store
        self._secret = secret
        self._hasher = PasswordHasher()
        self._verified: dict[bytes, str] = {}
        self.token_ttl = token_ttl
        #: Seconds a key's record is reused before the store is asked again. Every request
        #: names its key, and the store's answer costs a worker-thread trip (most of a cheap
        #: request's server time); a key revoked here is forgotten at once, one revoked on
        #: another server of the same store is refused here within this many seconds.
        self.key_cache_ttl = key_cache_ttl
        self._records: dict[str, tuple[float, KeyRecord | None]] = {}

    def forget(self, key_id: str) -> None:
        """Drop what is cached of ``key_id`` (after revoking it)."""
        self._records.pop(key_id, None)

    async def _record(self, key_id: str) -> KeyRecord | None:
        now = trio.current_time()
        cached = self._records.get(key_id)
        if cached is not None and now - cached[0] < self.key_cache_ttl:
            return cached[1]
        record = await self._store.get_key(key_id)
        if record is not None:  # (unknown ids are not kept: a caller could fill the cache)
            if len(self._records) > 4096:
                self._records.clear()
            self._records[key_id] = (now, record)
        return record

    async def create_key(self, role: Role, name: str = "") -> tuple[KeyRecord, str]:
        """Store a new key; returns its record and the key (shown once)."""
        key_id, secret, full = new_key()
        digest = await trio.to_thread.run_sync(self._hasher.hash, secret)
        record = KeyRecord(key_id, name or key_id, str(role), digest, time.time())
        await self._store.add_key(record)
        return record, full

    async def check_key(self, key: str) -> Principal:
        """The principal of an API key.

        Raises:
            AuthError: a malformed, unknown, revoked or wrong key.
        """
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "vk":
            raise AuthError("malformed API key (expected vk_<id>_<secret>)")
        record = await self._record(parts[1])
        if record is None or record.revoked:
            raise AuthError("unknown or revoked API key")
        fingerprint = hashlib.sha256(key.encode()).digest()
        if self._verified.get(fingerprint) != record.id:
            # (imported here: a request with a key verified before imports nothing)
            from argon2.exceptions import VerificationError

            try:
                await trio.to_thread.run_sync(self._hasher.verify, record.hash, parts[2])
            except VerificationError:
                raise AuthError("wrong API key") from None
            self._verified[fingerprint] = record.id
        return Principal(record.id, Role(record.role))

    def mint_token(self, principal: Principal, ttl: float | None = None) -> tuple[str, float]:
        """A bearer token for ``principal``; returns it and its expiry (Unix time)."""
        import jwt

        expires = time.time() + (self.token_ttl if ttl is None else ttl)
        claims = {"sub": principal.key_id, "role": str(principal.role), "exp": int(expires)}
        return jwt.encode(claims, self._secret, algorithm="HS256"), float(int(expires))

    async def check_token(self, token: str) -> Principal:
        """The principal of a bearer token (its key must still be valid).

        Raises:
            AuthError: a bad signature, an expired token or a revoked key.
        """
        import jwt

        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the bearer token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid bearer token: {exc}") from None
        record = await self._record(str(claims["sub"]))
        if record is None or record.revoked:
            raise AuthError("the bearer token's key is unknown or revoked")
        return Principal(record.id, Role(record.role))


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> float:
        """Take one request's token for ``key``; returns 0, or the seconds until one is free."""
        if math.isinf(self.rate):
            return 0.0
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate
