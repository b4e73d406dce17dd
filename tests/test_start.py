"""
Tests for L{attestd.start}, the container's start command, run as a real
process against the fake C{aesm_service} and C{gramine-sgx} in
C{tests/fakes} (the latter runs the real daemon with the simulated
attestation source), with real unix sockets and signals.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from attestd.start import (
    Settings,
    child_argv,
    exit_status,
    find_devices,
    find_missing_devices,
    parse_settings,
    qcnl_config,
)

ROOT = Path(__file__).parent.parent
FAKES = Path(__file__).parent / "fakes"
#: Generous bound on any single wait, so that a broken start cannot hang
#: the suite; no test relies on how fast anything is.
PATIENCE = 30.0


def is_running(pid: int) -> bool:
    """
    Whether a process exists and is not a zombie.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def records(path: Path) -> list[dict[str, Any]]:
    """
    The JSON lines a fake wrote, or none if it never ran.
    """
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


class Start:
    """
    One run of C{python -m attestd.start}, with its JSON log events read
    from standard error as they come.
    """

    def __init__(self, argv: list[str], env: dict[str, str], out: Path):
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stdout = out.open("wb")
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, "-m", "attestd.start", *argv],
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._queue.put(event)
        self._queue.put(None)

    def wait_event(
        self, name: str, where: Callable[[dict[str, Any]], bool] = bool
    ) -> dict[str, Any]:
        """
        Wait for the next event called C{name} that satisfies C{where}.
        """
        while True:
            event = self._queue.get(timeout=PATIENCE)
            if event is None:
                raise AssertionError(f"start exited before {name}")
            self.events.append(event)
            if event.get("event") == name and where(event):
                return event

    def wait(self) -> int:
        """
        Wait for the start command to exit; collect all its events.
        """
        status = self.process.wait(timeout=PATIENCE)
        self._reader.join(timeout=PATIENCE)
        while True:
            event = self._queue.get(timeout=PATIENCE)
            if event is None:
                break
            self.events.append(event)
        self._stdout.close()
        return status

    def named(self, name: str) -> list[dict[str, Any]]:
        """
        The events seen so far called C{name}.
        """
        return [e for e in self.events if e.get("event") == name]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stdout.close()


class Rig:
    """
    Devices, directories, fakes and settings for one start.
    """

    def __init__(self, tmp_path: Path, short: Path) -> None:
        self.tmp = tmp_path
        # The in-kernel driver's names, without udev's symlinks.
        self.dev = tmp_path / "dev"
        (self.dev / "sgx").mkdir(parents=True)
        for name in ("sgx_enclave", "sgx_provision"):
            (self.dev / name).touch()
        self.socket = short / "aesm.socket"
        self.aesm_dir = tmp_path / "aesm"
        self.aesm_dir.mkdir()
        self.enclave_dir = tmp_path / "enclave"
        self.enclave_dir.mkdir()
        (self.enclave_dir / "attestd.manifest.sgx").touch()
        self.aesm_record = tmp_path / "aesm.jsonl"
        self.gramine_record = tmp_path / "gramine.jsonl"
        self.state = tmp_path / "simulated-state"
        self.qcnl = tmp_path / "sgx_default_qcnl.conf"
        self.options: dict[str, str] = {
            "--enclave-device": (
                f"{self.dev / 'sgx_enclave'}:{self.dev / 'sgx/enclave'}"
            ),
            "--provision-device": (
                f"{self.dev / 'sgx_provision'}:{self.dev / 'sgx/provision'}"
            ),
            "--legacy-device": str(self.dev / "isgx"),
            "--aesm-binary": str(FAKES / "aesm_service"),
            "--aesm-library-path": str(self.aesm_dir),
            "--aesm-socket": str(self.socket),
            "--aesm-ready-timeout": "10",
            "--aesm-backoff-initial": "0.01",
            "--aesm-backoff-max": "0.05",
            "--aesm-stop-timeout": "5",
            "--gramine-command": str(FAKES / "gramine-sgx"),
            "--enclave-dir": str(self.enclave_dir),
            "--qcnl-config": str(self.qcnl),
            "--pccs-url": "https://127.0.0.1:8081/sgx/certification/v4/",
            "--user": "",
        }
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")
        }
        self.env["PATH"] = (
            str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
        )
        self.env["FAKE_AESM_SOCKET"] = str(self.socket)
        self.env["FAKE_AESM_RECORD"] = str(self.aesm_record)
        self.env["FAKE_GRAMINE_RECORD"] = str(self.gramine_record)
        self.env["FAKE_GRAMINE_STATE"] = str(self.state)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.runs: list[Start] = []

    def start(self, **fakes: str) -> Start:
        """
        Run the start command; C{fakes} are extra environment variables.
        """
        argv = [x for item in self.options.items() for x in item]
        run = Start(argv, {**self.env, **fakes}, self.tmp / "stdout.log")
        self.runs.append(run)
        return run

    def aesm_pids(self) -> list[int]:
        return [r["pid"] for r in records(self.aesm_record)]

    def gramine_pids(self) -> list[int]:
        return [r["pid"] for r in records(self.gramine_record)]

    def assert_nothing_running(self) -> None:
        """
        No fake AESM and no enclave child outlived the start command.
        """
        alive = [
            pid
            for pid in self.aesm_pids() + self.gramine_pids()
            if is_running(pid)
        ]
        assert alive == []


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """
    A L{Rig}, with every start it made killed afterwards.
    """
    # Unix socket paths are limited to 108 bytes: keep this one short.
    with tempfile.TemporaryDirectory(prefix="aesm") as short:
        made = Rig(tmp_path, Path(short))
        yield made
        for run in made.runs:
            run.kill()
        for pid in made.aesm_pids() + made.gramine_pids():
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)


