"""
Tests for what the daemon does with clients that misbehave: request
bodies over C{--max-body-size}, header and request lines over Twisted's
limits, malformed requests, C{HEAD}, resources that render something
other than bytes, failing WSGI applications and failed TLS handshakes.
They run the daemon's service in this process over real TLS on
127.0.0.1, with raw requests written by hand.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.web.resource import Resource

from attestd._web import HSTS, HTTPChannel

# The fixture is used by name (usefixtures), so it is imported here.
from .test_tls import tls11_client_works  # noqa: F401
from .test_web import _wait_for, get, start

#: Socket timeout of the raw clients: a server that does not answer
#: fails the test instead of hanging it.
PATIENCE = 10.0


class _Sink(Resource):
    """
    An application that counts the body bytes of the POSTs it is given.

    @ivar bodies: The length of each body received.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[int] = []

    def render_GET(self, request: Any) -> bytes:
        return b"get\n"

    def render_POST(self, request: Any) -> bytes:
        size = len(request.content.read())
        self.bodies.append(size)
        return b"%d\n" % (size,)


class _Text(Resource):
    """
    An application that wrongly renders a str.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> str:
        return "a secret value rendered as str"


def _failing_body(
    environ: dict[str, Any], start_response: Any
) -> Iterator[bytes]:
    """
    A WSGI application that starts its response, then fails before its
    first body byte.
    """
    start_response("200 OK", [("Content-Type", "text/plain")])
    msg = "secret detail of the late failure"
    raise RuntimeError(msg)
    yield b"never"


def _failing_late(
    environ: dict[str, Any], start_response: Any
) -> Iterator[bytes]:
    """
    A WSGI application that fails after its first body bytes.
    """
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial"
    msg = "secret detail of the late failure"
    raise RuntimeError(msg)


SINK = _Sink()
TEXT = _Text()


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """
    Every log event emitted during the test.
    """
    captured: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(captured.append)
    yield captured
    globalLogPublisher.removeObserver(captured.append)


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _read_to_end(tls: ssl.SSLSocket) -> bytes:
    """
    What the server sends until it closes (TLS close_notify or TCP).
    """
    received = b""
    while True:
        try:
            chunk = tls.recv(65536)
        except (ssl.SSLError, ConnectionResetError):
            break
        if not chunk:
            break
        received += chunk
    return received


def exchange(port: int, data: bytes) -> bytes:
    """
    Send raw bytes over TLS and read until the server closes (blocking;
    run it in a thread).

    @return: Everything the server sent.
    """
    with (
        socket.create_connection(("127.0.0.1", port), PATIENCE) as raw,
        _context().wrap_socket(raw) as tls,
    ):
        tls.sendall(data)
        return _read_to_end(tls)


def exchange_and_hold(port: int, data: bytes) -> tuple[bytes, socket.socket]:
    """
    Like L{exchange}, but leave the TCP connection open on the client's
    side after the server's TLS close.

    @return: What the server sent, and the TCP socket to close.
    """
    raw = socket.create_connection(("127.0.0.1", port), PATIENCE)
    tls = _context().wrap_socket(raw)
    tls.sendall(data)
    return _read_to_end(tls), tls


def raw_exchange(port: int, data: bytes, *, read: bool = True) -> bytes:
    """
    Send bytes over plain TCP (no TLS), then read until the server
    closes, or close at once if C{read} is false.
    """
    with socket.create_connection(("127.0.0.1", port), PATIENCE) as raw:
        if data:
            raw.sendall(data)
        received = b""
        if not read:
            return received
        try:
            while chunk := raw.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """
    The status, headers (lower-case names) and body of one response.
    """
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def refusals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    The refused-request events among C{events}.
    """
    return [
        e
        for e in events
        if e.get("log_namespace") == "attestd.web" and "status" in e
    ]


