"""
Tests for the attestation timeout: Gramine's C{/dev/attestation} files
that never answer (FIFOs nobody serves) must not hang the daemon, at
start, at rotation, for a fresh quote or at stop.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.threads import deferToThread

from attestd._tls import ServerContextFactory
from attestd.errors import (
    AttestationBusyError,
    AttestationSourceError,
    AttestationTimeoutError,
    ConfigurationError,
)
from attestd.sources import GramineSource, IdentityKeeper, SimulatedSource
from attestd.sources._device import _state_for
from attestd.sources._keeper import MAX_SOURCE_CALLS
from attestd.sources._simulated import SimulatedPKI
from attestd.tap import Options, check_options

from .fakes.devattestation import FakeAttestationDevice
from .test_daemon import Daemon, fetch
from .test_rotation import events, start_service
from .test_sources import ENCLAVE

__all__ = ["events"]

#: The timeout the tests give: short, so that the tests stay quick.
TIMEOUT = "0.5"

#: Bound on any wait; not a timed assertion.
PATIENCE = 30.0

NONCE = "ab" * 16


def stuck_device(root: Path, *, fifo: str) -> Path:
    """
    An attestation directory saying C{dcap} whose C{fifo} is a FIFO
    nobody serves (the other files are regular files).
    """
    root.mkdir()
    (root / "attestation_type").write_text("dcap")
    for name in ("user_report_data", "quote"):
        if name == fifo:
            os.mkfifo(root / name)
        else:
            (root / name).touch()
    return root


def release(root: Path) -> None:
    """
    Let a thread stuck on the FIFOs of C{root} go: open their other ends
    until the device's stuck operation has ended.
    """
    state = _state_for(root)
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        with state.guard:
            if state.stuck is None and not state.turn.locked():
                return
        for name, flags in (
            ("user_report_data", os.O_RDONLY),
            ("quote", os.O_WRONLY),
        ):
            try:
                fd = os.open(root / name, flags | os.O_NONBLOCK)
            except OSError as e:
                if e.errno not in (errno.ENXIO, errno.ENOENT):
                    raise
            else:
                os.close(fd)
        time.sleep(0.01)
    raise AssertionError(f"the stuck operation on {root} never ended")


@pytest.fixture
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimulatedPKI:
    """
    A simulated PKI for the fake device.
    """
    return SimulatedPKI.load_or_create(
        tmp_path_factory.mktemp("timeout-pki"), now=time.time()
    )


class TestGramineTimeout:
    @pytest.mark.parametrize("fifo", ["quote", "user_report_data"])
    def test_stuck_file_times_out_then_busy(
        self, tmp_path: Path, fifo: str
    ) -> None:
        """
        A device file that never answers fails the quote with a timeout
        naming it; while that operation is stuck the next one fails at
        once as busy; once it ends the device is usable again.
        """
        root = stuck_device(tmp_path / "attestation", fifo=fifo)
        source = GramineSource(root, timeout=float(TIMEOUT))
        try:
            with pytest.raises(AttestationTimeoutError) as raised:
                source.quote(bytes(64))
            assert str(root / fifo) in str(raised.value)
            assert "no answer within 0.5 s" in str(raised.value)
            with pytest.raises(AttestationBusyError, match="stuck"):
                source.quote(bytes(64))
        finally:
            release(root)
        # The regular quote file is empty: the device answers again.
        (root / fifo).unlink()
        (root / fifo).touch()
        with pytest.raises(AttestationSourceError, match="empty quote"):
            source.quote(bytes(64))

    def test_stuck_attestation_type(self, tmp_path: Path) -> None:
        """
        An attestation_type that never answers fails the source's
        construction with a timeout naming it.
        """
        root = tmp_path / "attestation"
        root.mkdir()
        os.mkfifo(root / "attestation_type")
        try:
            with pytest.raises(
                AttestationTimeoutError, match="attestation_type"
            ):
                GramineSource(root, timeout=float(TIMEOUT))
        finally:
            fd = os.open(root / "attestation_type", os.O_RDWR)
            os.close(fd)

    def test_missing_file_not_created(self, tmp_path: Path) -> None:
        """
        A missing user_report_data is reported as missing and is not
        created.
        """
        root = tmp_path / "attestation"
        root.mkdir()
        (root / "attestation_type").write_text("dcap")
        (root / "quote").touch()
        source = GramineSource(root)
        with pytest.raises(
            AttestationSourceError, match="user_report_data is missing"
        ):
            source.quote(bytes(64))
        assert not (root / "user_report_data").exists()

    @pytest.mark.parametrize("timeout", [0.0, -1.0, float("inf"), 1e9])
    def test_timeout_bounds(self, tmp_path: Path, timeout: float) -> None:
        """
        The timeout must be finite, more than zero and at most an hour.
        """
        with pytest.raises(ConfigurationError, match="attestation timeout"):
            GramineSource(tmp_path, timeout=timeout)


class TestKeeperWithStuckDevice:
    @pytest_twisted.ensureDeferred
    async def test_rotation_and_fresh_quote_fail(
        self,
        tmp_path: Path,
        pki: SimulatedPKI,
        events: list[dict[str, Any]],
    ) -> None:
        """
        Once the device stops answering, a rotation fails with a warning
        naming the stuck file and keeps the certificate, the next fails
        at once as busy, and a fresh quote is answered 503.
        """
        device = FakeAttestationDevice(
            tmp_path / "attestation", pki.quoting_enclave(ENCLAVE)
        )
        device.start()
        options = Options()
        options.parseOptions(
            [
                "--attestation",
                "gramine",
                "--attestation-dir",
                str(device.root),
                "--attestation-timeout",
                TIMEOUT,
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ]
        )
        service, port = start_service(options)
        keeper = service.keeper
        assert keeper is not None
        before = service.context_factory.identity.certificate_sha256
        device.stop()
        try:
            assert not await keeper.rotate()
            assert not await keeper.rotate()
            status, body, _ = await deferToThread(
                fetch, port, f"/.well-known/attestation?nonce={NONCE}"
            )
        finally:
            await service.stopService()
            await deferToThread(release, device.root)
        warnings = [
            e for e in events if e.get("log_namespace") == "attestd.rotation"
        ]
        assert 2 == len(warnings)
        assert str(device.user_report_data_path) in warnings[0]["reason"]
        assert "no answer within 0.5 s" in warnings[0]["reason"]
        assert "busy" in warnings[1]["reason"]
        assert {before} == {w["certificate_sha256"] for w in warnings}
        assert before == service.context_factory.identity.certificate_sha256
        document = json.loads(body)
        assert (503, "fresh_quote_failed") == (status, document["error"])
        assert "busy" in document["reason"]


@pytest.fixture
def served(
    tmp_path: Path, pki: SimulatedPKI
) -> Iterator[FakeAttestationDevice]:
    """
    A fake device for a daemon in another process.
    """
    device = FakeAttestationDevice(
        tmp_path / "attestation", pki.quoting_enclave(ENCLAVE)
    )
    device.start()
    try:
        yield device
    finally:
        device.stop()


class TestDaemon:
    def test_start_with_stuck_quote(self, tmp_path: Path) -> None:
        """
        A quote file that never answers at start stops the daemon with
        one attestd: line naming it, and a non-zero status.
        """
        root = stuck_device(tmp_path / "attestation", fifo="quote")
        daemon = Daemon(
            tmp_path / "run",
            [
                "--attestation",
                "gramine",
                "--attestation-dir",
                str(root),
                "--attestation-timeout",
                TIMEOUT,
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ],
        )
        status = daemon.finish()
        lines = daemon.output().splitlines()
        assert 0 != status
        assert 1 == len(lines), lines
        assert lines[0].startswith(f"attestd: {root / 'quote'}: no answer")

    def test_stuck_device_while_serving(
        self, tmp_path: Path, served: FakeAttestationDevice
    ) -> None:
        """
        A daemon whose device gets stuck warns at each rotation, answers
        fresh quotes 503, and exits on SIGTERM.
        """
        daemon = Daemon(
            tmp_path / "run",
            [
                "--attestation",
                "gramine",
                "--attestation-dir",
                str(served.root),
                "--attestation-timeout",
                TIMEOUT,
                "--rotate",
                "1s",
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ],
        )
        try:
            port = daemon.port()
            served.stop()
            daemon.wait_for(
                r"Certificate rotation failed .*user_report_data: no answer"
            )
            daemon.wait_for(r"Certificate rotation failed .*busy")
            status, body, _ = fetch(
                port, f"/.well-known/attestation?nonce={NONCE}"
            )
            assert 503 == status
            assert "fresh_quote_failed" == json.loads(body)["error"]
        finally:
            status = daemon.stop()
        assert -signal.SIGTERM == status
        assert "attestd stopped" in daemon.output()

    def test_simulated_port_line_marked(self, tmp_path: Path) -> None:
        """
        With the JSON log, Twisted's line saying which port a simulated
        daemon listens on has the simulated field.
        """
        daemon = Daemon(
            tmp_path / "run",
            [
                "--attestation",
                "simulated",
                "--simulated-state",
                str(tmp_path / "state"),
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ],
            json_log=True,
        )
        try:
            daemon.wait_for(r"listening on")
        finally:
            daemon.stop()
        starting = [
            event
            for event in map(json.loads, daemon.output().splitlines())
            if "starting on" in " ".join(event.get("message", []))
        ]
        assert 1 == len(starting), daemon.output()
        assert starting[0]["simulated"] is True


class TestOption:
    @pytest.mark.parametrize(
        ("args", "match"),
        [
            (["--attestation-timeout", "0"], "more than 0"),
            (["--attestation-timeout", "nan"], "give a number"),
            (["--attestation-timeout", "3601"], "at most 3600"),
            (
                ["--attestation", "simulated", "--attestation-timeout", "5"],
                "is for --attestation gramine",
            ),
        ],
    )
    def test_refused(self, args: list[str], match: str) -> None:
        """
        A timeout that is not a positive number of seconds up to an hour,
        or one given for a source without a device, is refused.
        """
        options = Options()
        options.parseOptions(args)
        with pytest.raises(ConfigurationError, match=match):
            check_options(options)

    def test_default_and_given(self) -> None:
        """
        The timeout is 30 s unless given.
        """
        options = Options()
        options.parseOptions([])
        assert 30.0 == check_options(options).attestation_timeout
        options = Options()
        options.parseOptions(["--attestation-timeout", "2.5"])
        assert 2.5 == check_options(options).attestation_timeout


class TestCallBound:
    @pytest_twisted.ensureDeferred
    async def test_calls_in_progress_bounded(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        Beyond MAX_SOURCE_CALLS fresh quotes in progress, the next fails
        at once as busy; the others complete once the source answers.
        """
        source = SimulatedSource(tmp_path / "state")
        identity = source.load()
        keeper = IdentityKeeper(
            reactor, source, ServerContextFactory(identity)
        )
        gate = threading.Event()
        quote = source.quote

        def slow(report_data: bytes) -> bytes:
            gate.wait(PATIENCE)
            return quote(report_data)

        monkeypatch.setattr(source, "quote", slow)
        nonce = bytes(32)
        running = [
            keeper.fresh_quote(identity, nonce)
            for _ in range(MAX_SOURCE_CALLS)
        ]
        try:
            with pytest.raises(AttestationBusyError, match="in progress"):
                await keeper.fresh_quote(identity, nonce)
        finally:
            gate.set()
        quotes = await DeferredList(running, fireOnOneErrback=True)
        assert MAX_SOURCE_CALLS == len({q for _, q in quotes})
        assert 0 == keeper.calls