def wait_for_daemon(log: Path) -> int:
    """
    Wait until the daemon's log (its standard output) says where it
    listens, and return the port.
    """
    import time

    deadline = time.monotonic() + PATIENCE
    pattern = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
    while True:
        found = pattern.search(log.read_text()) if log.exists() else None
        if found:
            return int(found.group(1))
        assert time.monotonic() < deadline, "the daemon never listened"
        time.sleep(0.05)


def wait_for_record(path: Path) -> dict[str, Any]:
    """
    Wait until a fake has written its record.
    """
    import time

    deadline = time.monotonic() + PATIENCE
    while not records(path):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.02)
    return records(path)[0]


class TestDevices:
    """
    The SGX device check.
    """

    def test_missing_provision_named(self, rig: Rig) -> None:
        """
        A missing provisioning device stops the start, naming both of its
        names, before AESM or the enclave is started; the start still logs
        its exit.
        """
        (rig.dev / "sgx_provision").unlink()
        run = rig.start()
        assert run.wait() == 1
        [event] = run.named("sgx_devices_missing")
        assert [
            f"{rig.dev / 'sgx_provision'} (nor {rig.dev / 'sgx/provision'})"
        ] == event["missing"]
        assert [1] == [e["status"] for e in run.named("exit")]
        assert rig.aesm_pids() == []
        assert rig.gramine_pids() == []

    def test_missing_all_named(self, rig: Rig) -> None:
        """
        With no device at all, every name of the enclave device (and the
        legacy one) and of the provisioning device is given.
        """
        (rig.dev / "sgx_provision").unlink()
        (rig.dev / "sgx_enclave").unlink()
        run = rig.start()
        assert run.wait() == 1
        [event] = run.named("sgx_devices_missing")
        assert [
            f"{rig.dev / 'sgx_enclave'} (nor {rig.dev / 'sgx/enclave'}, "
            f"{rig.dev / 'isgx'})",
            f"{rig.dev / 'sgx_provision'} (nor {rig.dev / 'sgx/provision'})",
        ] == event["missing"]

    def test_in_kernel_names(self, rig: Rig) -> None:
        """
        The in-kernel driver's names alone (no udev symlinks) are enough,
        and the start logs which nodes it found.
        """
        run = rig.start(FAKE_GRAMINE_MODE="exit:0")
        assert run.wait() == 0
        [event] = run.named("sgx_devices_present")
        assert (
            str(rig.dev / "sgx_enclave"),
            str(rig.dev / "sgx_provision"),
        ) == (
            event["enclave_device"],
            event["provision_device"],
        )

    def test_dcap_driver_names(self, rig: Rig) -> None:
        """
        The DCAP driver's names alone (C{/dev/sgx/enclave},
        C{/dev/sgx/provision}) are enough.
        """
        for name in ("enclave", "provision"):
            (rig.dev / f"sgx_{name}").rename(rig.dev / "sgx" / name)
        run = rig.start(FAKE_GRAMINE_MODE="exit:0")
        assert run.wait() == 0
        [event] = run.named("sgx_devices_present")
        assert (
            str(rig.dev / "sgx/enclave"),
            str(rig.dev / "sgx/provision"),
        ) == (
            event["enclave_device"],
            event["provision_device"],
        )

    def test_udev_symlinks(self, tmp_path: Path) -> None:
        """
        With both names present (udev's symlinks to the in-kernel nodes),
        the in-kernel names are used.
        """
        (tmp_path / "sgx").mkdir()
        for name in ("enclave", "provision"):
            (tmp_path / f"sgx_{name}").touch()
            (tmp_path / "sgx" / name).symlink_to(f"../sgx_{name}")
        settings = parse_settings(
            [
                "--enclave-device",
                f"{tmp_path}/sgx_enclave:{tmp_path}/sgx/enclave",
                "--provision-device",
                f"{tmp_path}/sgx_provision:{tmp_path}/sgx/provision",
            ],
            {},
        )
        devices = find_devices(settings)
        assert (devices.enclave, devices.provision, devices.missing) == (
            f"{tmp_path}/sgx_enclave",
            f"{tmp_path}/sgx_provision",
            [],
        )

    def test_dangling_symlink_named(self, tmp_path: Path) -> None:
        """
        A name that is a symlink to nothing (a udev link copied into a
        container without its target) is called a dangling symlink.
        """
        (tmp_path / "sgx").mkdir()
        (tmp_path / "sgx_enclave").touch()
        (tmp_path / "sgx" / "provision").symlink_to("../sgx_provision")
        settings = Settings(
            enclave_devices=(str(tmp_path / "sgx_enclave"),),
            provision_devices=(
                str(tmp_path / "sgx_provision"),
                str(tmp_path / "sgx/provision"),
            ),
        )
        assert [
            f"{tmp_path / 'sgx_provision'} (nor {tmp_path / 'sgx/provision'}"
            " (a dangling symlink))"
        ] == find_missing_devices(settings)

    def test_missing_in_text_log(self, rig: Rig) -> None:
        """
        The text log line names the missing device.
        """
        (rig.dev / "sgx_provision").unlink()
        argv = [x for item in rig.options.items() for x in item]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "attestd.start",
                *argv,
                "--log-format=text",
            ],
            env=rig.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=False,
        )
        assert result.returncode == 1
        assert (
            f"Missing SGX device(s): {rig.dev / 'sgx_provision'} (nor "
            f"{rig.dev / 'sgx/provision'}). " in result.stderr
        )

    def test_legacy_device_accepted(self, tmp_path: Path) -> None:
        """
        The legacy C{/dev/isgx} stands in for the enclave device when
        neither of its names exists.
        """
        (tmp_path / "isgx").touch()
        (tmp_path / "provision").touch()
        settings = Settings(
            enclave_devices=(str(tmp_path / "enclave"),),
            legacy_device=str(tmp_path / "isgx"),
            provision_devices=(str(tmp_path / "provision"),),
        )
        assert find_devices(settings).enclave == str(tmp_path / "isgx")
        assert find_missing_devices(settings) == []


