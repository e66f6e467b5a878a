"""Private networks are refused by default (SSRF): a source, a redirect or a host
name that leads to loopback, RFC 1918, link-local … is refused before a byte is
sent, unless `[fetch] allow_private_networks = true`; configured archives are
trusted as configured.

Everything here runs on loopback, which is itself refused. To have a "public"
origin at all, some tests inject an address policy that calls exactly one
loopback address, PUBLIC_IP, public and judges every other address as fetcher
does (`make_client`'s `policy` argument, which exists for this). Requests are
counted on the servers' side: a refused target must see none.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from ipaddress import IPv4Address, ip_address
from typing import Any

import httpx
import pytest

from fetcher.run import pipeline
from fetcher.net.addresses import Address, refusal
from fetcher.core.config import FetchSettings, load_config
from fetcher.net.connect import GuardedBackend, GuardedTransport
from fetcher.net.client import make_client
from fetcher.core.models import Hop
from fetcher.core.sources import make_source
from fetcher.store.sqlite import Store
from tests.conftest import FakeClock, FakeSleep, Run, server_tls_context, write_config
from tests.fake_wayback import FakeWayback
from tests.origin import Origin, html, redirect

PUBLIC_IP = "127.0.0.77"  # the one loopback address the injected policy calls public
ARTICLE = "<html><body><article><h1>Internal notes</h1><p>{}</p></article></body></html>"
TEXT = "The staging credentials and the metadata of this instance are listed below. " * 6
HINT = "(refused; set [fetch] allow_private_networks = true to allow)"


def public_for_test(address: Address) -> str | None:
    """fetcher's policy, except that PUBLIC_IP counts as public (tests only)."""
    return None if address == IPv4Address(PUBLIC_IP) else refusal(address)


@pytest.fixture
def fake_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipelines built in this test use the test policy above."""
    monkeypatch.setattr(pipeline, "make_client", lambda settings: make_client(settings, policy=public_for_test))


@pytest.fixture
def secret() -> Any:
    """A private origin on 127.0.0.1 serving a page that must not leak."""
    with Origin("127.0.0.1") as server:
        server.route("/secret", html(ARTICLE.format(TEXT)))
        yield server


@pytest.fixture
def public() -> Any:
    with Origin(PUBLIC_IP) as server:
        yield server


def resolve_names(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> list[str]:
    """Make the given host names resolve to the given addresses (on top of the
    autouse loopback_only fixture); returns the names looked up, in order."""
    guarded = socket.getaddrinfo
    asked: list[str] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in names:
            return guarded(host, port, *args, **kwargs)
        asked.append(name)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0)))
            for address in names[name]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


def fetch(run: Any, url: str, allow: bool) -> Any:
    return run(allow_private_networks=allow).fetch(url)


# -- (a) a source on loopback ------------------------------------------------------


@pytest.mark.parametrize("allow", [False, True], ids=["default", "allowed"])
def test_a_source_on_loopback_is_refused_unless_allowed(run, secret, allow):
    snapshot = fetch(run, secret.url("/secret"), allow)
    if allow:
        assert (snapshot.outcome, secret.hits("/secret")) == ("ok", 1)
        assert "staging credentials" in snapshot.text
        return
    assert snapshot.outcome == "private-address"
    assert snapshot.detail == f"127.0.0.1 is a loopback address {HINT}"
    assert snapshot.text is None and snapshot.attempts == 1  # not retried
    assert secret.requests == []  # refused before connecting


def test_every_loopback_address_is_refused_not_only_127_0_0_1(run):
    with Origin("127.0.0.9") as server:
        server.route("/p", html(ARTICLE.format(TEXT)))
        snapshot = fetch(run, server.url("/p"), allow=False)
    assert (snapshot.outcome, server.requests) == ("private-address", [])
    assert snapshot.detail.startswith("127.0.0.9 is a loopback address")


# -- (b) a public page that redirects to a private address ------------------------


@pytest.mark.parametrize("allow", [False, True], ids=["default", "allowed"])
def test_a_redirect_from_a_public_page_to_loopback_is_refused_unless_allowed(
    run, fake_public, public, secret, allow
):
    start = public.route("/moved", redirect(secret.url("/secret")))
    snapshot = fetch(run, start, allow)
    assert public.hits("/moved") == 1  # the public page itself is fetched either way
    if allow:
        assert (snapshot.outcome, secret.hits("/secret")) == ("ok", 1)
        return
    assert snapshot.outcome == "private-address"
    assert snapshot.redirects == (Hop(start, 301),)
    assert snapshot.final_url == secret.url("/secret")
    assert snapshot.detail == f"127.0.0.1 is a loopback address {HINT}"
    assert secret.requests == []


def test_the_test_policy_only_makes_one_address_public(run, fake_public, public):
    """The injected policy is no blanket pass: 127.0.0.1 is still refused under it,
    and PUBLIC_IP is refused by fetcher's own policy."""
    with Origin("127.0.0.1") as other:
        other.route("/p", html(ARTICLE.format(TEXT)))
        assert fetch(run, other.url("/p"), allow=False).outcome == "private-address"
        assert other.requests == []
    assert refusal(PUBLIC_IP) == "a loopback address"


