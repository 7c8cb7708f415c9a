"""One webhook request: its signature, the address guard, the HTTP call. No database.

Signatures follow Standard Webhooks (standardwebhooks.com), so receivers can use its
libraries or a few lines of their own:

    webhook-id:        msg_<32 hex>   the same on every attempt of one delivery
    webhook-timestamp: <unix seconds> when this attempt was signed
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>

where `key` is the endpoint's secret `whsec_<base64>` with the prefix dropped and the
rest base64-decoded. A receiver recomputes it over the raw body, compares in constant
time, refuses a timestamp more than 5 minutes from its clock (a replayed request is
signed for another time), and drops a `webhook-id` it has already processed.

The guard: a URL whose host is, or resolves to, a loopback, private, link-local,
shared or reserved address is refused unless settings.WEBHOOK_ALLOW_PRIVATE_URLS
(default off; tests and self-hosters with receivers on their own network turn it on).
The request goes to the address that was checked (Host header and TLS SNI keep the
name), so a DNS answer that changes between check and connect cannot redirect it, and
redirects are never followed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from config.api_errors import InvalidInput

SECRET_PREFIX = "whsec_"
USER_AGENT = "hitl-review-webhooks/1"
# Of the answer only this much is read (for the log); the rest is never waited for.
RESPONSE_EXCERPT_BYTES = 512
MAX_URL_CHARS = 2000


def webhook_secret_new() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# --- The address guard ----------------------------------------------------------------

_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".home.arpa")


# IPv6 ranges that carry an IPv4 address to somewhere else: the IPv4-compatible form,
# NAT64 (well-known and local-use) prefixes. Python counts some of them as global, while
# the packet may end at 127.0.0.1 or a private address behind a translator.
_IPV4_CARRIERS = tuple(ipaddress.ip_network(n) for n in ("::/96", "64:ff9b::/96", "64:ff9b:1::/48"))


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if any(address in carrier for carrier in _IPV4_CARRIERS):
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
        if not all(_public(v4) for v4 in embedded if v4 is not None):
            return False
    return address.is_global and not address.is_multicast


def webhook_url_check(url: str, *, allow_private: bool) -> None:
    """At registration: the URL's shape, and a host that is plainly not public (an
    address literal, a local name). Names are resolved at send time, not here: a
    request never waits on DNS. Raises InvalidInput naming `url`."""
    def refuse(message: str) -> None:
        raise InvalidInput(f"url: {message}", fields={"url": [message]})

    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        refuse(f"At most {MAX_URL_CHARS} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        refuse("Not a valid URL.")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        refuse("An http:// or https:// URL with a host.")
    if parts.username or parts.password:
        refuse("Credentials do not belong in the URL (it is shown in logs); authenticate the signature instead.")
    if port == 0:
        refuse("Not a valid port.")
    if allow_private:
        return
    host = parts.hostname.rstrip(".").lower()
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if (literal is not None and not _public(literal)) or host == "localhost" or host.endswith(_LOCAL_NAMES):
        refuse("A private, loopback or local address; set WEBHOOK_ALLOW_PRIVATE_URLS to allow receivers on your own network.")


class AddressRefused(Exception):
    pass


def _resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to: the first the name resolves to, once every address it
    resolves to has passed the guard (one private answer refuses them all)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise AddressRefused(f"{host} resolves to no address")
    if not allow_private:
        private = [str(a) for a in addresses if not _public(a)]
        if private:
            raise AddressRefused(f"refused: {host} resolves to a private address ({private[0]})")
    return str(addresses[0])


# --- The request ----------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status_code: int | None
    error: str
    duration_ms: int


async def _exchange(target: str, *, body: bytes, headers: dict, extensions: dict, timeout: float) -> tuple[int, bytes]:
    """The request and the start of the answer: (status, up to RESPONSE_EXCERPT_BYTES)."""
    # A client per attempt: nothing pooled outlives it, and no environment proxy
    # (trust_env=False) can route a receiver's traffic somewhere else.
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False) as client:
        async with client.stream("POST", target, content=body, headers=headers, extensions=extensions) as response:
            excerpt = b""
            async for chunk in response.aiter_raw():
                excerpt += chunk
                if len(excerpt) >= RESPONSE_EXCERPT_BYTES:
                    break
            return response.status_code, excerpt


def webhook_post(*, url: str, secret: str, msg_id: str, body: bytes, timeout: float, allow_private: bool) -> Attempt:
    """POST one signed delivery. Never raises: the outcome says what happened. Only a 2xx
    answer succeeds; anything else, an unreachable host, a timeout (the whole attempt,
    and each connect, send or read in it, is bounded by `timeout`), a refused address, is
    a failed attempt, to be retried."""
    started = time.monotonic()

    def done(ok: bool, status_code: int | None, error: str) -> Attempt:
        return Attempt(ok=ok, status_code=status_code, error=error[:2000],
                       duration_ms=round((time.monotonic() - started) * 1000))

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = _resolve(host, port, allow_private=allow_private)
    except AddressRefused as exc:
        return done(False, None, str(exc))
    except OSError as exc:
        return done(False, None, f"DNS: {exc}")
    # The checked address, not the name, is what the connection goes to.
    netloc = f"[{address}]" if ":" in address else address
    if parts.port:
        netloc += f":{parts.port}"
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    timestamp = int(time.time())
    headers = {
        "Host": parts.netloc.rpartition("@")[2],
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_signature(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    try:
        # httpx's timeouts bound each read, so a receiver trickling a byte at a time would
        # hold a sender thread for ever: the whole attempt is bounded too, in an event
        # loop of its own, where cancelling it is reliable.
        status, excerpt = asyncio.run(asyncio.wait_for(
            _exchange(target, body=body, headers=headers, extensions=extensions, timeout=timeout), timeout))
    except (TimeoutError, httpx.TimeoutException) as exc:
        return done(False, None, f"timeout after {timeout:g} s ({type(exc).__name__})")
    except httpx.HTTPError as exc:
        return done(False, None, f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return done(True, status, "")
    text = excerpt[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace").strip()
    if 300 <= status < 400:
        return done(False, status, f"HTTP {status}: redirects are not followed")
    return done(False, status, f"HTTP {status}: {text}" if text else f"HTTP {status}")