class TestAesm:
    """
    AESM supervision.
    """

    def test_started_with_no_daemon_and_library_path(self, rig: Rig) -> None:
        """
        AESM is started in the foreground with its library path, in its own
        directory, and the enclave starts once its socket accepts.
        """
        run = rig.start(FAKE_GRAMINE_MODE="exit:0")
        assert run.wait() == 0
        [aesm] = records(rig.aesm_record)
        assert aesm["argv"] == ["--no-daemon"]
        assert str(rig.aesm_dir) == aesm["ld_library_path"]
        assert str(rig.aesm_dir) == aesm["cwd"]
        names = [e["event"] for e in run.events if "event" in e]
        assert names.index("aesm_ready") < names.index("child_started")
        rig.assert_nothing_running()

    def test_killed_ten_times_restarted_ten_times(self, rig: Rig) -> None:
        """
        Each time AESM is killed it is started again, and each new AESM
        becomes ready; the enclave keeps running throughout.
        """
        run = rig.start()
        ready = run.wait_event("aesm_ready")
        run.wait_event("child_started")
        for _ in range(10):
            os.kill(ready["pid"], signal.SIGKILL)
            old = ready["pid"]
            ready = run.wait_event(
                "aesm_ready", lambda e, old=old: e["pid"] != old
            )
        run.process.send_signal(signal.SIGTERM)
        assert run.wait() == 128 + signal.SIGTERM
        assert len(run.named("aesm_started")) == 11
        assert len(run.named("aesm_exited")) == 10
        assert len(run.named("aesm_restarting")) == 10
        assert len(set(rig.aesm_pids())) == 11
        assert len(run.named("child_started")) == 1
        # Backoff doubles from 0.01 s and stops at 0.05 s.
        delays = [e["delay"] for e in run.named("aesm_restarting")]
        assert delays == [0.01, 0.02, 0.04] + [0.05] * 7
        rig.assert_nothing_running()

    def test_never_ready(self, rig: Rig) -> None:
        """
        An AESM whose socket never comes up stops the start after the
        bounded wait, with an error naming the socket; the enclave never
        starts and the hung AESM is killed.
        """
        rig.options["--aesm-ready-timeout"] = "0.5"
        rig.options["--aesm-stop-timeout"] = "0.2"
        run = rig.start(FAKE_AESM_MODE="hang")
        assert run.wait() == 1
        [event] = run.named("aesm_not_ready")
        assert str(rig.socket) == event["socket"]
        assert event["timeout"] == 0.5
        assert event["log_level"]["name"] != "critical"
        assert run.named("child_started") == []
        assert rig.gramine_pids() == []
        assert len(rig.aesm_pids()) == 1
        rig.assert_nothing_running()

    def test_crash_loop_bounded(self, rig: Rig) -> None:
        """
        An AESM that crashes at every start is restarted with backoff until
        the wait is over, then the start fails.
        """
        rig.options["--aesm-ready-timeout"] = "0.5"
        run = rig.start(FAKE_AESM_MODE="crash")
        assert run.wait() == 1
        assert len(run.named("aesm_not_ready")) == 1
        assert len(run.named("aesm_exited")) >= 2
        assert rig.gramine_pids() == []
        rig.assert_nothing_running()

    def test_host_socket_used(self, rig: Rig) -> None:
        """
        When the AESM socket already accepts connections (a host AESM
        mounted into the container), no AESM is started.
        """
        with socket.socket(socket.AF_UNIX) as host:
            host.bind(str(rig.socket))
            host.listen(16)
            run = rig.start(FAKE_GRAMINE_MODE="exit:0")
            assert run.wait() == 0
        [event] = run.named("aesm_host_socket")
        assert str(rig.socket) == event["socket"]
        assert rig.aesm_pids() == []
        assert run.named("aesm_started") == []
        assert len(rig.gramine_pids()) == 1