# -- (c) a host name that resolves to a private address ---------------------------


@pytest.mark.parametrize("allow", [False, True], ids=["default", "allowed"])
def test_a_name_that_resolves_to_loopback_is_refused_unless_allowed(run, secret, monkeypatch, allow):
    asked = resolve_names(monkeypatch, {"rebind.example": ["127.0.0.1"]})
    snapshot = fetch(run, f"http://rebind.example:{secret.port}/secret", allow)
    assert "rebind.example" in asked  # the name really was resolved
    if allow:
        assert (snapshot.outcome, secret.hits("/secret")) == ("ok", 1)
        assert secret.requests[0].headers["Host"] == f"rebind.example:{secret.port}"  # the Host header keeps the name
        return
    assert snapshot.outcome == "private-address"
    assert snapshot.detail == f"rebind.example resolves to 127.0.0.1, a loopback address {HINT}"
    assert secret.requests == []


def test_a_name_with_one_private_address_among_public_ones_is_refused(run, fake_public, public, monkeypatch):
    public.route("/p", html(ARTICLE.format(TEXT)))
    resolve_names(monkeypatch, {"mixed.example": [PUBLIC_IP, "127.0.0.1"]})
    snapshot = fetch(run, f"http://mixed.example:{public.port}/p", allow=False)
    assert snapshot.outcome == "private-address"
    assert "mixed.example resolves to 127.0.0.1" in snapshot.detail
    assert public.requests == []


def test_each_connection_resolves_and_checks_again(tmp_path, fake_public, public, monkeypatch):
    """DNS rebinding: a name that answered a public address for one fetch and a
    private one for the next is refused on the next; no verdict is cached. (The
    private answer shares the public origin's port, where nothing listens on
    127.0.0.1: a connection attempt would be connect-refused, not private-address.)"""
    public.route("/p", html(ARTICLE.format(TEXT)))
    answers = iter([[PUBLIC_IP], ["127.0.0.1"]])
    guarded = socket.getaddrinfo

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if (host.decode() if isinstance(host, bytes) else host) != "rebind.example":
            return guarded(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port)) for a in next(answers)]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    config = load_config(write_config(tmp_path, allow_private_networks=False, robots="ignore"))  # one lookup a fetch
    store = Store(config.storage_dir)
    try:
        run = Run(config, store, FakeSleep())
        first = run.fetch(f"http://rebind.example:{public.port}/p")
        second = run.fetch(f"http://rebind.example:{public.port}/p")
    finally:
        store.close()
    assert (first.outcome, second.outcome) == ("ok", "private-address")
    assert public.hits("/p") == 1


# -- every request through the shared client, and other failures ------------------


def test_any_request_on_the_shared_client_is_checked(secret):
    """robots.txt and anything else sent through the client, not only Downloader.get."""

    async def go() -> BaseException:
        async with make_client(FetchSettings()) as client:
            with pytest.raises(httpx.ConnectError) as raised:
                await client.get(secret.url("/robots.txt"))
            return raised.value

    error = asyncio.run(go())
    assert "127.0.0.1 is a loopback address" in str(error)
    assert secret.requests == []


def test_failures_other_than_refusal_classify_as_before(run, fake_public, no_dns):
    """Through the guarded connection, a name that does not resolve is still
    dns-error and a closed port on a public address still connect-refused."""
    with socket.socket() as probe:
        probe.bind((PUBLIC_IP, 0))
        closed_port = probe.getsockname()[1]
    assert fetch(run, "http://gone.invalid/p", allow=False).outcome == "dns-error"
    assert fetch(run, f"http://{PUBLIC_IP}:{closed_port}/p", allow=False).outcome == "connect-refused"


# -- (e) configured archives are trusted ------------------------------------------


@pytest.fixture
def archive_world(tmp_path):
    clock = FakeClock()
    with FakeWayback("127.0.0.1", clock=clock.monotonic) as wayback:
        archive = {**wayback.settings, "requests_per_minute": 6000}
        config = load_config(write_config(tmp_path, archive=archive, retries=0, allow_private_networks=False))
        store = Store(config.storage_dir)
        try:
            yield clock, wayback, config, store
        finally:
            store.close()


def fetch_with(clock: FakeClock, config: Any, store: Store, url: str) -> Any:
    async def go() -> Any:
        async with clock.pipeline(config, store) as line:
            return await line.fetch(make_source(url))

    return asyncio.run(go())


def test_a_configured_archive_on_loopback_works_with_the_default(archive_world, secret):
    """The live page is refused (private-address, which an archive may stand in
    for) and the archive on 127.0.0.1 — configured, so trusted — serves the copy."""
    clock, wayback, config, store = archive_world
    url = secret.url("/secret")
    wayback.add(url, "20250101000000", ARTICLE.format("An archived public copy of the page. " * 8).encode())
    snapshot = fetch_with(clock, config, store, url)
    assert (snapshot.origin, snapshot.outcome, snapshot.live_outcome) == ("archive", "ok", "private-address")
    assert "archived public copy" in snapshot.text
    assert (wayback.count("cdx"), wayback.count("replay")) == (1, 1)
    assert secret.requests == []


