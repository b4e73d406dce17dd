# -*- test-case-name: tests.test_start -*-
"""
The container's start command: check the SGX devices, bring up AESM and keep
it up, then run the enclave (C{gramine-sgx attestd}) as a child and exit with
its status.

Run as C{python -m attestd.start}.  Every setting has a command-line option
and an environment variable (the option wins); C{--help} lists them.

What it does, in order, logging one event for each step (the C{event} field
of each log record names it; the operator documentation lists them all):

  1. Checks the SGX devices: an enclave device (C{/dev/sgx_enclave}, the
     in-kernel driver's name, or C{/dev/sgx/enclave}, the DCAP driver's name
     and a udev symlink on many distributions, or the legacy C{/dev/isgx})
     and a provisioning device (C{/dev/sgx_provision} or
     C{/dev/sgx/provision}); it names exactly the ones missing.
  2. Writes the quote provider library's configuration
     (C{/etc/sgx_default_qcnl.conf}) from the C{ATTESTD_PCCS_*} settings.
  3. Finds AESM (C{ATTESTD_AESM}): C{host} uses the socket mounted from the
     host, waiting (bounded) until it accepts a connection, and never starts
     an AESM over it; C{local} starts C{aesm_service --no-daemon} with its
     library path, waits (bounded) until its socket accepts connections, and
     restarts it with exponential backoff whenever it dies; C{auto} (the
     default) is C{host} when the socket path exists and is a socket, and
     C{local} when nothing is there.
  4. Runs C{gramine-sgx attestd} in the enclave directory, optionally as an
     unprivileged user (through C{setpriv}), forwards SIGTERM and SIGINT to
     it, and when it exits stops AESM and exits with the child's status
     (128 + N when the child was killed by signal N).

Exit statuses of its own: 1 when the start fails (missing devices, AESM never
ready, the child could not be started), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, NoReturn
from urllib.parse import urlsplit

from attrs import define, field, frozen
from twisted.internet import error as internet_error
from twisted.internet.base import DelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import (
    FileLogObserver,
    Logger,
    eventAsJSON,
    formatEventAsClassicLogText,
    globalLogBeginner,
)
from twisted.python.failure import Failure

from attestd.errors import ConfigurationError

log = Logger(namespace="attestd.start")

#: Exit status of a start that failed before or around the child.
EXIT_START_FAILED = 1
#: Exit status of a usage error.
EXIT_USAGE = 2

#: The enclave device's names, tried in order: the in-kernel driver's
#: (Linux 5.11 and later, the one Gramine opens first), then the DCAP
#: driver's, which udev also creates as a symlink on many distributions.
DEFAULT_ENCLAVE_DEVICES = ("/dev/sgx_enclave", "/dev/sgx/enclave")
#: The provisioning device's names, in the same order.
DEFAULT_PROVISION_DEVICES = ("/dev/sgx_provision", "/dev/sgx/provision")
DEFAULT_LEGACY_DEVICE = "/dev/isgx"
DEFAULT_AESM_DIR = "/opt/intel/sgx-aesm-service/aesm"
DEFAULT_AESM_BINARY = DEFAULT_AESM_DIR + "/aesm_service"
DEFAULT_AESM_SOCKET = "/var/run/aesmd/aesm.socket"
DEFAULT_QCNL_CONFIG = "/etc/sgx_default_qcnl.conf"
#: Intel's own default: a PCCS on the same host.
DEFAULT_PCCS_URL = "https://localhost:8081/sgx/certification/v4/"

#: Where AESM comes from: see L{Settings.aesm}.
AESM_MODES = ("auto", "host", "local")

#: How often the AESM socket is tried while waiting for it, in seconds.
_POLL_INTERVAL = 0.05


@frozen
class Settings:
    """
    Everything the start command can be told.

    @ivar enclave_devices: The enclave device's names, tried in order.
    @ivar provision_devices: The provisioning device's names (needed by
        AESM's quoting enclaves for DCAP), tried in order.
    @ivar legacy_device: The out-of-tree driver's device, accepted when no
        name in C{enclave_devices} exists.
    @ivar aesm: C{"host"}: use the AESM whose socket is mounted at
        C{aesm_socket}, never start one; C{"local"}: start and supervise
        C{aesm_service}, which replaces whatever is at C{aesm_socket};
        C{"auto"}: C{"host"} when C{aesm_socket} exists and is a socket,
        C{"local"} when nothing is there.
    @ivar aesm_binary: The C{aesm_service} executable.
    @ivar aesm_library_path: C{LD_LIBRARY_PATH} for AESM (its plugins).
    @ivar aesm_socket: The path of AESM's unix socket.
    @ivar aesm_ready_timeout: How long to wait for AESM's socket to accept
        connections after each start, in seconds.
    @ivar aesm_backoff_initial: The delay before the first restart of a
        dead AESM, in seconds; it doubles after each restart.
    @ivar aesm_backoff_max: The longest delay between restarts, in seconds.
    @ivar aesm_stable_after: How long AESM must stay up for the backoff to
        start again from C{aesm_backoff_initial}, in seconds.
    @ivar aesm_stop_timeout: How long AESM gets between SIGTERM and SIGKILL
        when the start command stops it, in seconds.
    @ivar gramine_command: The command that runs the enclave, without the
        manifest name.
    @ivar manifest: The manifest name passed to C{gramine_command}.
    @ivar enclave_dir: The directory holding the signed manifest.
    @ivar user: The user the enclave runs as, or C{""} to stay as is.
    @ivar qcnl_config: Where to write the quote provider library's
        configuration, or C{""} to leave it alone.
    @ivar pccs_url: The PCCS the quote provider library asks.
    @ivar pccs_use_secure_cert: Whether that PCCS's TLS certificate is
        checked.
    @ivar collateral_service: Where verification collateral comes from, or
        C{""} for the PCCS.
    @ivar log_format: C{"json"} (one JSON object a line) or C{"text"}.
    """

    enclave_devices: tuple[str, ...] = DEFAULT_ENCLAVE_DEVICES
    provision_devices: tuple[str, ...] = DEFAULT_PROVISION_DEVICES
    legacy_device: str = DEFAULT_LEGACY_DEVICE
    aesm: str = "auto"
    aesm_binary: str = DEFAULT_AESM_BINARY
    aesm_library_path: str = DEFAULT_AESM_DIR
    aesm_socket: str = DEFAULT_AESM_SOCKET
    aesm_ready_timeout: float = 30.0
    aesm_backoff_initial: float = 1.0
    aesm_backoff_max: float = 60.0
    aesm_stable_after: float = 60.0
    aesm_stop_timeout: float = 10.0
    gramine_command: tuple[str, ...] = ("gramine-sgx",)
    manifest: str = "attestd"
    enclave_dir: str = "/app"
    user: str = ""
    qcnl_config: str = DEFAULT_QCNL_CONFIG
    pccs_url: str = DEFAULT_PCCS_URL
    pccs_use_secure_cert: bool = True
    collateral_service: str = ""
    log_format: str = "json"


@frozen
class Devices:
    """
    Which SGX device nodes exist.

    @ivar enclave: The enclave device found, or L{None}.
    @ivar provision: The provisioning device found, or L{None}.
    @ivar missing: A description of each missing device, naming every path
        tried; empty when both were found.
    """

    enclave: str | None
    provision: str | None
    missing: list[str]


def _first_existing(paths: Sequence[str]) -> str | None:
    """
    The first of C{paths} that exists (following symlinks).

    @param paths: Candidate paths.
    @return: That path, or L{None}.
    """
    for path in paths:
        if os.path.exists(path):
            return path
    return None


def _describe_missing(paths: Sequence[str]) -> str:
    """
    Name the paths of a missing device, and say which are dangling
    symlinks.

    @param paths: Every path tried.
    @return: For example C{"/dev/sgx_provision (nor /dev/sgx/provision)"}.
    """
    named = [
        f"{p} (a dangling symlink)" if os.path.islink(p) else p for p in paths
    ]
    if len(named) == 1:
        return named[0]
    return f"{named[0]} (nor {', '.join(named[1:])})"


def find_devices(settings: Settings) -> Devices:
    """
    Find the SGX device nodes.

    DCAP needs an enclave device (C{/dev/sgx_enclave} or
    C{/dev/sgx/enclave}, or C{/dev/isgx} from the legacy out-of-tree driver)
    and the provisioning device (C{/dev/sgx_provision} or
    C{/dev/sgx/provision}).

    @param settings: The names to try.
    @return: What was found and what is missing.
    """
    enclave_paths = [*settings.enclave_devices, settings.legacy_device]
    enclave = _first_existing(enclave_paths)
    provision = _first_existing(settings.provision_devices)
    missing = []
    if enclave is None:
        missing.append(_describe_missing(enclave_paths))
    if provision is None:
        missing.append(_describe_missing(settings.provision_devices))
    return Devices(enclave=enclave, provision=provision, missing=missing)


def find_missing_devices(settings: Settings) -> list[str]:
    """
    Name the SGX device nodes that are missing.

    @param settings: The names to try.
    @return: A description of each missing device (see L{find_devices}),
        empty when all are there.
    """
    return find_devices(settings).missing


def qcnl_config(settings: Settings) -> dict[str, Any]:
    """
    The configuration of Intel's default quote provider library
    (C{libsgx-dcap-default-qpl}, JSON format of DCAP 1.14 and later).

    @param settings: The PCCS settings.
    @return: The JSON object to write.
    """
    config: dict[str, Any] = {
        "pccs_url": settings.pccs_url,
        "use_secure_cert": settings.pccs_use_secure_cert,
        "retry_times": 6,
        "retry_delay": 10,
        "local_pck_url": "",
        "pck_cache_expire_hours": 168,
        "verify_collateral_cache_expire_hours": 168,
    }
    if settings.collateral_service:
        config["collateral_service"] = settings.collateral_service
    return config


def write_qcnl_config(settings: Settings) -> None:
    """
    Write L{qcnl_config} to C{settings.qcnl_config}, replacing the file
    atomically.

    @param settings: The PCCS settings and the file name.
    """
    path = settings.qcnl_config
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(qcnl_config(settings), f, indent=2)
        f.write("\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def socket_accepts(path: str) -> bool:
    """
    Whether a unix socket at C{path} accepts a connection right now.

    @param path: The socket's path.
    @return: C{True} when a connection was made (and closed at once).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def socket_path_kind(path: str) -> str:
    """
    What is at the AESM socket path, without following a final symlink.

    @param path: The socket's path.
    @return: C{"missing"}, C{"socket"}, or C{"other"} (anything else,
        including a symlink).
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "other"
    return "socket" if stat.S_ISSOCK(mode) else "other"


def exit_status(wait_status: int | None) -> int:
    """
    Turn a C{wait()} status into the status a shell would report.

    @param wait_status: The raw status, or L{None} when unknown.
    @return: The exit code, or 128 + N for a child killed by signal N.
    """
    if wait_status is None:
        return EXIT_START_FAILED
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _device_groups(settings: Settings) -> list[int]:
    """
    The groups owning the SGX device nodes, so that an unprivileged child
    can open them.

    @param settings: Where the devices are.
    @return: Group ids, without duplicates.
    """
    groups: list[int] = []
    paths = (
        *settings.enclave_devices,
        settings.legacy_device,
        *settings.provision_devices,
    )
    for path in paths:
        try:
            gid = os.stat(path).st_gid
        except OSError:
            continue
        if gid not in groups:
            groups.append(gid)
    return groups


def child_argv(settings: Settings) -> list[str]:
    """
    The command line of the enclave child.

    @param settings: The command, manifest and user.
    @return: The argument vector; it starts with C{setpriv} when the child
        must run as C{settings.user}.
    @raise ConfigurationError: If C{settings.user} does not exist.
    """
    argv = [*settings.gramine_command, settings.manifest]
    if not settings.user:
        return argv
    try:
        entry = pwd.getpwnam(settings.user)
    except KeyError:
        msg = f"no such user: {settings.user}"
        raise ConfigurationError(msg) from None
    groups = [entry.pw_gid, *_device_groups(settings)]
    return [
        "setpriv",
        f"--reuid={entry.pw_uid}",
        f"--regid={entry.pw_gid}",
        "--groups=" + ",".join(str(g) for g in dict.fromkeys(groups)),
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
        *argv,
    ]


def _check_executable(command: str, environ: Mapping[str, str]) -> None:
    """
    Check that a command can be run, so that a missing program is reported
    by name rather than by a child dying with status 1.

    @param command: A path, or a name looked up on C{environ["PATH"]}.
    @param environ: The child's environment.
    @raise ConfigurationError: If the command is not there or not
        executable.
    """
    if shutil.which(command, path=environ.get("PATH", os.defpath)) is None:
        msg = f"{command}: no such executable"
        raise ConfigurationError(msg)


class _Watch(ProcessProtocol):
    """
    Report the end of a child process.

    @ivar _ended: Called with the raw wait status when the child is gone.
    """

    def __init__(self, ended: Callable[[int | None], None]) -> None:
        self._ended = ended

    def connectionMade(self) -> None:
        """
        Give the child an empty standard input.
        """
        transport: Any = self.transport
        transport.closeStdin()

    def processEnded(self, reason: Failure) -> None:
        """
        Pass the child's wait status on.

        @param reason: L{internet_error.ProcessDone} or
            L{internet_error.ProcessTerminated}.
        """
        value = reason.value
        status = getattr(value, "status", None)
        if isinstance(value, internet_error.ProcessDone):
            status = 0
        self._ended(status)


@define
class Supervisor:
    """
    Runs AESM and the enclave child, and decides the exit status.

    @ivar settings: The start command's settings.
    @ivar reactor: Spawns processes and schedules calls.
    @ivar environ: The environment passed to the children.
    @ivar stop: Called once everything has ended.
    @ivar status: The exit status, set once the outcome is known.
    """

    settings: Settings
    reactor: Any
    environ: Mapping[str, str]
    stop: Callable[[], None]
    status: int | None = None
    _aesm: Any = None
    _aesm_pid: int | None = None
    _aesm_attempt: int = 0
    _aesm_ready: bool = False
    _aesm_start_time: float = 0.0
    _aesm_deadline: float = 0.0
    _aesm_call: DelayedCall | None = None
    _stable_call: DelayedCall | None = None
    _child: Any = None
    _child_pid: int | None = None
    _child_started: bool = False
    _host_deadline: float = 0.0
    _host_waiting: bool = False
    _stopping: bool = False
    _signals: list[int] = field(factory=list)

    # Start-up.

    def start(self) -> None:
        """
        Find AESM (the host's, or start one), then start the child.
        """
        path = self.settings.aesm_socket
        kind = socket_path_kind(path)
        mode = self.settings.aesm
        if kind == "other":
            log.error(
                "{socket} exists and is not a socket: neither a host AESM "
                "nor a place for a local one",
                event="aesm_socket_not_socket",
                socket=path,
            )
            self._finish(EXIT_START_FAILED)
            return
        if mode == "host" or (mode == "auto" and kind == "socket"):
            self._host_deadline = (
                self.reactor.seconds() + self.settings.aesm_ready_timeout
            )
            self._poll_host()
            return
        if kind == "socket" and socket_accepts(path):
            log.error(
                "An AESM already accepts connections on {socket}: not "
                "starting another over it (use ATTESTD_AESM=host)",
                event="aesm_socket_in_use",
                socket=path,
            )
            self._finish(EXIT_START_FAILED)
            return
        self._start_aesm()

    # The host's AESM.

    def _poll_host(self) -> None:
        """
        Wait for the host's AESM socket to accept a connection, within
        C{aesm_ready_timeout}; never start an AESM over it.
        """
        self._aesm_call = None
        path = self.settings.aesm_socket
        if socket_path_kind(path) == "socket" and socket_accepts(path):
            log.info(
                "Using the host's AESM at {socket}",
                event="aesm_host_socket",
                socket=path,
            )
            self._start_child()
            return
        if not self._host_waiting:
            self._host_waiting = True
            log.info(
                "Waiting for the host's AESM at {socket} to accept a "
                "connection",
                event="aesm_host_waiting",
                socket=path,
                mode=self.settings.aesm,
            )
        if self.reactor.seconds() >= self._host_deadline:
            log.error(
                "The host's AESM socket {socket} did not accept a connection "
                "within {timeout} s: giving up, without starting an AESM "
                "over it (if it is a stale socket of this container, remove "
                "it or set ATTESTD_AESM=local)",
                event="aesm_host_not_ready",
                socket=path,
                timeout=self.settings.aesm_ready_timeout,
            )
            self._finish(EXIT_START_FAILED)
            return
        self._aesm_call = self.reactor.callLater(
            _POLL_INTERVAL, self._poll_host
        )

    # AESM.

    def _start_aesm(self) -> None:
        """
        Start C{aesm_service --no-daemon} and wait for its socket.
        """
        self._aesm_call = None
        environ = dict(self.environ)
        environ["LD_LIBRARY_PATH"] = self.settings.aesm_library_path
        argv = [self.settings.aesm_binary, "--no-daemon"]
        try:
            _check_executable(argv[0], environ)
        except ConfigurationError as e:
            log.error(
                "Cannot start AESM: {reason}",
                event="aesm_spawn_failed",
                binary=argv[0],
                reason=str(e),
            )
            self._finish(EXIT_START_FAILED)
            return
        try:
            self._aesm = self.reactor.spawnProcess(
                _Watch(self._aesm_ended),
                argv[0],
                argv,
                env=environ,
                path=self.settings.aesm_library_path or None,
                childFDs={0: "w", 1: 1, 2: 2},
            )
        except OSError as e:
            log.error(
                "Could not start AESM ({binary}): {reason}",
                event="aesm_spawn_failed",
                binary=argv[0],
                reason=str(e),
            )
            self._schedule_aesm_restart()
            return
        # Kept: Twisted forgets a process's pid once it has ended.
        self._aesm_pid = self._aesm.pid
        now = self.reactor.seconds()
        self._aesm_start_time = now
        self._aesm_ready = False
        if not self._child_started and not self._aesm_deadline:
            self._aesm_deadline = now + self.settings.aesm_ready_timeout
        log.info(
            "Started AESM, pid {pid}, attempt {attempt}",
            event="aesm_started",
            pid=self._aesm_pid,
            attempt=self._aesm_attempt,
            binary=argv[0],
        )
        self._aesm_call = self.reactor.callLater(0, self._poll_aesm)

    def _poll_aesm(self) -> None:
        """
        Try AESM's socket; go on when it accepts, give up at the deadline.
        """
        self._aesm_call = None
        if self._aesm is None or self._stopping:
            return
        if socket_accepts(self.settings.aesm_socket):
            self._aesm_ready = True
            self._aesm_deadline = 0.0
            log.info(
                "AESM is ready at {socket}, pid {pid}",
                event="aesm_ready",
                socket=self.settings.aesm_socket,
                pid=self._aesm_pid,
                attempt=self._aesm_attempt,
            )
            self._stable_call = self.reactor.callLater(
                self.settings.aesm_stable_after, self._aesm_stable
            )
            if not self._child_started:
                self._start_child()
            return
        now = self.reactor.seconds()
        limit = (
            self._aesm_deadline
            if not self._child_started
            else self._aesm_start_time + self.settings.aesm_ready_timeout
        )
        if now >= limit:
            self._aesm_not_ready()
            return
        self._aesm_call = self.reactor.callLater(
            _POLL_INTERVAL, self._poll_aesm
        )

    def _aesm_not_ready(self) -> None:
        """
        AESM's socket did not accept connections in time: stop the start if
        the child never ran, or kill this AESM and try again.
        """
        timeout = self.settings.aesm_ready_timeout
        if not self._child_started:
            log.error(
                "AESM did not accept connections on {socket} within "
                "{timeout} s: giving up",
                event="aesm_not_ready",
                socket=self.settings.aesm_socket,
                timeout=timeout,
            )
            self._finish(EXIT_START_FAILED)
            return
        log.error(
            "AESM did not accept connections on {socket} within {timeout} s:"
            " killing it",
            event="aesm_not_ready",
            socket=self.settings.aesm_socket,
            timeout=timeout,
        )
        self._signal_aesm("KILL")

    def _aesm_stable(self) -> None:
        """
        AESM stayed up long enough: forget earlier failures.
        """
        self._stable_call = None
        self._aesm_attempt = 0

    def _aesm_ended(self, wait_status: int | None) -> None:
        """
        AESM is gone: restart it, unless everything is stopping.

        @param wait_status: Its raw wait status.
        """
        pid = self._aesm_pid
        self._aesm = None
        self._aesm_ready = False
        for call in (self._aesm_call, self._stable_call):
            if call is not None and call.active():
                call.cancel()
        self._aesm_call = self._stable_call = None
        status = exit_status(wait_status)
        if self._stopping:
            log.info(
                "AESM stopped, status {status}",
                event="aesm_stopped",
                pid=pid,
                status=status,
            )
            self._maybe_stop()
            return
        log.error(
            "AESM (pid {pid}) exited with status {status}",
            event="aesm_exited",
            pid=pid,
            status=status,
        )
        if not self._child_started and (
            self.reactor.seconds() >= self._aesm_deadline
        ):
            self._aesm_not_ready()
            return
        self._schedule_aesm_restart()

    def _schedule_aesm_restart(self) -> None:
        """
        Start AESM again after the backoff delay.
        """
        delay = min(
            self.settings.aesm_backoff_initial * 2**self._aesm_attempt,
            self.settings.aesm_backoff_max,
        )
        self._aesm_attempt += 1
        log.warn(
            "Restarting AESM in {delay} s (attempt {attempt})",
            event="aesm_restarting",
            delay=delay,
            attempt=self._aesm_attempt,
        )
        self._aesm_call = self.reactor.callLater(delay, self._start_aesm)

    def _signal_aesm(self, name: str) -> None:
        """
        Send AESM a signal if it is running.

        @param name: C{"TERM"} or C{"KILL"}.
        """
        if self._aesm is None:
            return
        with contextlib.suppress(internet_error.ProcessExitedAlready):
            self._aesm.signalProcess(name)

    # The child.

    def _start_child(self) -> None:
        """
        Run the enclave, unless a stop signal came first.
        """
        if self._stopping:
            return
        try:
            argv = child_argv(self.settings)
            _check_executable(argv[0], self.environ)
            self._child = self.reactor.spawnProcess(
                _Watch(self._child_ended),
                argv[0],
                argv,
                env=dict(self.environ),
                path=self.settings.enclave_dir,
                childFDs={0: "w", 1: 1, 2: 2},
            )
        except (OSError, ConfigurationError) as e:
            log.error(
                "Could not start the enclave: {reason}",
                event="child_spawn_failed",
                reason=str(e),
            )
            self._finish(EXIT_START_FAILED)
            return
        self._child_started = True
        self._child_pid = self._child.pid
        log.info(
            "Started the enclave, pid {pid}: {argv}",
            event="child_started",
            pid=self._child_pid,
            argv=argv,
        )

    def _child_ended(self, wait_status: int | None) -> None:
        """
        The enclave exited: stop AESM and exit with its status.

        @param wait_status: Its raw wait status.
        """
        pid = self._child_pid
        self._child = None
        status = exit_status(wait_status)
        log.info(
            "The enclave (pid {pid}) exited with status {status}",
            event="child_exited",
            pid=pid,
            status=status,
        )
        self._finish(status)

    # Signals and the end.

    def on_signal(self, signum: int) -> None:
        """
        Forward SIGTERM or SIGINT to the child; with no child yet, stop.

        @param signum: The signal received.
        """
        name = signal.Signals(signum).name
        if self._child is not None:
            log.info(
                "Forwarding {signal} to the enclave (pid {pid})",
                event="signal_forwarded",
                signal=name,
                pid=self._child_pid,
            )
            with contextlib.suppress(internet_error.ProcessExitedAlready):
                self._child.signalProcess(name[3:])
            return
        log.info(
            "Received {signal} before the enclave started: stopping",
            event="signal_stop",
            signal=name,
        )
        self._finish(128 + signum)

    def _finish(self, status: int) -> None:
        """
        Record the exit status and stop AESM; the reactor stops once AESM is
        gone.

        @param status: The exit status.
        """
        if self.status is None:
            self.status = status
        self._stopping = True
        for call in (self._aesm_call, self._stable_call):
            if call is not None and call.active():
                call.cancel()
        self._aesm_call = self._stable_call = None
        if self._aesm is not None:
            self._signal_aesm("TERM")
            self.reactor.callLater(
                self.settings.aesm_stop_timeout, self._signal_aesm, "KILL"
            )
        self._maybe_stop()

    def _maybe_stop(self) -> None:
        """
        Stop once neither AESM nor the child is running.
        """
        if self._stopping and self._aesm is None and self._child is None:
            log.info(
                "Exiting with status {status}",
                event="exit",
                status=self.status,
            )
            self.stop()


def _env_bool(value: str) -> bool:
    """
    Read a yes/no setting.

    @param value: C{true}/C{false}, C{yes}/C{no}, C{1}/C{0}, C{on}/C{off}.
    @return: The boolean.
    @raise argparse.ArgumentTypeError: For anything else.
    """
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    msg = f"not a boolean: {value!r}"
    raise argparse.ArgumentTypeError(msg)


def _non_negative(value: str) -> float:
    """
    Read a duration in seconds.

    @param value: A decimal number, zero or more.
    @return: The number.
    @raise argparse.ArgumentTypeError: If it is not such a number.
    """
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:
        msg = f"not a non-negative number of seconds: {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def _path_list(value: str) -> tuple[str, ...]:
    """
    Read a list of paths tried in order.

    @param value: Paths separated by colons.
    @return: The paths.
    @raise argparse.ArgumentTypeError: If there is none, or one is empty.
    """
    paths = tuple(value.split(":"))
    if not all(paths):
        msg = f"not a colon-separated list of paths: {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return paths


def _aesm_mode(value: str) -> str:
    """
    Read where AESM comes from.

    @param value: C{auto}, C{host} or C{local}.
    @return: The mode.
    @raise argparse.ArgumentTypeError: For anything else.
    """
    if value not in AESM_MODES:
        msg = f"not one of {', '.join(AESM_MODES)}: {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _http_url(value: str) -> str:
    """
    Read the PCCS URL.

    @param value: An C{http} or C{https} URL with a host.
    @return: The URL, unchanged.
    @raise argparse.ArgumentTypeError: For anything else.
    """
    try:
        parts = urlsplit(value)
        # .port raises ValueError for a port that is not a number.
        good = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and (parts.port is None or parts.port > 0)
        )
    except ValueError:
        good = False
    if not good or any(c.isspace() or ord(c) < 0x20 for c in value):
        msg = f"not an http(s) URL with a host: {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _show_default(value: object) -> str:
    """
    Write a default the way the settings are written.

    @param value: A setting's default.
    @return: C{true}/C{false} for booleans, paths joined by colons, the
        value otherwise (C{""} shown as C{''}).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ":".join(value)
    if value == "":
        return "''"
    return str(value).replace("%", "%%")


#: (option, environment variable, Settings attribute, type, help).
_OPTIONS: tuple[tuple[str, str, str, Callable[[str], Any], str], ...] = (
    ("--enclave-device", "ATTESTD_SGX_ENCLAVE_DEVICE", "enclave_devices",
     _path_list, "the SGX enclave device's names, colon-separated, tried "
     "in order"),
    ("--provision-device", "ATTESTD_SGX_PROVISION_DEVICE",
     "provision_devices", _path_list, "the SGX provisioning device's "
     "names, colon-separated, tried in order"),
    ("--legacy-device", "ATTESTD_SGX_LEGACY_DEVICE", "legacy_device", str,
     "the legacy out-of-tree driver's device"),
    ("--aesm", "ATTESTD_AESM", "aesm", _aesm_mode,
     "host: use the AESM socket mounted from the host, never start one; "
     "local: run aesm_service here; auto: host when the socket path is a "
     "socket, local when nothing is there"),
    ("--aesm-binary", "ATTESTD_AESM_BINARY", "aesm_binary", str,
     "the aesm_service executable"),
    ("--aesm-library-path", "ATTESTD_AESM_LIBRARY_PATH",
     "aesm_library_path", str, "LD_LIBRARY_PATH (and directory) for AESM"),
    ("--aesm-socket", "ATTESTD_AESM_SOCKET", "aesm_socket", str,
     "AESM's unix socket"),
    ("--aesm-ready-timeout", "ATTESTD_AESM_READY_TIMEOUT",
     "aesm_ready_timeout", _non_negative,
     "seconds to wait for AESM's socket (the host's or a local one)"),
    ("--aesm-backoff-initial", "ATTESTD_AESM_BACKOFF_INITIAL",
     "aesm_backoff_initial", _non_negative,
     "seconds before the first AESM restart (doubles each time)"),
    ("--aesm-backoff-max", "ATTESTD_AESM_BACKOFF_MAX", "aesm_backoff_max",
     _non_negative, "longest delay between AESM restarts"),
    ("--aesm-stable-after", "ATTESTD_AESM_STABLE_AFTER",
     "aesm_stable_after", _non_negative,
     "seconds of uptime after which the AESM backoff resets"),
    ("--aesm-stop-timeout", "ATTESTD_AESM_STOP_TIMEOUT",
     "aesm_stop_timeout", _non_negative,
     "seconds between SIGTERM and SIGKILL when stopping AESM"),
    ("--manifest", "ATTESTD_MANIFEST", "manifest", str,
     "the manifest name given to gramine-sgx"),
    ("--enclave-dir", "ATTESTD_ENCLAVE_DIR", "enclave_dir", str,
     "the directory holding the signed manifest"),
    ("--user", "ATTESTD_USER", "user", str,
     "run the enclave as this user (empty: do not switch)"),
    ("--qcnl-config", "ATTESTD_QCNL_CONFIG", "qcnl_config", str,
     "where to write the quote provider configuration (empty: leave it)"),
    ("--pccs-url", "ATTESTD_PCCS_URL", "pccs_url", _http_url,
     "the PCCS the quote provider library uses (an http or https URL)"),
    ("--pccs-use-secure-cert", "ATTESTD_PCCS_USE_SECURE_CERT",
     "pccs_use_secure_cert", _env_bool,
     "check the PCCS's TLS certificate (true/false)"),
    ("--collateral-service", "ATTESTD_COLLATERAL_SERVICE",
     "collateral_service", str,
     "where verification collateral comes from (empty: the PCCS)"),
    ("--log-format", "ATTESTD_LOG_FORMAT", "log_format", str,
     "json or text"),
)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """
    An argument parser that reports a usage error as one line.
    """

    def error(self, message: str) -> NoReturn:
        """
        Write C{attestd.start: MESSAGE} and exit with status 2.

        @param message: What is wrong.
        """
        self.exit(EXIT_USAGE, f"attestd.start: {message}\n")


def parse_settings(
    argv: Sequence[str], environ: Mapping[str, str]
) -> Settings:
    """
    Read the settings from the command line, then the environment.

    @param argv: The arguments, without the program name.
    @param environ: The environment.
    @return: The settings.
    @raise SystemExit: With status 2 on a usage error, after writing it as
        one line to standard error.
    """
    parser = _Parser(
        prog="python -m attestd.start",
        description=(
            "Check the SGX devices, supervise AESM and run the attestd "
            "enclave (gramine-sgx) as a child."
        ),
    )
    defaults = Settings()
    for option, variable, name, kind, text in _OPTIONS:
        default = getattr(defaults, name)
        shown = _show_default(default)
        if variable in environ:
            try:
                default = kind(environ[variable])
            except argparse.ArgumentTypeError as e:
                parser.error(f"{variable}: {e}")
        parser.add_argument(
            option,
            dest=name,
            type=kind,
            default=default,
            help=f"{text} (env {variable}; default: {shown})",
        )
    command = environ.get("ATTESTD_GRAMINE_COMMAND", "gramine-sgx").split()
    parser.add_argument(
        "--gramine-command",
        dest="gramine_command",
        default=command,
        type=str.split,
        help=(
            "the command running the enclave, split on spaces "
            "(env ATTESTD_GRAMINE_COMMAND; default: gramine-sgx)"
        ),
    )
    options = parser.parse_args(list(argv))
    if options.log_format not in ("json", "text"):
        parser.error(
            f"--log-format must be json or text: {options.log_format}"
        )
    if not options.gramine_command:
        parser.error("--gramine-command is empty")
    values = vars(options)
    values["gramine_command"] = tuple(values["gramine_command"])
    return Settings(**values)


def _observer(log_format: str, out: IO[str]) -> FileLogObserver:
    """
    Make the observer that writes the start command's events.

    @param log_format: C{"json"} or C{"text"}.
    @param out: Where to write.
    @return: The observer.
    """
    if log_format == "json":
        return FileLogObserver(out, lambda event: eventAsJSON(event) + "\n")
    return FileLogObserver(out, formatEventAsClassicLogText)


def _early_exit(status: int) -> int:
    """
    Log the C{exit} event of a start that ends before the supervisor runs.

    @param status: The exit status.
    @return: C{status}.
    """
    log.info("Exiting with status {status}", event="exit", status=status)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the start command.

    @param argv: The arguments, without the program name; C{sys.argv[1:]}
        when L{None}.
    @return: The exit status: the enclave's, or L{EXIT_START_FAILED}.
    """
    from twisted.internet import reactor as installed

    # The global reactor provides IReactorProcess and IReactorTime, which
    # mypy cannot see without the zope plugin.
    reactor: Any = installed
    settings = parse_settings(
        sys.argv[1:] if argv is None else argv, os.environ
    )
    observer: Any = _observer(settings.log_format, sys.stderr)
    globalLogBeginner.beginLoggingTo(
        [observer],
        redirectStandardIO=False,
    )
    devices = find_devices(settings)
    if devices.missing:
        log.error(
            "Missing SGX device(s): {devices}. Pass them to the container "
            "(see docs/operations.md: --device HOST:/dev/sgx_enclave "
            "--device HOST:/dev/sgx_provision, where HOST is the name that "
            "exists on the host).",
            event="sgx_devices_missing",
            missing=devices.missing,
            devices="; ".join(devices.missing),
        )
        return _early_exit(EXIT_START_FAILED)
    log.info(
        "SGX devices present: {enclave_device}, {provision_device}",
        event="sgx_devices_present",
        enclave_device=devices.enclave,
        provision_device=devices.provision,
    )
    if settings.qcnl_config:
        try:
            write_qcnl_config(settings)
        except OSError as e:
            log.error(
                "Could not write {path}: {reason}",
                event="qcnl_config_failed",
                path=settings.qcnl_config,
                reason=str(e),
            )
            return _early_exit(EXIT_START_FAILED)
        log.info(
            "Wrote {path}: PCCS {pccs_url}, secure cert {use_secure_cert}",
            event="qcnl_config_written",
            path=settings.qcnl_config,
            pccs_url=settings.pccs_url,
            use_secure_cert=settings.pccs_use_secure_cert,
            collateral_service=settings.collateral_service or None,
        )

    supervisor = Supervisor(
        settings=settings,
        reactor=reactor,
        environ=dict(os.environ),
        stop=reactor.stop,
    )

    def on_signal(signum: int, frame: object) -> None:
        reactor.callFromThread(supervisor.on_signal, signum)

    def install_handlers() -> None:
        # Replaces the handlers the reactor installed, which would stop it.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        supervisor.start()

    reactor.callWhenRunning(install_handlers)
    reactor.run()
    return (
        EXIT_START_FAILED if supervisor.status is None else supervisor.status
    )


if __name__ == "__main__":
    raise SystemExit(main())