def busy_listener(path: Path) -> tuple[socket.socket, list[socket.socket]]:
    """
    A unix socket listener that never accepts, with its backlog full: what
    a host AESM too busy to accept looks like.  Returns the listener and
    the connections filling its backlog.
    """
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(0)
    fillers = []
    for _ in range(2):
        client = socket.socket(socket.AF_UNIX)
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            client.connect(str(path))
        fillers.append(client)
    probe = socket.socket(socket.AF_UNIX)
    probe.setblocking(False)
    with probe, pytest.raises(BlockingIOError):
        probe.connect(str(path))
    return listener, fillers


class TestHostAesm:
    """
    A socket at the AESM path (the host's AESM, mounted) is never replaced
    by a local AESM.
    """

    def test_busy_host_never_replaced(self, rig: Rig) -> None:
        """
        A host AESM socket that does not accept (backlog full, never
        accepting) makes the start wait, then fail with a clear error; no
        AESM is started and the host's socket file is left as it was.
        """
        rig.options["--aesm-ready-timeout"] = "0.5"
        listener, fillers = busy_listener(rig.socket)
        before = rig.socket.stat().st_ino
        try:
            run = rig.start(FAKE_GRAMINE_MODE="exit:0")
            assert run.wait() == 1
        finally:
            for s in [listener, *fillers]:
                s.close()
        assert len(run.named("aesm_host_waiting")) == 1
        [event] = run.named("aesm_host_not_ready")
        assert (str(rig.socket), 0.5) == (event["socket"], event["timeout"])
        assert "ATTESTD_AESM=local" in event["log_format"]
        assert run.named("aesm_started") == []
        assert rig.aesm_pids() == []
        assert rig.gramine_pids() == []
        assert before == rig.socket.stat().st_ino
        assert [1] == [e["status"] for e in run.named("exit")]

    def test_busy_host_then_free(self, rig: Rig) -> None:
        """
        A host AESM that starts accepting while the start waits is used.
        """
        listener, fillers = busy_listener(rig.socket)
        try:
            run = rig.start(FAKE_GRAMINE_MODE="exit:0")
            run.wait_event("aesm_host_waiting")
            listener.setblocking(False)
            while True:
                try:
                    listener.accept()[0].close()
                except BlockingIOError:
                    break
            assert run.wait() == 0
        finally:
            for s in [listener, *fillers]:
                s.close()
        assert len(run.named("aesm_host_socket")) == 1
        assert rig.aesm_pids() == []
        assert len(rig.gramine_pids()) == 1

    def test_stale_socket_auto(self, rig: Rig) -> None:
        """
        In the default mode, a socket nobody listens on is still taken for
        the host's: the start fails rather than replace it.
        """
        rig.options["--aesm-ready-timeout"] = "0.3"
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(str(rig.socket))
        run = rig.start(FAKE_GRAMINE_MODE="exit:0")
        assert run.wait() == 1
        assert len(run.named("aesm_host_not_ready")) == 1
        assert rig.aesm_pids() == []
        assert rig.socket.is_socket()

    def test_stale_socket_local(self, rig: Rig) -> None:
        """
        With C{--aesm local}, a socket nobody listens on is this
        container's: the local AESM replaces it.
        """
        rig.options["--aesm"] = "local"
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(str(rig.socket))
        run = rig.start(FAKE_GRAMINE_MODE="exit:0")
        assert run.wait() == 0
        assert run.named("aesm_host_socket") == []
        assert len(rig.aesm_pids()) == 1

    def test_local_refuses_live_socket(self, rig: Rig) -> None:
        """
        With C{--aesm local}, an AESM already accepting on the socket is
        not replaced: the start fails, naming it.
        """
        rig.options["--aesm"] = "local"
        with socket.socket(socket.AF_UNIX) as host:
            host.bind(str(rig.socket))
            host.listen(16)
            run = rig.start(FAKE_GRAMINE_MODE="exit:0")
            assert run.wait() == 1
        [event] = run.named("aesm_socket_in_use")
        assert str(rig.socket) == event["socket"]
        assert rig.aesm_pids() == []

    def test_host_mode_without_socket(self, rig: Rig) -> None:
        """
        With C{--aesm host} and no socket, the start waits for the host's
        AESM, then fails; it never starts one.
        """
        rig.options["--aesm"] = "host"
        rig.options["--aesm-ready-timeout"] = "0.3"
        run = rig.start(FAKE_GRAMINE_MODE="exit:0")
        assert run.wait() == 1
        assert len(run.named("aesm_host_not_ready")) == 1
        assert rig.aesm_pids() == []
        assert not rig.socket.exists()

    def test_not_a_socket(self, rig: Rig) -> None:
        """
        A regular file at the socket path is neither a host AESM nor
        replaced: the start fails, naming it.
        """
        rig.socket.write_text("not a socket")
        run = rig.start(FAKE_GRAMINE_MODE="exit:0")
        assert run.wait() == 1
        [event] = run.named("aesm_socket_not_socket")
        assert str(rig.socket) == event["socket"]
        assert rig.aesm_pids() == []
        assert rig.socket.read_text() == "not a socket"