def test_a_public_page_redirecting_to_the_archive_host_is_refused(archive_world, fake_public, public):
    """Trust belongs to requests that start at a configured archive endpoint;
    a public page cannot borrow it by redirecting there."""
    clock, wayback, config, store = archive_world
    start = public.route("/to-archive", redirect(f"{wayback.base}/web/20250101000000id_/http://example.org/"))
    snapshot = fetch_with(clock, config, store, start)
    assert snapshot.live_outcome == "private-address"
    assert wayback.count("replay") == 0


# -- TLS keeps the host name ------------------------------------------------------


def test_tls_uses_the_host_name_while_connecting_to_the_vetted_address(tmp_path, monkeypatch):
    """The connection goes to the address checked, and TLS is started with the URL's
    name: the server sees it as SNI and the certificate is verified against it."""
    server_side, cert = server_tls_context(tmp_path, "secure.example", "DNS:secure.example")
    names: list[str | None] = []
    server_side.sni_callback = lambda sock, name, context: names.append(name)
    listener = socket.create_server((PUBLIC_IP, 0))
    port = listener.getsockname()[1]

    def serve_one() -> None:
        connection, _ = listener.accept()
        with server_side.wrap_socket(connection, server_side=True) as tls:
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    resolve_names(monkeypatch, {"secure.example": [PUBLIC_IP]})
    client_side = ssl.create_default_context(cafile=str(cert))
    limits = httpx.Limits(max_connections=1)

    async def go() -> httpx.Response:
        transport = GuardedTransport(GuardedBackend(public_for_test), client_side, limits)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.get(f"https://secure.example:{port}/")

    try:
        response = asyncio.run(go())
    finally:
        thread.join(5)
        listener.close()
    assert (response.status_code, response.text, names) == (200, "ok", ["secure.example"])


# -- (f) the address policy -------------------------------------------------------

REFUSED = {
    # IPv4
    "127.0.0.1": "a loopback address",
    "127.255.255.254": "a loopback address",
    "10.1.2.3": "a private (RFC 1918) address",
    "172.16.0.1": "a private (RFC 1918) address",
    "172.31.255.255": "a private (RFC 1918) address",
    "192.168.1.1": "a private (RFC 1918) address",
    "169.254.169.254": "a link-local address",
    "100.64.0.1": "a shared (CGNAT) address",
    "100.127.255.254": "a shared (CGNAT) address",
    "224.0.0.251": "a multicast address",
    "239.255.255.250": "a multicast address",
    "0.0.0.0": "an unspecified address",
    "0.1.2.3": "an unspecified address",
    "240.0.0.1": "a reserved address",
    "255.255.255.255": "a reserved address",
    "192.0.2.10": "a reserved address",  # documentation
    "198.18.0.1": "a reserved address",  # benchmarking
    "192.0.0.1": "a reserved address",  # IETF protocol assignments
    # IPv6
    "::1": "a loopback address",
    "::": "an unspecified address",
    "fc00::1": "a private (unique local) address",
    "fd12:3456:789a::1": "a private (unique local) address",
    "fe80::1": "a link-local address",
    "fe80::1%eth0": "a link-local address",
    "fec0::1": "a site-local address",
    "ff02::1": "a multicast address",
    "2001:db8::1": "a reserved address",
    "::127.0.0.1": "a reserved address",  # deprecated IPv4-compatible form
    "100::1": "a reserved address",  # discard-only
    "2001::1": "a Teredo tunnel address",
    # IPv4 inside IPv6
    "::ffff:127.0.0.1": "the IPv4-mapped form of 127.0.0.1, a loopback address",
    "::ffff:169.254.169.254": "the IPv4-mapped form of 169.254.169.254, a link-local address",
    "::ffff:10.0.0.1": "the IPv4-mapped form of 10.0.0.1, a private (RFC 1918) address",
    "2002:7f00:1::": "the 6to4 form of 127.0.0.1, a loopback address",
    "2002:a9fe:a9fe::1": "the 6to4 form of 169.254.169.254, a link-local address",
    "2002:c0a8:101::": "the 6to4 form of 192.168.1.1, a private (RFC 1918) address",
    "64:ff9b::7f00:1": "the NAT64 form of 127.0.0.1, a loopback address",
    "64:ff9b::a9fe:a9fe": "the NAT64 form of 169.254.169.254, a link-local address",
    "64:ff9b:1::a00:1": "the NAT64 form of 10.0.0.1, a private (RFC 1918) address",
    "64:ff9b:1:2::1": "a local-use NAT64 address",
}
ALLOWED = [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
    "169.253.255.255", "2606:4700::1", "2a00:1450:4001::200e", "2001:4860:4860::8888",
    "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808", "64:ff9b:1::101:101",
]


@pytest.mark.parametrize("address, reason", sorted(REFUSED.items()))
def test_policy_refuses(address, reason):
    assert refusal(address) == reason
    assert refusal(ip_address(address)) == reason


@pytest.mark.parametrize("address", ALLOWED)
def test_policy_allows_public_addresses(address):
    assert refusal(address) is None
