"""
End-to-end tests of C{twistd -n attestd} run as a subprocess, the way an
operator runs it: real files, real TLS on 127.0.0.1, real signals.

They are few and share processes where they can (the suite runs on two
cores).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ._vectors import (
    KONVERA_DER,
    KONVERA_KEY_DER,
    KONVERA_KEY_PEM,
    KONVERA_QUOTE,
    KONVERA_TRUSTED_PEM,
    expected,
)
from .test_tls import binding_certificate, key_bytes

#: How long to wait for a daemon to start or stop; generous, because the
#: suite may share two cores with other work.  Not a timed assertion.
PATIENCE = 30.0


def twistd() -> str:
    """
    The twistd script of the environment running the tests.
    """
    beside = Path(sys.executable).with_name("twistd")
    if beside.exists():
        return str(beside)
    found = shutil.which("twistd")
    assert found is not None, "twistd is not installed"
    return found


GATE_APP = textwrap.dedent(
    """
    import os
    import time

    GATE = os.environ["ATTESTD_TEST_GATE"]

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            open(GATE + ".started", "w").close()
            deadline = time.monotonic() + 30
            while not os.path.exists(GATE + ".release"):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            body = b"slow response complete\\n"
        else:
            body = b"fast\\n"
        start_response(
            "200 OK",
            [("Content-Type", "text/plain"),
             ("Content-Length", str(len(body)))],
        )
        return [body]
    """
)


class Daemon:
    """
    One C{twistd -n attestd} process with its output in a file.

    @ivar log: The file holding its standard output and error.
    @ivar process: The process.
    """

    def __init__(
        self,
        tmp: Path,
        args: list[str],
        *,
        json_log: bool = False,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.log = tmp / "out.log"
        logger = (
            ["--logger", "attestd.tap.json_log_observer"] if json_log else []
        )
        command = [
            *(prefix or []),
            twistd(),
            "-n",
            "--pidfile=",
            *logger,
            "attestd",
            *args,
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmp,
                env={**os.environ, **(env or {})},
                pass_fds=pass_fds,
            )

    def output(self) -> str:
        """
        Everything it wrote so far.
        """
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str) -> re.Match[str]:
        """
        Wait until its output matches C{pattern}.

        @raise AssertionError: If it exits first, or takes too long.
        """
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match is not None:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} not seen; output:\n{self.output()}")

    def port(self) -> int:
        """
        The port named by its start event, once it has started.
        """
        match = self.wait_for(r"listening on 127\.0\.0\.1:(\d+)")
        return int(match.group(1))

    def finish(self) -> int:
        """
        Wait for it to exit (killing it if it takes too long).

        @return: Its exit status.
        """
        try:
            return self.process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def stop(self) -> int:
        """
        SIGTERM it and wait for it to exit.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.finish()


