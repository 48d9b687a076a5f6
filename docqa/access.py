"""Who may use the service: API keys, principals, rate limits and the loopback rule. No HTTP here.

`DOCQA_API_KEYS` lists `NAME:KEY` or `NAME:sha256:<hex>` entries, comma-separated. A key's NAME is
its principal: the principal of every document, session and batch created with it. Keys are kept in
memory only as sha256 digests and a presented key is compared with every configured digest in
constant time (`hmac.compare_digest`, no early exit), so neither the match nor its position leaks
through timing. Several keys may share a NAME (rotating a key without losing the data).

With no keys configured the service is in loopback mode: everyone is the principal "" and
`docqa serve` binds only to a loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass

LOOPBACK_PRINCIPAL = ""
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # fits the 64-character principal column
HASH_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")
RATE_UNITS = ("second", "minute", "hour", "day")


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKey:
    principal: str
    digest: bytes  # sha256 of the key; the key itself is never kept


def parse_api_keys(spec: str | None) -> list[ApiKey]:
    """`NAME:KEY` or `NAME:sha256:<64 hex>` entries, comma-separated; ValueError with a sentence otherwise."""
    keys: list[ApiKey] = []
    seen: dict[bytes, str] = {}
    for n, raw in enumerate((spec or "").split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, secret = entry.partition(":")
        name, secret = name.strip(), secret.strip()
        if not sep or not secret:
            raise ValueError(f"DOCQA_API_KEYS entry {n} is not NAME:KEY or NAME:sha256:<hex>.")
        if not NAME_PATTERN.match(name):
            raise ValueError(
                f"DOCQA_API_KEYS entry {n}: the name {name!r} must be 1 to 64 letters, digits, '.', '_', '@' or '-'."
            )
        if secret.lower().startswith("sha256:"):
            hexdigest = secret[len("sha256:"):].strip()
            if not HASH_PATTERN.match(hexdigest):
                raise ValueError(f"DOCQA_API_KEYS entry {n} ({name}): a pre-hashed key is sha256: and 64 hex digits.")
            digest = bytes.fromhex(hexdigest)
        else:
            digest = key_digest(secret)
        if digest in seen and seen[digest] != name:
            raise ValueError(f"DOCQA_API_KEYS gives the same key to {seen[digest]!r} and {name!r}.")
        seen[digest] = name
        keys.append(ApiKey(name, digest))
    return keys


class KeyRing:
    """The configured keys as digests; `principal_for` finds whose a presented key is, in constant time."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = tuple(keys)

    @classmethod
    def from_spec(cls, spec: str | None) -> KeyRing:
        return cls(parse_api_keys(spec))

    @property
    def enabled(self) -> bool:
        """False in loopback mode (no keys configured)."""
        return bool(self._keys)

    @property
    def principals(self) -> list[str]:
        return sorted({k.principal for k in self._keys})

    def hashed_spec(self) -> str:
        """The keys as `NAME:sha256:<hex>` entries: what may stay in memory in place of the plain keys."""
        return ",".join(f"{k.principal}:sha256:{k.digest.hex()}" for k in self._keys)

    def principal_for(self, key: str | None) -> str | None:
        """The principal owning `key`, or None. Every configured digest is compared, whatever matches first."""
        if not self._keys:
            return LOOPBACK_PRINCIPAL
        digest = key_digest(key or "")
        found: str | None = None
        for k in self._keys:
            if hmac.compare_digest(digest, k.digest) and found is None:
                found = k.principal
        return found if key else None


def key_from_headers(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key sent as `X-API-Key: KEY` or `Authorization: Bearer KEY` (X-API-Key first)."""
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


# -- rate limits ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    count: int
    unit: str  # second | minute | hour | day

    def __str__(self) -> str:
        return f"{self.count} per {self.unit}"


def parse_rate(spec: str | None) -> Rate | None:
    """`N/unit` (second, minute, hour, day) or "0" (no limit) → Rate or None; ValueError otherwise."""
    text = (spec or "").strip().lower()
    if text in ("", "0", "off", "none"):
        return None
    match = re.fullmatch(r"(\d+)\s*/\s*([a-z]+?)s?", text)
    if not match or match.group(2) not in RATE_UNITS:
        raise ValueError(f"A rate is N/second, N/minute, N/hour or N/day (or 0 for no limit); got {spec!r}.")
    count = int(match.group(1))
    return Rate(count, match.group(2)) if count > 0 else None


# -- binding -------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for anything else (0.0.0.0, a name, a LAN address)."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
