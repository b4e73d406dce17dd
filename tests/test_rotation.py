"""
Tests for certificate rotation (C{--rotate}): the daemon's service runs in
this process with the simulated source, and clients connect to it over
real TLS on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher

from attestd._tls import read_evidence
from attestd.errors import AttestationSourceError
from attestd.sources import FilesSource, SimulatedSource
from attestd.tap import AttestdService, Options, build_service

from ._vectors import KONVERA_DER, KONVERA_KEY_PEM, KONVERA_TRUSTED_PEM
from .test_sources import key_pem

#: Bound on any wait; not a timed assertion.
PATIENCE = 30.0


def tls_context() -> ssl.SSLContext:
    """
    A client context accepting any certificate (the tests compare the
    DER they receive).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Client:
    """
    One keep-alive HTTPS connection to 127.0.0.1 (blocking; use it from
    a thread).
    """

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPSConnection(
            "127.0.0.1", port, context=tls_context(), timeout=PATIENCE
        )

    def get(self, path: str) -> tuple[int, bytes, bytes]:
        """
        GET C{path}; the status, body and the connection's certificate.
        """
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        sock = self.connection.sock
        assert sock is not None
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        return response.status, body, der

    def close(self) -> None:
        self.connection.close()


def fetch(port: int, path: str) -> tuple[int, bytes, bytes]:
    """
    GET C{path} over a new connection.
    """
    client = Client(port)
    try:
        return client.get(path)
    finally:
        client.close()


def simulated_options(state: Path, *extra: str) -> Options:
    """
    Options for the simulated source on a free port of 127.0.0.1.
    """
    options = Options()
    options.parseOptions(
        [
            "--attestation",
            "simulated",
            "--simulated-state",
            str(state),
            "--listen",
            "tcp:0:interface=127.0.0.1",
            *extra,
        ]
    )
    return options


