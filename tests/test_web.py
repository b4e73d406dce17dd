"""
Tests for the daemon's web side and service (C{attestd._web},
C{attestd.tap}), run in-process over real TLS on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from attestd._tls import ServerIdentity, load_certificate, read_evidence
from attestd._web import HSTS, AttestationResource, attestation_document
from attestd.errors import ConfigurationError
from attestd.tap import (
    AttestdService,
    Listener,
    Options,
    build_service,
    check_options,
    log_start,
    parse_listener,
    parse_seconds,
    parse_size,
)

from ._vectors import (
    CCC_DER,
    CCC_DICE_QUOTE,
    KONVERA_DER,
    KONVERA_KEY_PEM,
    KONVERA_QUOTE,
    KONVERA_TRUSTED_PEM,
    expected,
)


class _Echo(Resource):
    """
    An application that shows the path it was given.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return json.dumps(
            {
                "path": request.path.decode(),
                "prepath": [p.decode() for p in request.prepath],
                "postpath": [p.decode() for p in request.postpath],
            }
        ).encode()


class _Failing(Resource):
    """
    An application that fails while rendering.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        msg = "secret detail of the failure"
        raise RuntimeError(msg)


class _Gate(Resource):
    """
    An application whose responses wait until the test finishes them.

    @ivar pending: The requests waiting.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Any] = []

    def render_GET(self, request: Any) -> object:
        self.pending.append(request)
        return NOT_DONE_YET


ECHO = _Echo()
FAILING = _Failing()
GATE = _Gate()


def echo_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """
    A WSGI application that shows its environment.
    """
    start_response("200 OK", [("Content-Type", "application/json")])
    body = {
        "script_name": environ["SCRIPT_NAME"],
        "path_info": environ["PATH_INFO"],
        "url_scheme": environ["wsgi.url_scheme"],
        "thread": threading.current_thread().name,
    }
    return [json.dumps(body).encode()]


def failing_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """
    A WSGI application that fails.
    """
    msg = "secret detail of the failure"
    raise RuntimeError(msg)


