"""
Benchmark: HTTPS throughput and memory of the daemon beside plain
C{twistd web} on the same machine, certificate and client.

Both servers run as C{twistd -n} subprocesses on 127.0.0.1 and serve the
real konvera RA-TLS certificate (public test material):

  - attestd: C{twistd -n attestd --attestation files}, answering
    C{/healthz} (a tiny built-in resource);
  - baseline: C{twistd -n web} with an C{ssl:} listener, answering a tiny
    static file.

The same client (stdlib C{http.client} in a few threads) measures
requests per second over keep-alive connections and over a new TLS
connection per request, then reads each server's resident memory
(C{VmRSS}, C{VmHWM}).  Figures are printed side by side with the ratio
attestd / baseline.  Usage: C{python bench/serve.py [--requests N]}.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
CERTS = HERE.parent / "tests" / "vectors" / "gramine-ratls-certs"
CERT_PEM = CERTS / "konvera_gramine_legacy_cert.pem"
KEY_DER = CERTS / "konvera_gramine_legacy_key.der"


def twistd() -> str:
    beside = Path(sys.executable).with_name("twistd")
    return str(beside) if beside.exists() else shutil.which("twistd") or ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"server exited with {process.returncode}"
            raise RuntimeError(msg)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    msg = "server did not start"
    raise RuntimeError(msg)


@contextmanager
def server(argv: list[str], port: int, cwd: Path) -> Iterator[int]:
    log = (cwd / f"server-{port}.log").open("wb")
    process = subprocess.Popen(
        argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_listening(port, process)
        yield process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def memory(pid: int) -> dict[str, int]:
    """
    VmRSS and VmHWM of C{pid}, in KiB.
    """
    text = Path(f"/proc/{pid}/status").read_text()
    return {
        name: int(re.search(rf"^{name}:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]
        for name in ("VmRSS", "VmHWM")
    }


def context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def load(
    port: int, path: str, requests: int, threads: int, keep: bool
) -> float:
    """
    Requests per second: C{requests} GETs of C{path} from C{threads}
    threads, over one keep-alive connection per thread or a new TLS
    connection per request.
    """
    per_thread = requests // threads
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            conn = None
            for _ in range(per_thread):
                if conn is None or not keep:
                    conn = http.client.HTTPSConnection(
                        "127.0.0.1", port, context=context(), timeout=30
                    )
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    msg = f"status {response.status}"
                    raise RuntimeError(msg)
                if not keep:
                    conn.close()
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return per_thread * threads / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "root").mkdir()
        (work / "root" / "healthz").write_text("ok\n")
        # The baseline's ssl: endpoint wants a plain PEM key file.
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_der_private_key(KEY_DER.read_bytes(), None)
        key_pem = work / "key.pem"
        key_pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        os.chmod(key_pem, 0o600)
        servers = {
            "attestd": lambda port: [
                twistd(),
                "-n",
                "--pidfile=",
                "--logfile=/dev/null",
                "attestd",
                "--attestation",
                "files",
                "--cert",
                str(CERT_PEM),
                "--key",
                str(key_pem),
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            "twistd web": lambda port: [
                twistd(),
                "-n",
                "--pidfile=",
                "--logfile=/dev/null",
                "web",
                "--path",
                str(work / "root"),
                "--listen",
                f"ssl:{port}:interface=127.0.0.1:privateKey={key_pem}"
                f":certKey={CERT_PEM}",
            ],
        }
        for name, make in servers.items():
            port = free_port()
            with server(make(port), port, work) as pid:
                before = memory(pid)
                keep = load(
                    port, "/healthz", args.requests, args.threads, True
                )
                new = load(
                    port, "/healthz", args.requests // 4, args.threads, False
                )
                after = memory(pid)
            results[name] = {
                "keep-alive req/s": keep,
                "new-connection req/s": new,
                "RSS before KiB": before["VmRSS"],
                "RSS after KiB": after["VmRSS"],
                "peak RSS KiB": after["VmHWM"],
            }
    base = results["twistd web"]
    print(f"{'figure':24} {'attestd':>12} {'twistd web':>12} {'ratio':>8}")
    for figure, value in results["attestd"].items():
        print(
            f"{figure:24} {value:12.1f} {base[figure]:12.1f} "
            f"{value / base[figure]:7.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