def start_service(options: Options) -> tuple[AttestdService, int]:
    """
    Start the daemon's service in this process.

    @return: The service and its port.
    """
    service = build_service(options, reactor)
    service.privilegedStartService()
    service.startService()
    return service, service.ports[0].getHost().port


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """
    Every log event emitted during the test.
    """
    captured: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(captured.append)
    yield captured
    globalLogPublisher.removeObserver(captured.append)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    The simulated state directory of the module.
    """
    return tmp_path_factory.mktemp("rotation-state")


@pytest_twisted.async_yield_fixture
async def daemon(state: Path) -> AsyncIterator[AttestdService]:
    """
    The simulated daemon, not rotating by itself.
    """
    service, _ = start_service(simulated_options(state))
    yield service
    await service.stopService()


def port_of(service: AttestdService) -> int:
    return int(service.ports[0].getHost().port)


async def wait_until(check: Callable[[], bool]) -> None:
    """
    Let the reactor run until C{check()} holds.
    """
    for _ in range(int(PATIENCE / 0.01)):
        if check():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError("condition not reached")


class TestRotation:
    @pytest_twisted.ensureDeferred
    async def test_steady_stream_loses_nothing(self, state: Path) -> None:
        """
        With a rotation every 0.2 s, four clients making requests over
        new connections all the while get every answer; several
        certificates are served, each carrying evidence that binds it.
        """
        service, port = start_service(
            simulated_options(state, "--rotate", "0.2s")
        )
        results: list[tuple[int, bytes, bytes] | BaseException] = []
        seen: set[bytes] = set()

        async def worker() -> None:
            while len(results) < 200 or len(seen) < 3:
                if len(results) > 5000:
                    return
                try:
                    result = await deferToThread(fetch, port, "/healthz")
                except (OSError, http.client.HTTPException) as e:
                    results.append(e)
                    continue
                results.append(result)
                seen.add(result[2])

        try:
            await DeferredList(
                [Deferred.fromCoroutine(worker()) for _ in range(4)]
            )
        finally:
            await service.stopService()
        failures = [r for r in results if not isinstance(r, tuple)]
        assert [] == failures
        assert {(200, b"ok\n")} == {(r[0], r[1]) for r in results}
        assert len(seen) >= 2
        assert service.keeper is not None
        assert service.keeper.rotations >= len(seen) - 1
        for der in seen:
            read_evidence(der)

    @pytest_twisted.ensureDeferred
    async def test_open_connection_survives(
        self, daemon: AttestdService
    ) -> None:
        """
        A keep-alive connection opened before a rotation keeps working
        with its certificate, and is described by it; new connections
        get the new certificate.
        """
        port = port_of(daemon)
        keeper = daemon.keeper
        assert keeper is not None
        old_client = Client(port)
        try:
            status, _, old = await deferToThread(
                old_client.get, "/.well-known/attestation"
            )
            assert 200 == status
            assert await keeper.rotate()
            status, body, new = await deferToThread(
                fetch, port, "/.well-known/attestation"
            )
            assert 200 == status
            assert old != new
            assert (
                hashlib.sha256(new).hexdigest()
                == (json.loads(body)["certificate_sha256"])
            )
            status, body, still = await deferToThread(
                old_client.get, "/.well-known/attestation"
            )
        finally:
            await deferToThread(old_client.close)
        assert (200, old) == (status, still)
        assert (
            hashlib.sha256(old).hexdigest()
            == (json.loads(body)["certificate_sha256"])
        )

    @pytest_twisted.ensureDeferred
    async def test_failed_rotation_keeps_certificate(
        self,
        daemon: AttestdService,
        events: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """
        A rotation that fails keeps serving the current certificate and
        logs a warning with the reason; the next rotation works.
        """
        port = port_of(daemon)
        keeper = daemon.keeper
        assert keeper is not None
        source = keeper.source
        assert isinstance(source, SimulatedSource)
        renew = source.renew
        calls: list[int] = []

        def fail_once() -> Any:
            calls.append(1)
            if len(calls) == 1:
                msg = "the quoting enclave is unreachable"
                raise AttestationSourceError(msg)
            return renew()

        monkeypatch.setattr(source, "renew", fail_once)
        _, _, before = await deferToThread(fetch, port, "/healthz")
        assert not await keeper.rotate()
        _, _, after = await deferToThread(fetch, port, "/healthz")
        assert before == after
        (warning,) = [
            e for e in events if e.get("log_namespace") == "attestd.rotation"
        ]
        assert "the quoting enclave is unreachable" == warning["reason"]
        assert (
            hashlib.sha256(before).hexdigest()
            == (warning["certificate_sha256"])
        )
        text = formatEvent(warning)
        assert text.startswith("simulated: Certificate rotation failed")
        assert "still serving" in text
        assert await keeper.rotate()
        _, _, rotated = await deferToThread(fetch, port, "/healthz")
        assert before != rotated


class TestFilesRotation:
    @pytest_twisted.ensureDeferred
    async def test_files_read_again(
        self, tmp_path: Path, state: Path, events: list[dict[str, Any]]
    ) -> None:
        """
        With the files source a rotation reads the files again: the same
        files change nothing (and log nothing), new files are served.
        """
        cert, key = tmp_path / "crt.pem", tmp_path / "key.pem"
        shutil.copy(KONVERA_TRUSTED_PEM, cert)
        shutil.copy(KONVERA_KEY_PEM, key)
        options = Options()
        options.parseOptions(
            [
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ]
        )
        service, port = start_service(options)
        try:
            keeper = service.keeper
            assert keeper is not None
            assert isinstance(keeper.source, FilesSource)
            assert not await keeper.rotate()
            assert [] == [
                e
                for e in events
                if e.get("log_namespace") == "attestd.rotation"
            ]
            minted = SimulatedSource(state).mint()
            cert.write_bytes(minted.certificate_der)
            key.write_bytes(key_pem(minted.private_key))
            assert await keeper.rotate()
            _, _, der = await deferToThread(fetch, port, "/healthz")
        finally:
            await service.stopService()
        assert minted.certificate_der == der
        assert KONVERA_DER.read_bytes() != der


class TestSimulatedMarks:
    @pytest_twisted.ensureDeferred
    async def test_idle_timeout_line_marked(
        self, daemon: AttestdService, events: list[dict[str, Any]]
    ) -> None:
        """
        Twisted's "Timing out client" line of a simulated daemon's idle
        connection says simulated.
        """
        daemon.site.timeOut = 0.05
        connection = await deferToThread(
            socket.create_connection, ("127.0.0.1", port_of(daemon)), PATIENCE
        )
        try:
            await wait_until(
                lambda: any("Timing out" in formatEvent(e) for e in events)
            )
        finally:
            connection.close()
        (event,) = [e for e in events if "Timing out" in formatEvent(e)]
        assert event["simulated"] is True
        assert formatEvent(event).startswith("simulated: Timing out client")