class TestBodyLimit:
    @pytest_twisted.ensureDeferred
    async def test_declared_length_refused_before_body(
        self, events: list[dict[str, Any]]
    ) -> None:
        """
        A Content-Length over --max-body-size is answered 413 as soon as
        the headers arrive, with no 100 Continue, and the connection is
        closed without waiting for the body; the application never runs
        and one warning names the client, the request and the sizes.
        """
        SINK.bodies.clear()
        service, port = start(
            "--app",
            "tests.test_daemon_hardening:SINK",
            "--max-body-size",
            "1K",
        )
        try:
            response = await deferToThread(
                exchange,
                port,
                b"POST /upload?x=1 HTTP/1.1\r\nHost: a\r\n"
                b"Content-Length: 209715200\r\n"
                b"Expect: 100-continue\r\n\r\n",
            )
        finally:
            await service.stopService()
        status, headers, body = parse_response(response)
        assert (413, b"413 Content Too Large\n") == (status, body)
        assert "close" == headers["connection"]
        assert HSTS.decode() == headers["strict-transport-security"]
        assert b"100 Continue" not in response
        assert [] == SINK.bodies
        (event,) = refusals(events)
        assert {
            "log_level": LogLevel.warn,
            "client": "127.0.0.1",
            "method": "POST",
            "path": "/upload",
            "status": 413,
            "reason": "request body larger than 1024 bytes",
            "max_body_size": 1024,
            "body_bytes": 209715200,
            "chunked": False,
        }.items() <= event.items()
        assert (
            'Refused a request from 127.0.0.1 ("POST /upload") with 413: '
            "request body larger than 1024 bytes"
        ) == formatEvent(event)

    @pytest_twisted.ensureDeferred
    async def test_chunked_refused_once_over(
        self, events: list[dict[str, Any]]
    ) -> None:
        """
        A chunked body is refused with 413 as soon as what arrived is over
        the limit, before it ends; the application never runs.
        """
        SINK.bodies.clear()
        service, port = start(
            "--app",
            "tests.test_daemon_hardening:SINK",
            "--max-body-size",
            "1K",
        )
        chunk = b"200\r\n" + b"a" * 0x200 + b"\r\n"
        try:
            response = await deferToThread(
                exchange,
                port,
                b"POST / HTTP/1.1\r\nHost: a\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3,
            )
        finally:
            await service.stopService()
        assert 413 == parse_response(response)[0]
        assert [] == SINK.bodies
        (event,) = refusals(events)
        assert (413, 1536, True) == (
            event["status"],
            event["body_bytes"],
            event["chunked"],
        )

    @pytest.mark.parametrize(
        ("limit", "size", "chunked", "status"),
        [
            ("1K", 1024, False, 200),
            ("1K", 1024, True, 200),
            ("1K", 1025, False, 413),
            ("1K", 1025, True, 413),
            ("0", 0, False, 200),
            ("0", 1, False, 413),
            ("0", 1, True, 413),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_limit_is_inclusive(
        self, limit: str, size: int, chunked: bool, status: int
    ) -> None:
        """
        A body of exactly --max-body-size bytes reaches the application,
        one byte more is refused; a limit of 0 refuses every body but an
        empty one.
        """
        SINK.bodies.clear()
        service, port = start(
            "--app",
            "tests.test_daemon_hardening:SINK",
            "--max-body-size",
            limit,
        )
        body = b"b" * size
        if chunked:
            framing = b"Transfer-Encoding: chunked\r\n"
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (size, body)
        else:
            framing = b"Content-Length: %d\r\n" % (size,)
        try:
            response = await deferToThread(
                exchange,
                port,
                b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                + framing
                + b"\r\n"
                + body,
            )
        finally:
            await service.stopService()
        assert status == parse_response(response)[0]
        assert ([size] if status == 200 else []) == SINK.bodies

    @pytest_twisted.ensureDeferred
    async def test_default_limit(self) -> None:
        """
        Without --max-body-size, a declared body over 1 MiB is refused.
        """
        service, port = start()
        try:
            response = await deferToThread(
                exchange,
                port,
                b"POST /healthz HTTP/1.1\r\nHost: a\r\n"
                b"Content-Length: 1048577\r\n\r\n",
            )
        finally:
            await service.stopService()
        assert 413 == parse_response(response)[0]


class TestHeaderLimits:
    @pytest.mark.parametrize(
        ("request_bytes", "status", "reason", "method"),
        [
            (
                b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 20000,
                431,
                "header line longer than 16384 bytes",
                "GET",
            ),
            (
                b"GET /" + b"a" * 20000,
                414,
                "request line longer than 16384 bytes",
                "-",
            ),
            (
                b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 600 + b"\r\n",
                431,
                "more than 500 header lines",
                "GET",
            ),
            (
                b"GET / HTTP/1.1\r\n"
                + b"X-A: "
                + b"b" * 6000
                + b"\r\n"
                + b"X-B: "
                + b"b" * 6000
                + b"\r\n"
                + b"X-C: "
                + b"b" * 6000
                + b"\r\n\r\n",
                431,
                "request headers larger than 16384 bytes in all",
                "GET",
            ),
            (
                b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
                400,
                "malformed request",
                "GET",
            ),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_answered_and_logged(
        self,
        events: list[dict[str, Any]],
        request_bytes: bytes,
        status: int,
        reason: str,
        method: str,
    ) -> None:
        """
        A header or request line over 16 KiB, too many or too large
        headers, and a malformed header each get a plain error answer
        and one warning saying why.
        """
        service, port = start()
        try:
            response = await deferToThread(exchange, port, request_bytes)
        finally:
            await service.stopService()
        got, headers, body = parse_response(response)
        assert status == got
        assert body.startswith(b"%d " % (status,))
        assert "close" == headers["connection"]
        (event,) = refusals(events)
        assert (status, reason, method) == (
            event["status"],
            event["reason"],
            event["method"],
        )

    @pytest_twisted.ensureDeferred
    async def test_closed_promptly(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        After answering an over-long header line the daemon closes the
        connection itself, even if the client keeps it open, instead of
        waiting for the idle timeout.
        """
        monkeypatch.setattr(HTTPChannel, "linger", 0.1)
        service, port = start()
        held = None
        try:
            response, held = await deferToThread(
                exchange_and_hold,
                port,
                b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 20000,
            )
            assert 431 == parse_response(response)[0]
            await _wait_for(lambda: service.site.open_channels == 0)
        finally:
            if held is not None:
                held.close()
            await service.stopService()


class TestHead:
    @pytest.mark.parametrize(
        "path", ["/healthz", "/readyz", "/", "/.well-known/attestation"]
    )
    @pytest_twisted.ensureDeferred
    async def test_built_in(
        self, events: list[dict[str, Any]], path: str
    ) -> None:
        """
        HEAD on attestd's own paths answers the GET's status and length
        without a body, and without Twisted's complaint about a body.
        """
        service, port = start()
        try:
            full = await get(port, path)
            response = await deferToThread(
                exchange,
                port,
                b"HEAD %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                % (path.encode(),),
            )
        finally:
            await service.stopService()
        status, headers, body = parse_response(response)
        assert (full["status"], str(len(full["body"])), b"") == (
            status,
            headers["content-length"],
            body,
        )
        assert not [e for e in events if "HEAD request" in e["log_format"]]


class TestRenderChecks:
    @pytest.mark.parametrize("method", [b"GET", b"HEAD"])
    @pytest_twisted.ensureDeferred
    async def test_str_body(
        self, events: list[dict[str, Any]], method: bytes
    ) -> None:
        """
        A resource rendering a str gets a plain 500, not Twisted's page
        showing the request, the resource and the value; one error event
        names the resource's class and the type, never the value.
        """
        service, port = start("--app", "tests.test_daemon_hardening:TEXT")
        try:
            response = await deferToThread(
                exchange,
                port,
                method
                + b" / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            )
        finally:
            await service.stopService()
        status, headers, body = parse_response(response)
        assert 500 == status
        assert "26" == headers["content-length"]
        assert (
            b"" if method == b"HEAD" else b"500 Internal Server Error\n"
        ) == (body)
        ours = [e for e in events if e["log_namespace"] == "attestd.web"]
        (event,) = ours
        assert (
            "tests.test_daemon_hardening._Text",
            "str",
        ) == (event["resource_class"], event["returned_type"])
        for e in events:
            assert "secret value" not in formatEvent(e)
            assert "secret value" not in json.dumps(
                {k: str(v) for k, v in e.items()}
            )

    @pytest_twisted.ensureDeferred
    async def test_wsgi_failure_before_body(
        self, events: list[dict[str, Any]]
    ) -> None:
        """
        A WSGI application failing after start_response but before its
        first body byte gets a plain 500, logged once on attestd.web.
        """
        service, port = start(
            "--wsgi", "tests.test_daemon_hardening:_failing_body"
        )
        try:
            response = await get(port, "/x")
        finally:
            await service.stopService()
        assert (500, b"500 Internal Server Error\n") == (
            response["status"],
            response["body"],
        )
        failures = [e for e in events if "log_failure" in e]
        assert ["attestd.web"] == [e["log_namespace"] for e in failures]
        assert ("GET", "/x") == (failures[0]["method"], failures[0]["path"])

    @pytest_twisted.ensureDeferred
    async def test_wsgi_failure_after_body(
        self, events: list[dict[str, Any]]
    ) -> None:
        """
        A WSGI application failing after its body began has its connection
        cut, so the client cannot take the response for a whole one;
        Twisted logs it, under its own namespace.
        """
        service, port = start(
            "--wsgi", "tests.test_daemon_hardening:_failing_late"
        )
        try:
            with pytest.raises((OSError, http.client.HTTPException)):
                await get(port, "/")
        finally:
            await service.stopService()
        failures = [e for e in events if "log_failure" in e]
        assert [
            ("twisted.web.wsgi._WSGIResponse", "WSGI application error")
        ] == [(e["log_namespace"], e["log_format"]) for e in failures]


def _tls11_hello(port: int) -> None:
    """
    Try a TLS 1.1 handshake, which the daemon refuses.
    """
    context = _context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port), PATIENCE) as raw,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(raw)


class TestHandshakeEvents:
    @pytest.mark.parametrize(
        ("data", "read", "reason"),
        [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True, "http request"),
            (b"\x00garbage" * 10, True, "wrong version number"),
            (
                # The start of a ClientHello, then the client closes.
                b"\x16\x03\x01\x00\x50\x01",
                False,
                "the client closed the connection before the handshake "
                "completed",
            ),
            (
                b"",
                False,
                "the client closed the connection before the handshake "
                "completed",
            ),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_not_tls(
        self,
        events: list[dict[str, Any]],
        data: bytes,
        read: bool,
        reason: str,
    ) -> None:
        """
        Plain HTTP, garbage and a handshake the client abandons each give
        one info event on attestd.tls with the client and a short reason,
        and no traceback.
        """
        service, port = start()
        try:
            await deferToThread(raw_exchange, port, data, read=read)
            await _wait_for(
                lambda: [
                    e for e in events if e["log_namespace"] == "attestd.tls"
                ]
            )
        finally:
            await service.stopService()
        (event,) = [e for e in events if e["log_namespace"] == "attestd.tls"]
        assert ("127.0.0.1", reason) == (event["client"], event["reason"])
        assert "info" == event["log_level"].name
        assert "log_failure" not in event
        assert f"TLS handshake with 127.0.0.1 failed: {reason}" == formatEvent(
            event
        )

    @pytest.mark.usefixtures("tls11_client_works")
    @pytest_twisted.ensureDeferred
    async def test_old_tls(self, events: list[dict[str, Any]]) -> None:
        """
        A TLS 1.1 client is refused, and the event says the protocol is
        not supported.
        """
        service, port = start()
        try:
            await deferToThread(_tls11_hello, port)
            await _wait_for(
                lambda: [
                    e for e in events if e["log_namespace"] == "attestd.tls"
                ]
            )
        finally:
            await service.stopService()
        (event,) = [e for e in events if e["log_namespace"] == "attestd.tls"]
        assert "unsupported protocol" == event["reason"]

    @pytest_twisted.ensureDeferred
    async def test_idle_timeout(self, events: list[dict[str, Any]]) -> None:
        """
        A client that connects and sends nothing is closed at the idle
        timeout, with one event saying there was no handshake.
        """
        service, port = start()
        service.site.timeOut = 0.2
        try:
            await deferToThread(raw_exchange, port, b"")
            await _wait_for(
                lambda: [
                    e for e in events if e["log_namespace"] == "attestd.tls"
                ]
            )
        finally:
            await service.stopService()
        (event,) = [e for e in events if e["log_namespace"] == "attestd.tls"]
        assert "no TLS handshake before the idle timeout" == event["reason"]

    @pytest_twisted.ensureDeferred
    async def test_good_handshake_silent(
        self, events: list[dict[str, Any]]
    ) -> None:
        """
        A completed handshake gives no attestd.tls event.
        """
        service, port = start()
        try:
            await get(port, "/healthz")
        finally:
            await service.stopService()
        assert not [e for e in events if e["log_namespace"] == "attestd.tls"]