def tls_context() -> ssl.SSLContext:
    """
    A client context accepting any certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fetch(port: int, path: str) -> tuple[int, bytes, bytes]:
    """
    GET C{path} over TLS.

    @return: The status, the body and the peer certificate DER.
    """
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=tls_context(), timeout=PATIENCE
    )
    try:
        connection.request("GET", path, headers={"User-Agent": "e2e/1"})
        assert connection.sock is not None
        der = connection.sock.getpeercert(binary_form=True)
        assert der is not None
        response = connection.getresponse()
        return response.status, response.read(), der
    finally:
        connection.close()


def konvera_args(*extra: str) -> list[str]:
    """
    Arguments serving the real konvera files in gramine-ratls's PEM form
    on a free port of 127.0.0.1.
    """
    return [
        "--cert",
        str(KONVERA_TRUSTED_PEM),
        "--key",
        str(KONVERA_KEY_PEM),
        "--listen",
        "tcp:0:interface=127.0.0.1",
        *extra,
    ]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """
    The daemon serving the konvera files, with twistd's text log.
    """
    process = Daemon(tmp_path_factory.mktemp("serve"), konvera_args())
    process.port()
    yield process
    process.stop()


class TestServe:
    def test_start_event(self, daemon: Daemon) -> None:
        """
        One start line gives the measurements, the evidence kind, the
        certificate hash and the real bound address.
        """
        want = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
        port = daemon.port()
        lines = [
            line
            for line in daemon.output().splitlines()
            if "[attestd.daemon#" in line
        ]
        assert 1 == len(lines)
        for part in [
            "legacy evidence",
            f"mrenclave={want['mrenclave']}",
            f"mrsigner={want['mrsigner']}",
            "isv_prod_id=0 isv_svn=0 debug=False",
            "certificate_sha256=0aee20be7578cb95710b975f627399f7d4c730"
            "42380263058b7db651a39990c4",
            f"listening on 127.0.0.1:{port}",
        ]:
            assert part in lines[0]

    def test_serves_certificate_and_document(self, daemon: Daemon) -> None:
        """
        A client receives exactly the certificate DER and the attestation
        document of the konvera enclave; the request is in the access
        log.
        """
        want = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
        status, body, der = fetch(daemon.port(), "/.well-known/attestation")
        assert KONVERA_DER.read_bytes() == der
        assert 200 == status
        document = json.loads(body)
        assert (want["mrenclave"], want["mrsigner"], 0, 0, False) == (
            document["mrenclave"],
            document["mrsigner"],
            document["isv_prod_id"],
            document["isv_svn"],
            document["debug"],
        )
        daemon.wait_for(
            r'\[attestd\.access#info\] 127\.0\.0\.1 "GET '
            r'/\.well-known/attestation" 200 \d+ [\d.]+s "e2e/1"'
        )

    def test_plain_http_gets_no_http(self, daemon: Daemon) -> None:
        """
        A plain HTTP request to the port gets no HTTP response, and the
        connection is closed.
        """
        received = b""
        with socket.create_connection(
            ("127.0.0.1", daemon.port()), timeout=PATIENCE
        ) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            while chunk := sock.recv(4096):
                received += chunk
        assert b"HTTP/" not in received
        # At most a TLS alert record.
        assert received[:1] in (b"", b"\x15")


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """
    A listening TCP socket on 127.0.0.1, as systemd would pass it.
    """
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


class TestSystemdJSON:
    def test_socket_activation_and_json_log(
        self, tmp_path: Path, listening_socket: socket.socket
    ) -> None:
        """
        A socket passed by systemd is served with TLS, and the JSON log
        holds the start event and the access event with their fields.
        """
        port = listening_socket.getsockname()[1]
        fd = listening_socket.fileno()
        # Like systemd: the socket as descriptor 3, LISTEN_PID naming the
        # process that runs twistd (exec keeps the pid), and a name for
        # the socket (systemd >= 227 always gives one; Twisted wants it).
        adopt = textwrap.dedent(
            f"""
            import os, sys
            if {fd} != 3:
                os.dup2({fd}, 3)
                os.close({fd})
            os.environ.update(
                LISTEN_PID=str(os.getpid()),
                LISTEN_FDS="1",
                LISTEN_FDNAMES="https",
            )
            os.execv(sys.argv[1], sys.argv[1:])
            """
        )
        prefix = [sys.executable, "-c", adopt]
        daemon = Daemon(
            tmp_path,
            [
                "--cert",
                str(KONVERA_DER),
                "--key",
                str(KONVERA_KEY_DER),
                "--listen",
                "systemd:domain=INET:index=0",
            ],
            json_log=True,
            prefix=prefix,
            pass_fds=(fd,),
        )
        listening_socket.close()
        try:
            daemon.wait_for(r'"log_namespace": "attestd.daemon"')
            status, _, der = fetch(port, "/healthz")
            daemon.wait_for(r'"log_namespace": "attestd.access"')
        finally:
            daemon.stop()
        assert (200, KONVERA_DER.read_bytes()) == (status, der)
        events = [
            json.loads(line)
            for line in daemon.output().splitlines()
            if line.startswith("{")
        ]
        (start,) = [
            e for e in events if e.get("log_namespace") == "attestd.daemon"
        ][:1]
        want = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
        assert {
            "mrenclave": want["mrenclave"],
            "mrsigner": want["mrsigner"],
            "isv_prod_id": 0,
            "isv_svn": 0,
            "debug": False,
            "evidence": "legacy",
            "addresses": [f"127.0.0.1:{port}"],
            "insecure_unattested": False,
        }.items() <= start.items()
        (access,) = [
            e for e in events if e.get("log_namespace") == "attestd.access"
        ]
        assert {
            "client": "127.0.0.1",
            "method": "GET",
            "path": "/healthz",
            "status": 200,
            "bytes": 3,
            "user_agent": "e2e/1",
        }.items() <= access.items()
        assert isinstance(access["duration"], float)


def test_insecure_unattested_says_so(tmp_path: Path) -> None:
    """
    With --insecure-unattested a certificate without evidence is served,
    and every attestd line of the start says it is insecure.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    cert = tmp_path / "plain.der"
    cert.write_bytes(binding_certificate(key, evidence=False))
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(
        key_bytes(
            key,
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
        )
    )
    daemon = Daemon(
        tmp_path / "run",
        [
            "--cert",
            str(cert),
            "--key",
            str(key_path),
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--insecure-unattested",
        ],
    )
    try:
        daemon.port()
    finally:
        daemon.stop()
    start = daemon.output().split("twisted.internet.base#info")[0]
    ours = [
        line
        for line in start.splitlines()
        if "[attestd." in line or "] attestd (TLS" in line
    ]
    assert len(ours) >= 2
    for line in ours:
        assert "INSECURE UNATTESTED" in line


