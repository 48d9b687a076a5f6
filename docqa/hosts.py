"""Which Host names the server answers, and which requests come from another web page. No HTTP here.

DNS rebinding: a web page on `http://evil.example:8000` can make its own name resolve to 127.0.0.1,
and the browser then lets it read what a loopback docqa answers, because to the browser it is the
page's own origin. The request still names the page's host in `Host`, so in loopback mode only
loopback names are answered. With API keys the key is what protects (a rebinding page has none), and
`DOCQA_ALLOWED_HOSTS` narrows the names further when set.

Cross-site requests: a page on another origin can still *send* a POST (a form, or `fetch` with
`mode: "no-cors"`) even though it cannot read the answer. Browsers say where a request comes from in
`Sec-Fetch-Site` (and `Origin`); a state-changing request that another site sent is refused. A request
carrying neither header is not from a browser page (curl, scripts, the CLI) and passes — the same rule
as Go's `net/http.CrossOriginProtection`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from docqa.access import is_loopback

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_HOST_PATTERN = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$|^\*$")


def parse_hosts(spec: str | None) -> tuple[str, ...]:
    """`DOCQA_ALLOWED_HOSTS`: host names, comma-separated (`*.example.com` for subdomains, `*` for any)."""
    hosts = []
    for raw in (spec or "").split(","):
        name = raw.strip().lower().rstrip(".")
        if not name:
            continue
        if not (_HOST_PATTERN.match(name) or is_ip_literal(name)):
            raise ValueError(f"DOCQA_ALLOWED_HOSTS: {raw.strip()!r} is not a host name (a name, an IP address, "
                             "*.example.com or *); give names without a port.")
        hosts.append(name)
    return tuple(hosts)


def is_ip_literal(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


_HOST_HEADER = re.compile(r"^(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9.-]+))(?::(?P<port>[0-9]{1,5}))?$")


def host_name(host_header: str) -> str | None:
    """The name of a Host header value, without its port or IPv6 brackets, lower case; None when the value is
    not `name[:port]` or `[ipv6][:port]` (RFC 9110's uri-host: no user info, no path, one port of digits), so
    `localhost:80@evil.example` names no host at all rather than `localhost`."""
    m = _HOST_HEADER.match(host_header.strip().lower())
    if m is None or (m.group("port") is not None and int(m.group("port")) > 65535):
        return None
    if m.group("ip6") is not None:
        return m.group("ip6") if is_ip_literal(m.group("ip6")) else None
    return m.group("name")


def host_allowed(host_header: str | None, keys_enabled: bool, allowed: tuple[str, ...]) -> bool:
    """Loopback names always; other names only with API keys, and then only those of `allowed` when set."""
    if not host_header:
        return False
    parsed = host_name(host_header)
    if not parsed:
        return False
    name = parsed.rstrip(".")
    if is_loopback(name):
        return True
    if not keys_enabled:
        return False
    if not allowed:
        return True
    return any(p == "*" or p == name or (p.startswith("*.") and name.endswith(p[1:])) for p in allowed)


def cross_site(method: str, sec_fetch_site: str | None, origin: str | None, host_header: str | None) -> str | None:
    """Why a state-changing request comes from another site's page, or None when it does not."""
    if method.upper() in SAFE_METHODS:
        return None
    if sec_fetch_site is not None:
        site = sec_fetch_site.strip().lower()
        return None if site in ("same-origin", "none") else f"Sec-Fetch-Site: {site}"
    if origin is None:
        return None  # not sent by a browser page
    if origin.strip().lower() == "null":
        return "Origin: null"
    netloc = urlsplit(origin.strip()).netloc.lower()
    if host_header and _same_netloc(netloc, host_header.strip().lower(), urlsplit(origin.strip()).scheme):
        return None
    return f"Origin: {origin.strip()[:100]}"


def _same_netloc(origin_netloc: str, host: str, scheme: str) -> bool:
    default = {"http": ":80", "https": ":443"}.get(scheme.lower(), "")
    def strip(v):
        return (v[: -len(default)] if default and v.endswith(default) else v)
    return strip(origin_netloc) == strip(host)