class TestChild:
    """
    The enclave child: signals and exit status.
    """

    def test_sigterm_reaches_daemon(self, rig: Rig) -> None:
        """
        SIGTERM sent to the start command reaches the daemon (the real
        C{twistd -n attestd} with the simulated attestation source, whose
        certificate C{attestd verify} accepts), which shuts down cleanly and
        then, as twistd does, dies of the signal it was stopped by; the
        start exits with that status (143), logs the real pids, and leaves
        nothing running.
        """
        run = rig.start()
        aesm = run.wait_event("aesm_started")
        child = run.wait_event("child_started")
        record = wait_for_record(rig.gramine_record)
        assert child["pid"] == record["pid"]
        assert str(rig.enclave_dir) == record["cwd"]
        assert record["argv"] == ["attestd"]
        log_path = rig.tmp / "stdout.log"
        port = wait_for_daemon(log_path)
        assert "SIMULATED" in log_path.read_text()
        verified = subprocess.run(
            [
                sys.executable,
                "-m",
                "attestd.cli",
                "verify",
                f"https://127.0.0.1:{port}",
                "--trust-root",
                str(rig.state / "root.pem"),
                "--collateral",
                str(rig.state / "collateral.json"),
                "--any-enclave",
            ],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=False,
            cwd=ROOT,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        run.process.send_signal(signal.SIGTERM)
        assert run.wait() == 128 + signal.SIGTERM
        [forwarded] = run.named("signal_forwarded")
        assert ("SIGTERM", child["pid"]) == (
            forwarded["signal"],
            forwarded["pid"],
        )
        [exited] = run.named("child_exited")
        assert (128 + signal.SIGTERM, child["pid"]) == (
            exited["status"],
            exited["pid"],
        )
        log = log_path.read_text()
        assert "Received SIGTERM, shutting down." in log
        assert "attestd stopped" in log
        [stopped] = run.named("aesm_stopped")
        assert aesm["pid"] == stopped["pid"]
        assert isinstance(stopped["pid"], int)
        assert [128 + signal.SIGTERM] == [
            e["status"] for e in run.named("exit")
        ]
        rig.assert_nothing_running()

    def test_sigint_forwarded(self, rig: Rig) -> None:
        """
        SIGINT is forwarded as SIGINT, and the status is the daemon's
        (130).
        """
        run = rig.start()
        run.wait_event("child_started")
        wait_for_daemon(rig.tmp / "stdout.log")
        run.process.send_signal(signal.SIGINT)
        assert run.wait() == 128 + signal.SIGINT
        assert run.named("signal_forwarded")[0]["signal"] == "SIGINT"
        assert "Received SIGINT" in rig.tmp.joinpath("stdout.log").read_text()
        rig.assert_nothing_running()

    @pytest.mark.parametrize(
        ("mode", "status"),
        [("exit:7", 7), ("exit:0", 0), ("signal:9", 137), ("signal:6", 134)],
    )
    def test_exit_status_is_childs(
        self, rig: Rig, mode: str, status: int
    ) -> None:
        """
        The start command exits with the enclave's status, 128 + N when it
        died of signal N, and stops AESM.
        """
        run = rig.start(FAKE_GRAMINE_MODE=mode)
        assert status == run.wait()
        assert status == run.named("child_exited")[0]["status"]
        assert status == run.named("exit")[0]["status"]
        rig.assert_nothing_running()

    def test_missing_manifest(self, rig: Rig) -> None:
        """
        The child runs in the enclave directory: without the signed
        manifest there, gramine-sgx fails and so does the start.
        """
        (rig.enclave_dir / "attestd.manifest.sgx").unlink()
        run = rig.start()
        assert run.wait() == 1
        rig.assert_nothing_running()

    def test_signal_before_child(self, rig: Rig) -> None:
        """
        SIGTERM while waiting for AESM stops the start (status 143) without
        starting the enclave, and kills AESM.
        """
        rig.options["--aesm-ready-timeout"] = "60"
        rig.options["--aesm-stop-timeout"] = "0.2"
        run = rig.start(FAKE_AESM_MODE="hang")
        run.wait_event("aesm_started")
        run.process.send_signal(signal.SIGTERM)
        assert run.wait() == 128 + signal.SIGTERM
        assert len(run.named("signal_stop")) == 1
        assert rig.gramine_pids() == []
        rig.assert_nothing_running()

    def test_unknown_command(self, rig: Rig) -> None:
        """
        A gramine command that does not exist fails the start clearly.
        """
        rig.options["--gramine-command"] = str(rig.tmp / "no-such-loader")
        run = rig.start()
        assert run.wait() == 1
        [event] = run.named("child_spawn_failed")
        assert (
            f"{rig.tmp / 'no-such-loader'}: no such executable"
            == (event["reason"])
        )
        rig.assert_nothing_running()

    def test_unknown_aesm(self, rig: Rig) -> None:
        """
        An AESM binary that does not exist fails the start at once, naming
        it.
        """
        rig.options["--aesm-binary"] = str(rig.tmp / "no-aesm")
        run = rig.start()
        assert run.wait() == 1
        [event] = run.named("aesm_spawn_failed")
        assert f"{rig.tmp / 'no-aesm'}: no such executable" == event["reason"]
        assert rig.gramine_pids() == []


class TestQcnlConfig:
    """
    The quote provider library's configuration.
    """

    def test_written_at_start(self, rig: Rig) -> None:
        """
        The start command writes the PCCS settings it was given.
        """
        rig.options["--pccs-use-secure-cert"] = "false"
        rig.options["--collateral-service"] = "https://127.0.0.1:8082/v4/"
        run = rig.start(FAKE_GRAMINE_MODE="exit:0")
        assert run.wait() == 0
        config = json.loads(rig.qcnl.read_text())
        assert (
            (config["pccs_url"])
            == "https://127.0.0.1:8081/sgx/certification/v4/"
        )
        assert config["use_secure_cert"] is False
        assert config["collateral_service"] == "https://127.0.0.1:8082/v4/"
        assert len(run.named("qcnl_config_written")) == 1

    def test_write_failure(self, rig: Rig) -> None:
        """
        A configuration that cannot be written fails the start, naming the
        file, and the start logs its exit like every other path.
        """
        rig.options["--qcnl-config"] = str(rig.tmp / "no-such-dir" / "q.conf")
        run = rig.start(FAKE_GRAMINE_MODE="exit:0")
        assert run.wait() == 1
        [event] = run.named("qcnl_config_failed")
        assert str(rig.tmp / "no-such-dir" / "q.conf") == event["path"]
        assert [1] == [e["status"] for e in run.named("exit")]
        assert run.events[-1]["event"] == "exit"
        assert rig.aesm_pids() == []

    def test_defaults(self) -> None:
        """
        By default the PCCS is Intel's default (on the same host), its
        certificate is checked, and collateral comes from the PCCS.
        """
        config = qcnl_config(Settings())
        assert (
            (config["pccs_url"])
            == "https://localhost:8081/sgx/certification/v4/"
        )
        assert config["use_secure_cert"] is True
        assert "collateral_service" not in config


class TestSettings:
    """
    Options, environment variables and helpers.
    """

    def test_environment(self) -> None:
        """
        Environment variables set the settings; options override them.
        """
        environ = {
            "ATTESTD_AESM_SOCKET": "/env/aesm.socket",
            "ATTESTD_PCCS_USE_SECURE_CERT": "no",
            "ATTESTD_GRAMINE_COMMAND": "gramine-sgx --x",
            "ATTESTD_AESM_BACKOFF_MAX": "5",
        }
        settings = parse_settings(["--aesm-backoff-max", "7"], environ)
        assert settings.aesm_socket == "/env/aesm.socket"
        assert settings.pccs_use_secure_cert is False
        assert settings.gramine_command == ("gramine-sgx", "--x")
        assert settings.aesm_backoff_max == 7.0

    @pytest.mark.parametrize(
        "environ",
        [
            {"ATTESTD_PCCS_USE_SECURE_CERT": "maybe"},
            {"ATTESTD_AESM_READY_TIMEOUT": "-1"},
            {"ATTESTD_LOG_FORMAT": "xml"},
            {"ATTESTD_AESM": "both"},
            {"ATTESTD_SGX_ENCLAVE_DEVICE": "/dev/sgx_enclave:"},
            {"ATTESTD_PCCS_URL": "pccs.internal:8081"},
        ],
    )
    def test_bad_environment(self, environ: dict[str, str]) -> None:
        """
        A malformed setting is a usage error (exit status 2).
        """
        with pytest.raises(SystemExit) as e:
            parse_settings([], environ)
        assert e.value.code == 2

    @pytest.mark.parametrize(
        "url",
        [
            "ftp://pccs.internal/sgx/",
            "https:///sgx/certification/v4/",
            "pccs.internal:8081",
            "https://pccs.internal:notaport/",
            "https://pccs internal/",
            "file:///etc/passwd",
        ],
    )
    def test_pccs_url_refused(self, url: str) -> None:
        """
        A PCCS URL that is not http(s) with a host is refused with one line
        naming it, and exit status 2.
        """
        result = subprocess.run(
            [sys.executable, "-m", "attestd.start", "--pccs-url", url],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=False,
            cwd=ROOT,
        )
        assert (2, "") == (result.returncode, result.stdout)
        assert [
            f"attestd.start: argument --pccs-url: not an http(s) URL with a "
            f"host: {url!r}"
        ] == result.stderr.splitlines()

    def test_pccs_url_accepted(self) -> None:
        """
        http and https URLs with a host (and a port) are accepted as given.
        """
        for url in (
            "https://pccs.internal:8081/sgx/certification/v4/",
            "http://[::1]:8081/",
        ):
            assert url == parse_settings(["--pccs-url", url], {}).pccs_url

    def test_help_defaults(self) -> None:
        """
        C{--help} shows defaults the way they are written in the settings
        (C{true}, paths joined by colons).
        """
        result = subprocess.run(
            [sys.executable, "-m", "attestd.start", "--help"],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=True,
            cwd=ROOT,
            env={**os.environ, "COLUMNS": "1000"},
        )
        text = result.stdout
        assert "ATTESTD_PCCS_USE_SECURE_CERT; default: true)" in text
        assert "default: True" not in text
        assert "default: /dev/sgx_enclave:/dev/sgx/enclave)" in text
        assert "ATTESTD_AESM; default: auto)" in text

    def test_device_lists(self) -> None:
        """
        The device settings are colon-separated lists tried in order, the
        in-kernel driver's names first by default.
        """
        defaults = parse_settings([], {})
        assert defaults.enclave_devices == (
            "/dev/sgx_enclave",
            "/dev/sgx/enclave",
        )
        assert defaults.provision_devices == (
            "/dev/sgx_provision",
            "/dev/sgx/provision",
        )
        settings = parse_settings(
            [], {"ATTESTD_SGX_PROVISION_DEVICE": "/a/p:/b/p:/c/p"}
        )
        assert settings.provision_devices == ("/a/p", "/b/p", "/c/p")

    def test_child_as_user(self, tmp_path: Path) -> None:
        """
        With a user, the child runs through C{setpriv} with that user's ids
        and the groups owning the SGX devices, and no new privileges.
        """
        device = tmp_path / "enclave"
        device.touch()
        settings = Settings(
            user="root",
            enclave_devices=(str(device),),
            gramine_command=("gramine-sgx",),
        )
        argv = child_argv(settings)
        assert argv[0] == "setpriv"
        assert "--reuid=0" in argv
        groups = dict.fromkeys(["0", str(device.stat().st_gid)])
        assert "--groups=" + ",".join(groups) in argv
        assert "--no-new-privs" in argv
        assert argv[-3:] == ["--", "gramine-sgx", "attestd"]
        assert child_argv(Settings()) == ["gramine-sgx", "attestd"]

    def test_exit_status(self) -> None:
        """
        Wait statuses become shell-style exit statuses.
        """
        assert exit_status(3 << 8) == 3
        assert exit_status(15) == 128 + 15
        assert exit_status(None) == 1