def _slow_request(port: int, result: list[Any]) -> None:
    try:
        result.append(fetch(port, "/slow"))
    except (OSError, http.client.HTTPException) as e:
        result.append(e)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


class TestSIGTERM:
    def _start(self, tmp_path: Path, *extra: str) -> tuple[Daemon, Path]:
        (tmp_path / "gate_app.py").write_text(GATE_APP)
        gate = tmp_path / "gate"
        daemon = Daemon(
            tmp_path / "run",
            konvera_args("--wsgi", "gate_app:app", *extra),
            env={
                "PYTHONPATH": str(tmp_path),
                "ATTESTD_TEST_GATE": str(gate),
            },
        )
        return daemon, gate

    def _slow_in_flight(
        self, daemon: Daemon, gate: Path
    ) -> tuple[threading.Thread, list[Any]]:
        result: list[Any] = []
        thread = threading.Thread(
            target=_slow_request, args=(daemon.port(), result)
        )
        thread.start()
        deadline = time.monotonic() + PATIENCE
        while not Path(f"{gate}.started").exists():
            assert time.monotonic() < deadline, daemon.output()
            time.sleep(0.01)
        return thread, result

    def test_request_in_flight_completes(self, tmp_path: Path) -> None:
        """
        On SIGTERM the daemon stops accepting connections, the request in
        flight still completes, then the process exits by itself.
        """
        daemon, gate = self._start(tmp_path)
        try:
            port = daemon.port()
            thread, result = self._slow_in_flight(daemon, gate)
            daemon.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + PATIENCE
            while not _refused(port):
                assert time.monotonic() < deadline, daemon.output()
                time.sleep(0.01)
            assert thread.is_alive()
            Path(f"{gate}.release").touch()
            thread.join(PATIENCE)
            status = daemon.finish()
        finally:
            Path(f"{gate}.release").touch()
            daemon.stop()
        assert (200, b"slow response complete\n") == result[0][:2]
        # twistd re-raises SIGTERM once it has shut down cleanly.
        assert -signal.SIGTERM == status
        assert "Drain timeout" not in daemon.output()
        assert "Traceback" not in daemon.output()

    def test_cut_at_drain_timeout(self, tmp_path: Path) -> None:
        """
        A request still running at --drain-timeout has its connection cut;
        the process exits once the WSGI call returns.
        """
        daemon, gate = self._start(tmp_path, "--drain-timeout", "0.3")
        try:
            thread, result = self._slow_in_flight(daemon, gate)
            daemon.process.send_signal(signal.SIGTERM)
            thread.join(PATIENCE)
            assert not thread.is_alive()
            # The WSGI call cannot be interrupted: the daemon waits for
            # it with its reactor running (Twisted's own thread pool stop
            # would deadlock with it), then exits once it returns.
            daemon.wait_for("Waiting for 1 WSGI calls still running")
            Path(f"{gate}.release").touch()
            status = daemon.finish()
        finally:
            Path(f"{gate}.release").touch()
            daemon.stop()
        assert isinstance(result[0], (OSError, http.client.HTTPException))
        assert -signal.SIGTERM == status
        assert "Drain timeout: cutting 1 connections" in daemon.output()