def https_get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """
    GET C{path} from 127.0.0.1:C{port} over TLS (blocking; run it in a
    thread), accepting any certificate.

    @return: C{status}, C{headers} (lower-case names), C{body} and the
        peer certificate C{der}.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=context, timeout=10
    )
    try:
        connection.request("GET", path, headers=headers or {})
        assert connection.sock is not None
        der = connection.sock.getpeercert(binary_form=True)
        response = connection.getresponse()
        body = response.read()
        return {
            "status": response.status,
            "headers": {k.lower(): v for k, v in response.getheaders()},
            "body": body,
            "der": der,
        }
    finally:
        connection.close()


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """
    Every log event emitted during the test.
    """
    captured: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(captured.append)
    yield captured
    globalLogPublisher.removeObserver(captured.append)


def _options(*args: str) -> Options:
    options = Options()
    options.parseOptions(
        [
            "--cert",
            str(KONVERA_TRUSTED_PEM),
            "--key",
            str(KONVERA_KEY_PEM),
            "--listen",
            "tcp:0:interface=127.0.0.1",
            *args,
        ]
    )
    return options


def start(*args: str) -> tuple[AttestdService, int]:
    """
    Start the daemon's service in this process with the real konvera
    certificate on a free port of 127.0.0.1.

    @return: The service and its port.
    """
    service = build_service(_options(*args), reactor)
    service.privilegedStartService()
    service.startService()
    return service, service.ports[0].getHost().port


async def get(port: int, path: str, **kw: Any) -> dict[str, Any]:
    """
    L{https_get} in a thread.
    """
    result: dict[str, Any] = await deferToThread(https_get, port, path, **kw)
    return result


class TestAttestationDocument:
    @pytest_twisted.ensureDeferred
    async def test_konvera(self) -> None:
        """
        /.well-known/attestation reports the konvera enclave's
        measurements, its quote and the served certificate's SHA-256.
        """
        want = expected()["konvera_gramine_legacy_cert"]
        service, port = start()
        try:
            response = await get(port, "/.well-known/attestation")
        finally:
            await service.stopService()
        assert 200 == response["status"]
        assert "application/json" == response["headers"]["content-type"]
        document = json.loads(response["body"])
        assert {
            "mrenclave": want["source_asserts"]["mrenclave"],
            "mrsigner": want["source_asserts"]["mrsigner"],
            "isv_prod_id": 0,
            "isv_svn": 0,
            "debug": False,
            "report_data": want["computed"]["sha256_spki_der"] + "00" * 32,
            "evidence": "legacy",
            "quote": base64.b64encode(KONVERA_QUOTE.read_bytes()).decode(),
            "certificate_sha256": hashlib.sha256(
                KONVERA_DER.read_bytes()
            ).hexdigest(),
        } == document
        assert (
            hashlib.sha256(response["der"]).hexdigest()
            == document["certificate_sha256"]
        )

    def test_ccc_dice(self) -> None:
        """
        The CCC dual-OID certificate is described through its DICE
        evidence, as a debug enclave whose report data is the hash of the
        claims.
        """
        want = expected()["ccc_gramine_dualoid_cert"]["computed"]
        der = CCC_DER.read_bytes()
        identity = ServerIdentity(
            certificate_der=der,
            certificate=load_certificate(der),
            # The CCC key is not published; the document does not use it.
            private_key=ec.generate_private_key(ec.SECP384R1()),
            evidence=read_evidence(der),
        )
        request = DummyRequest([b""])
        body = AttestationResource(lambda: identity).render_GET(request)
        document = json.loads(body)
        assert document == attestation_document(identity)
        assert "dice" == document["evidence"]
        assert document["debug"] is True
        assert want["mrenclave"] == document["mrenclave"]
        assert want["mrsigner"] == document["mrsigner"]
        assert document["report_data"].startswith(want["sha256_claims"])
        assert CCC_DICE_QUOTE.read_bytes() == base64.b64decode(
            document["quote"]
        )

    @pytest_twisted.ensureDeferred
    async def test_unattested(self, tmp_path: Any) -> None:
        """
        A server running without evidence answers the attestation path
        with 404 and says why, and its home page says it is unattested.
        """
        der = KONVERA_DER.read_bytes()
        quote = KONVERA_QUOTE.read_bytes()
        swapped = bytearray(quote)
        swapped[368:400] = bytes(32)
        cert = tmp_path / "swapped.der"
        cert.write_bytes(der.replace(quote, bytes(swapped)))
        options = Options()
        options.parseOptions(
            [
                "--cert",
                str(cert),
                "--key",
                str(KONVERA_KEY_PEM),
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--insecure-unattested",
            ]
        )
        service = build_service(options, reactor)
        service.privilegedStartService()
        service.startService()
        port = service.ports[0].getHost().port
        try:
            response = await get(port, "/.well-known/attestation")
            home = await get(port, "/")
        finally:
            await service.stopService()
        assert 404 == response["status"]
        document = json.loads(response["body"])
        assert "unattested" == document["error"]
        assert "public key" in document["reason"]
        assert b"UNATTESTED" in home["body"]


class TestRoutes:
    @pytest_twisted.ensureDeferred
    async def test_default_page_and_health(self) -> None:
        """
        Without an application, / describes the server and links the
        attestation document, other paths are 404, and /healthz and
        /readyz answer 200.
        """
        service, port = start()
        try:
            home = await get(port, "/")
            missing = await get(port, "/nothing")
            healthz = await get(port, "/healthz")
            readyz = await get(port, "/readyz")
        finally:
            await service.stopService()
        assert 200 == home["status"]
        assert b'href="/.well-known/attestation"' in home["body"]
        assert b"SGX enclave" in home["body"]
        assert 404 == missing["status"]
        assert (200, b"ok\n") == (healthz["status"], healthz["body"])
        assert (200, b"ok\n") == (readyz["status"], readyz["body"])

    def test_readyz_while_draining(self) -> None:
        """
        /readyz answers 503 once the site drains, while /healthz stays
        200.
        """
        service = build_service(_options(), reactor)
        service.site.draining = True
        root = service.site.resource
        ready = DummyRequest([b""])
        body = root.children[b"readyz"].render_GET(ready)
        health = DummyRequest([b""])
        root.children[b"healthz"].render_GET(health)
        assert (503, b"draining\n") == (ready.responseCode, body)
        assert 200 == health.responseCode

    @pytest_twisted.ensureDeferred
    async def test_app_gets_whole_path(self) -> None:
        """
        --app mounts a resource at / that sees whole paths, including
        other /.well-known/ paths, while attestd keeps its own.
        """
        service, port = start("--app", "tests.test_web:ECHO")
        try:
            deep = await get(port, "/foo/bar")
            other = await get(port, "/.well-known/security.txt")
            ours = await get(port, "/.well-known/attestation")
            home = await get(port, "/")
        finally:
            await service.stopService()
        assert {
            "path": "/foo/bar",
            "prepath": [],
            "postpath": ["foo", "bar"],
        } == json.loads(deep["body"])
        assert "/.well-known/security.txt" == json.loads(other["body"])["path"]
        assert "legacy" == json.loads(ours["body"])["evidence"]
        assert "/" == json.loads(home["body"])["path"]

    @pytest_twisted.ensureDeferred
    async def test_wsgi(self) -> None:
        """
        --wsgi runs a WSGI application at / on the thread pool, with the
        whole path in PATH_INFO and an https URL scheme.
        """
        service, port = start("--wsgi", "tests.test_web:echo_wsgi")
        try:
            response = await get(port, "/foo/bar")
        finally:
            await service.stopService()
        body = json.loads(response["body"])
        assert ("", "/foo/bar", "https") == (
            body["script_name"],
            body["path_info"],
            body["url_scheme"],
        )
        assert threading.main_thread().name != body["thread"]

    @pytest.mark.parametrize(
        "spec",
        [
            ("--app", "tests.test_web:echo_wsgi"),
            ("--app", "tests.no_such_module:ECHO"),
            ("--wsgi", "tests.test_web:NOTHING"),
            ("--wsgi", "tests.test_web"),
        ],
    )
    def test_bad_app(self, spec: tuple[str, str]) -> None:
        """
        An application that cannot be imported, or is of the wrong kind,
        stops the start with a message naming the option.
        """
        with pytest.raises(ConfigurationError, match=spec[0]):
            build_service(_options(*spec), reactor)


class TestErrors:
    @pytest_twisted.ensureDeferred
    async def test_hsts_everywhere(self) -> None:
        """
        Every response carries HSTS: attestd's own, 404s, and the
        application's, including its failures.
        """
        service, port = start("--app", "tests.test_web:ECHO")
        failing, failing_port = start("--app", "tests.test_web:FAILING")
        try:
            responses = [
                await get(port, "/.well-known/attestation"),
                await get(port, "/healthz"),
                await get(port, "/anything"),
                await get(failing_port, "/"),
            ]
        finally:
            await service.stopService()
            await failing.stopService()
        assert [200, 200, 200, 500] == [r["status"] for r in responses]
        for response in responses:
            assert (
                HSTS.decode()
                == (response["headers"]["strict-transport-security"])
            )

    @pytest.mark.parametrize(
        "option",
        [
            ("--app", "tests.test_web:FAILING"),
            ("--wsgi", "tests.test_web:failing_wsgi"),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_app_failure(
        self, option: tuple[str, str], events: list[dict[str, Any]]
    ) -> None:
        """
        A failing application yields a plain 500 without a traceback or
        the error's text, and the failure is logged once, by attestd.
        """
        service, port = start(*option)
        try:
            response = await get(port, "/")
        finally:
            await service.stopService()
        assert 500 == response["status"]
        assert b"Traceback" not in response["body"]
        assert b"secret" not in response["body"]
        failures = [
            e
            for e in events
            if "log_failure" in e
            and "secret detail" in str(e["log_failure"].value)
        ]
        assert 1 == len(failures)
        assert "attestd.web" == failures[0]["log_namespace"]
        assert b"500 Internal Server Error\n" == response["body"]


class TestAccessLog:
    @pytest_twisted.ensureDeferred
    async def test_one_event_per_request(
        self, events: list[dict[str, Any]]
    ) -> None:
        """
        Each request is one access event with stable fields, readable as
        text.
        """
        service, port = start()
        try:
            await get(port, "/healthz?token=x", headers={"User-Agent": "t/1"})
            await get(port, "/nothing")
        finally:
            await service.stopService()
        access = [e for e in events if e["log_namespace"] == "attestd.access"]
        assert 2 == len(access)
        first, second = access
        assert {
            "client": "127.0.0.1",
            "method": "GET",
            "path": "/healthz",
            "status": 200,
            "bytes": 3,
            "user_agent": "t/1",
        } == {k: first[k] for k in ("client", "method", "path", "status")} | {
            "bytes": first["bytes"],
            "user_agent": first["user_agent"],
        }
        assert isinstance(first["duration"], float)
        assert 404 == second["status"]
        assert formatEvent(first).startswith('127.0.0.1 "GET /healthz" 200 3 ')
        assert formatEvent(first).endswith('s "t/1"')


class TestStartEvent:
    def test_konvera(self, events: list[dict[str, Any]]) -> None:
        """
        The start event gives the measurements, the evidence kind, the
        certificate hash and the addresses.
        """
        want = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
        service = build_service(_options(), reactor)
        log_start(service.context_factory.identity, ["127.0.0.1:8443"])
        (event,) = [
            e for e in events if e["log_namespace"] == "attestd.daemon"
        ]
        assert {
            "mrenclave": want["mrenclave"],
            "mrsigner": want["mrsigner"],
            "isv_prod_id": 0,
            "isv_svn": 0,
            "debug": False,
            "evidence": "legacy",
            "certificate_sha256": hashlib.sha256(
                KONVERA_DER.read_bytes()
            ).hexdigest(),
            "addresses": ["127.0.0.1:8443"],
            "insecure_unattested": False,
        }.items() <= event.items()
        assert "127.0.0.1:8443" in formatEvent(event)

    def test_ccc(self, events: list[dict[str, Any]]) -> None:
        """
        For the CCC certificate the start event says DICE and debug.
        """
        der = CCC_DER.read_bytes()
        identity = ServerIdentity(
            certificate_der=der,
            certificate=load_certificate(der),
            private_key=ec.generate_private_key(ec.SECP384R1()),
            evidence=read_evidence(der),
        )
        log_start(identity, ["[::1]:8443"])
        (event,) = [
            e for e in events if e["log_namespace"] == "attestd.daemon"
        ]
        assert ("dice", True) == (event["evidence"], event["debug"])
        assert "debug=True" in formatEvent(event)


class TestOptions:
    def test_defaults(self) -> None:
        """
        The defaults are gramine-ratls's files in /tmp, port 8080 on every
        interface, a 10 s drain and bodies of at most 1 MiB.
        """
        options = Options()
        options.parseOptions([])
        settings = check_options(options)
        assert (
            Path("/tmp/ra-tls.crt.pem"),
            Path("/tmp/ra-tls.key.pem"),
            (
                Listener(
                    description="tcp:8080:interface=0.0.0.0",
                    kind="tcp",
                    port=8080,
                    interface="0.0.0.0",
                ),
            ),
            10.0,
            1024 * 1024,
            False,
        ) == (
            settings.cert,
            settings.key,
            settings.listeners,
            settings.drain_timeout,
            settings.max_body_size,
            settings.insecure_unattested,
        )

    def test_repeated_listen(self) -> None:
        """
        --listen can be given several times, with tcp, tcp6 and systemd.
        """
        listeners = [
            "tcp:8443:interface=127.0.0.1",
            "tcp6:8443:interface=\\:\\:1",
            "systemd:domain=INET6:index=0",
        ]
        options = Options()
        options.parseOptions(
            [a for listen in listeners for a in ("--listen", listen)]
        )
        assert listeners == options["listen"]
        assert [
            ("tcp", 8443, "127.0.0.1", None, None),
            ("tcp6", 8443, "::1", None, None),
            ("systemd", 0, None, "INET6", 0),
        ] == [
            (it.kind, it.port, it.interface, it.domain, it.index)
            for it in check_options(options).listeners
        ]

    @pytest.mark.parametrize(
        ("description", "listener"),
        [
            ("TCP:8443", Listener("TCP:8443", "tcp", port=8443)),
            (
                "tcp:port=8443:backlog=10",
                Listener("tcp:port=8443:backlog=10", "tcp", 8443, backlog=10),
            ),
            (
                "Systemd:domain=inet:name=web\\:s",
                Listener(
                    "Systemd:domain=inet:name=web\\:s",
                    "systemd",
                    domain="INET",
                    name="web:s",
                ),
            ),
        ],
    )
    def test_listener_forms(
        self, description: str, listener: Listener
    ) -> None:
        """
        The listener type and the systemd domain are read case-insensitively,
        the port may be named, and a backslash escapes a colon.
        """
        assert listener == parse_listener(description)

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                ["--listen", ""],
                "--listen '': the endpoint is empty; use tcp:PORT",
            ),
            (
                ["--listen", "ssl:8443"],
                "--listen ssl:8443: 'ssl' is not a listener type here: "
                "every listener is TLS, configured by attestd; use tcp:PORT",
            ),
            (["--listen", "tls:8443"], "'tls' is not a listener type"),
            (["--listen", "unix:/tmp/s"], "'unix' is not a listener type"),
            (["--listen", "stdio:"], "'stdio' is not a listener type"),
            (["--listen", "8443"], "'8443' is not a listener type"),
            (["--listen", "port=8443"], "no listener type"),
            (
                ["--listen", "tcp:8443:foo=1"],
                "--listen tcp:8443:foo=1: unknown parameter foo= (tcp "
                "listeners take port=, interface=, backlog=)",
            ),
            (
                [
                    "--listen",
                    "tcp:18444:interface=127.0.0.1:interface=0.0.0.0",
                ],
                "interface given twice",
            ),
            (["--listen", "tcp:port=1:2"], "unexpected '2'"),
            (["--listen", "tcp:8443:port=1"], "port given twice"),
            (["--listen", "tcp:"], "port '' is not a number from 0 to 65535"),
            (["--listen", "tcp"], "no port"),
            (["--listen", "tcp:65536"], "not a number from 0 to 65535"),
            (["--listen", "tcp:-1"], "not a number from 0 to 65535"),
            (["--listen", "tcp:8443:backlog=0"], "backlog '0'"),
            (
                ["--listen", "tcp:8443:interface=localhost"],
                "interface 'localhost' is not an IP address",
            ),
            (["--listen", "tcp:8443\\"], "ends with a lone backslash"),
            (
                ["--listen", "tcp:8443:interface=fe80::1"],
                "write the colons of an IPv6 interface as \\:",
            ),
            (["--listen", "systemd:domain=UNIX:index=0"], "INET"),
            (["--listen", "systemd:domain=INET"], "one of index=N and name"),
            (
                ["--listen", "systemd:domain=INET:index=0:name=x"],
                "one of index=N and name",
            ),
            (["--listen", "systemd:0:domain=INET"], "unexpected '0'"),
            (["--app", "a:b", "--wsgi", "c:d"], "together"),
            (["--drain-timeout", "-5"], "--drain-timeout -5: give a number"),
            (["--drain-timeout", "nan"], "--drain-timeout nan: give a"),
            (["--drain-timeout", "inf"], "--drain-timeout inf: give a"),
            (["--drain-timeout", "1e3"], "--drain-timeout 1e3: give a"),
            (["--drain-timeout", "86401"], "at most 86400 seconds"),
            (["--drain-timeout", "9" * 400], "at most 86400 seconds"),
            (["--max-body-size", "-1"], "--max-body-size -1: give a number"),
            (["--max-body-size", "nan"], "--max-body-size nan: give"),
            (["--max-body-size", "1.5M"], "--max-body-size 1.5M: give"),
            (["--max-body-size", "1MB"], "--max-body-size 1MB: give"),
            (["--max-body-size", "1025G"], "at most 1 TiB"),
            (["--max-body-size", "9" * 400], "at most 1 TiB"),
        ],
    )
    def test_refused(self, args: list[str], message: str) -> None:
        """
        Listeners that are not TCP (their TLS would not be attestd's),
        malformed or ambiguous endpoint descriptions, --app with --wsgi,
        and a drain timeout or body limit that is not a finite number in
        range are refused with a message naming the option and the
        problem.
        """
        options = Options()
        options.parseOptions(args)
        with pytest.raises(ConfigurationError) as e:
            check_options(options)
        assert message in str(e.value)
        assert str(e.value).startswith("--")
        assert "\n" not in str(e.value)

    @pytest.mark.parametrize(
        ("text", "size"),
        [
            ("0", 0),
            ("1048576", 1048576),
            ("512K", 512 * 1024),
            ("512kib", 512 * 1024),
            ("1M", 1024**2),
            ("1MiB", 1024**2),
            ("2g", 2 * 1024**3),
            ("100b", 100),
        ],
    )
    def test_sizes(self, text: str, size: int) -> None:
        """
        Body sizes are bytes, or a number with K, M or G (optionally KiB,
        MiB, GiB), powers of 1024.
        """
        assert size == parse_size(text)

    @pytest.mark.parametrize(("text", "seconds"), [("0", 0.0), ("2.5", 2.5)])
    def test_drain_timeouts(self, text: str, seconds: float) -> None:
        """
        A drain timeout of zero is allowed, and fractions of a second.
        """
        assert seconds == parse_seconds(text)

    def test_port_in_use(self) -> None:
        """
        A port in use stops the start with an error naming the address
        and the cause.
        """
        with socket.create_server(("127.0.0.1", 0)) as taken:
            address = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
            options = Options()
            options.parseOptions(
                [
                    "--cert",
                    str(KONVERA_TRUSTED_PEM),
                    "--key",
                    str(KONVERA_KEY_PEM),
                    "--listen",
                    "tcp:0:interface=127.0.0.1",
                    "--listen",
                    address,
                ]
            )
            service = build_service(options, reactor)
            with pytest.raises(ConfigurationError) as e:
                service.listen()
        assert f"cannot listen on {address}: Address already in use" == str(
            e.value
        )
        assert [] == service.ports


def _connect_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


async def _wait_for(predicate: Any) -> None:
    for _ in range(500):
        if predicate():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError("condition not reached in 5 s")


class TestDrain:
    @pytest_twisted.ensureDeferred
    async def test_request_in_progress_finishes(
        self, events: list[dict[str, Any]]
    ) -> None:
        """
        On stop, the daemon stops accepting connections, the request in
        progress still gets its whole response (with Connection: close),
        and the stop completes once it is sent.
        """
        GATE.pending.clear()
        service, port = start("--app", "tests.test_web:GATE")
        response = deferToThread(https_get, port, "/slow")
        await _wait_for(lambda: GATE.pending)
        stopped = service.stopService()
        finished: list[object] = []
        stopped.addBoth(finished.append)
        # The listening socket closes on the next reactor iteration.
        for _ in range(100):
            if await deferToThread(_connect_refused, port):
                break
        else:
            raise AssertionError("still accepting connections")
        assert [] == finished
        (request,) = GATE.pending
        request.write(b"finished\n")
        request.finish()
        result = await response
        await _wait_for(lambda: finished)
        assert [None] == finished
        assert (200, b"finished\n", "close") == (
            result["status"],
            result["body"],
            result["headers"]["connection"],
        )
        assert 0 == service.site.open_channels
        assert not [e for e in events if "Drain timeout" in e["log_format"]]

    @pytest_twisted.ensureDeferred
    async def test_idle_connections_closed(
        self, events: list[dict[str, Any]]
    ) -> None:
        """
        An idle keep-alive connection is closed at once on stop, so the
        stop does not wait for the drain timeout.
        """
        service, port = start()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, context=context, timeout=10
        )

        def first_request() -> bytes:
            connection.request("GET", "/healthz")
            return connection.getresponse().read()

        assert b"ok\n" == await deferToThread(first_request)
        await _wait_for(lambda: service.site.open_channels == 1)
        await service.stopService()
        assert 0 == service.site.open_channels
        assert connection.sock is not None
        assert b"" == await deferToThread(connection.sock.recv, 1)
        connection.close()
        assert not [e for e in events if "Drain timeout" in e["log_format"]]

    @pytest_twisted.ensureDeferred
    async def test_cut_at_deadline(self, events: list[dict[str, Any]]) -> None:
        """
        A request still running at the drain deadline has its connection
        cut, and the stop completes.
        """
        GATE.pending.clear()
        service, port = start(
            "--app", "tests.test_web:GATE", "--drain-timeout", "0.2"
        )
        response = deferToThread(https_get, port, "/slow")
        await _wait_for(lambda: GATE.pending)
        await service.stopService()
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            await response
        assert 0 == service.site.open_channels
        assert [e for e in events if "Drain timeout" in e["log_format"]]
        GATE.pending.clear()

    @pytest_twisted.ensureDeferred
    async def test_readyz_503_seen_by_request_still_arriving(self) -> None:
        """
        Once the stop began, the only /readyz a client can still reach is
        one whose request was arriving on an open connection: it gets 503
        and the connection closes (new connections are refused and idle
        ones closed at once).
        """
        service, port = start()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def connect() -> ssl.SSLSocket:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            return context.wrap_socket(raw)

        tls = await deferToThread(connect)
        try:
            await deferToThread(
                tls.sendall, b"GET /readyz HTTP/1.1\r\nHost: a\r\n"
            )
            # Wait until the server has read the request line, so that
            # the channel is busy (not idle) when the stop begins.
            await _wait_for(
                lambda: any(
                    channel.requests for channel in service.site._channels
                )
            )
            stopped = service.stopService()
            await deferToThread(tls.sendall, b"\r\n")

            def read() -> bytes:
                received = b""
                while chunk := tls.recv(4096):
                    received += chunk
                return received

            response = await deferToThread(read)
            await stopped
        finally:
            tls.close()
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"Connection: close" in head
        assert b"draining\n" == body