#: Bad starts: arguments (a certificate and a key file made by
#: L{bad_starts}, "" for the real ones, then more options), what the one
#: line must name, and the cause it must give.
BAD_STARTS: dict[str, tuple[list[str], str, str]] = {
    "missing": (
        ["missing.pem", ""],
        "missing.pem",
        "cannot read: No such file or directory",
    ),
    "directory": (
        ["", "a-directory"],
        "a-directory",
        "not a regular file (a directory)",
    ),
    "fifo": (["fifo.pem", ""], "fifo.pem", "not a regular file (a FIFO)"),
    "fifo key": (["", "fifo.pem"], "fifo.pem", "not a regular file (a FIFO)"),
    "truncated": (
        ["truncated.der", ""],
        "truncated.der",
        "certificate is truncated",
    ),
    "truncated key": (
        ["", "truncated-key.pem"],
        "truncated-key.pem",
        "not a readable private key",
    ),
    "garbage": (
        ["garbage.pem", ""],
        "garbage.pem",
        "no DER certificate and no PEM certificate block",
    ),
    "garbage key": (
        ["", "garbage.pem"],
        "garbage.pem",
        "not a readable private key",
    ),
    "mismatch": (
        ["", "other-key.pem"],
        "other-key.pem",
        "does not match certificate",
    ),
    "no evidence": (
        ["plain.der", "plain-key.der"],
        "plain.der",
        "carries no RA-TLS evidence",
    ),
    "bad binding": (
        ["swapped.der", ""],
        "swapped.der",
        "does not match the certificate's public key",
    ),
    "port in use": ([], "cannot listen on tcp:", "Address already in use"),
    "empty listen": (["--listen", ""], "--listen ''", "the endpoint is empty"),
    "ssl listen": (
        ["--listen", "ssl:8443"],
        "--listen ssl:8443",
        "every listener is TLS",
    ),
    "bad tcp parameter": (
        ["--listen", "tcp:8443:foo=1"],
        "--listen tcp:8443:foo=1",
        "unknown parameter foo=",
    ),
    "app and wsgi": (
        ["--app", "a:b", "--wsgi", "c:d"],
        "--app and --wsgi",
        "cannot be used together",
    ),
    "drain nan": (["--drain-timeout", "nan"], "--drain-timeout nan", "give"),
    "negative drain": (
        ["--drain-timeout", "-5"],
        "--drain-timeout -5",
        "give a number of seconds from 0 to 86400",
    ),
    "rotate zero": (["--rotate", "0"], "--rotate 0", "more than zero"),
    "body size": (
        ["--max-body-size", "-1"],
        "--max-body-size -1",
        "give a number of bytes",
    ),
    "simulated number": (
        ["--simulated-isv-svn", "x"],
        "--simulated-isv-svn",
        "is for --attestation simulated only",
    ),
}


@pytest.fixture(scope="module")
def bad_starts(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[int, str]]]:
    """
    Start the daemon once for each bad configuration, all at once.

    @return: For each case (see L{BAD_STARTS}), its exit status and its
        whole output.
    """
    tmp = tmp_path_factory.mktemp("bad")
    der = KONVERA_DER.read_bytes()
    quote = KONVERA_QUOTE.read_bytes()
    swapped = bytearray(quote)
    swapped[368:400] = bytes(32)
    other = ec.generate_private_key(ec.SECP384R1())
    plain_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "truncated.der": der[:3000],
        "garbage.pem": b"garbage\n",
        "truncated-key.pem": KONVERA_KEY_PEM.read_bytes()[:100],
        "other-key.pem": key_bytes(
            other,
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
        ),
        "swapped.der": der.replace(quote, bytes(swapped)),
        "plain.der": binding_certificate(plain_key, evidence=False),
        "plain-key.der": key_bytes(
            plain_key,
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
        ),
    }
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    (tmp / "a-directory").mkdir()
    os.mkfifo(tmp / "fifo.pem")
    taken = socket.create_server(("127.0.0.1", 0))
    busy = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
    daemons = {}
    for name, (args, _, _) in BAD_STARTS.items():
        listen = busy if name == "port in use" else "tcp:0:interface=127.0.0.1"
        named, extra = ["", ""], args
        if args and not args[0].startswith("--"):
            named, extra = args[:2], args[2:]
        cert = str(tmp / named[0]) if named[0] else str(KONVERA_TRUSTED_PEM)
        key = str(tmp / named[1]) if named[1] else str(KONVERA_KEY_PEM)
        daemons[name] = Daemon(
            tmp / name.replace(" ", "-"),
            ["--cert", cert, "--key", key, "--listen", listen, *extra],
        )
    results = {}
    try:
        for name, process in daemons.items():
            status = process.finish()
            results[name] = (status, process.output())
    finally:
        for process in daemons.values():
            if process.process.poll() is None:
                process.process.kill()
                process.process.wait()
        taken.close()
    yield results


class TestBadStart:
    @pytest.mark.parametrize("case", list(BAD_STARTS))
    def test_one_line(
        self, bad_starts: dict[str, tuple[int, str]], case: str
    ) -> None:
        """
        A start that cannot work, whether an option makes no sense or a
        file or address cannot be used, exits with status 1 and one line
        naming the option, file or address and the cause, without
        twistd's usage text or a traceback.
        """
        _, names, cause = BAD_STARTS[case]
        status, output = bad_starts[case]
        assert 1 == status, output
        lines = output.strip().splitlines()
        assert 1 == len(lines), output
        assert lines[0].startswith("attestd: ")
        assert names in lines[0]
        assert cause in lines[0]
        assert "Traceback" not in output
