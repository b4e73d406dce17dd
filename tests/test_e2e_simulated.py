"""
End to end with simulated attestation: C{twistd -n attestd --attestation
simulated} run as a subprocess on 127.0.0.1, verified by the C{attestd
verify} command it logs (with the simulated root), refused with Intel's
root, checked for freshness; each TCB status against the policy flags of
C{attestd verify} (in this process, on certificates the simulated source
mints); and the one-line start failure when there is nothing to attest
with.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.cli import main as cli_main
from attestd.sources import SimulatedSource

from .test_daemon import PATIENCE, Daemon, fetch

#: The simulated daemons of the module: name, then extra arguments.
DAEMONS = {
    "uptodate": [],
    "outofdate": [
        "--simulated-tcb-status",
        "OutOfDate",
        "--simulated-advisory-ids",
        "INTEL-SA-00615,INTEL-SA-00828",
    ],
    "debug": ["--simulated-debug", "--rotate", "0.3s"],
}


@pytest.fixture(scope="module")
def daemons(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Daemon]]:
    """
    The simulated daemons, started together, each with its own state.
    """
    tmp = tmp_path_factory.mktemp("e2e")
    started = {
        name: Daemon(
            tmp / name,
            [
                "--attestation",
                "simulated",
                "--simulated-state",
                str(tmp / name / "state"),
                "--listen",
                "tcp:0:interface=127.0.0.1",
                *extra,
            ],
        )
        for name, extra in DAEMONS.items()
    }
    try:
        for daemon in started.values():
            daemon.port()
        yield started
    finally:
        for daemon in started.values():
            daemon.stop()


def verify_command(daemon: Daemon) -> list[str]:
    """
    The C{attestd verify} command the daemon logged, as arguments.
    """
    match = daemon.wait_for(r"verify it with: (attestd verify [^\n]*)")
    return shlex.split(match.group(1))


def run_cli(arguments: list[str]) -> tuple[int, str]:
    """
    Run C{attestd ARGS...} (a separate process: C{--fresh} runs the
    reactor).

    @return: The exit status and the output (standard output, then
        standard error).
    """
    assert "attestd" == arguments[0]
    result = subprocess.run(
        [sys.executable, "-m", "attestd.cli", *arguments[1:]],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def without(arguments: list[str], flag: str, value: bool = True) -> list[str]:
    """
    C{arguments} without C{flag} (and its value).
    """
    i = arguments.index(flag)
    return arguments[:i] + arguments[i + 1 + int(value) :]


class TestDaemon:
    def test_logged_command_accepts(self, daemons: dict[str, Daemon]) -> None:
        """
        The command the daemon logs accepts it, and says the root is
        simulated.
        """
        status, output = run_cli(verify_command(daemons["uptodate"]))
        assert 0 == status, output
        assert output.startswith("ACCEPTED\n")
        assert "tcb_status:    UpToDate" in output
        assert "SIMULATED (not Intel)" in output

    def test_fresh(self, daemons: dict[str, Daemon]) -> None:
        """
        With --fresh, the client also gets and checks a fresh quote of
        its nonce.
        """
        status, output = run_cli(
            [*verify_command(daemons["uptodate"]), "--fresh", "--json"]
        )
        assert 0 == status, output
        result = json.loads(output)
        assert (True, "UpToDate") == (
            result["accepted"],
            result["fresh"]["status"],
        )
        nonce = bytes.fromhex(result["fresh"]["nonce"])
        assert 32 == len(nonce)
        assert (
            hashlib.sha256(nonce).hexdigest()
            == (result["fresh"]["report_data"][64:])
        )
        assert (
            result["certificate_sha256"]
            == (result["fresh"]["certificate_sha256"])
        )

    def test_intel_root_refuses(self, daemons: dict[str, Daemon]) -> None:
        """
        Without --trust-root (Intel's root), the server is refused as
        simulated evidence.
        """
        command = without(verify_command(daemons["uptodate"]), "--trust-root")
        status, output = run_cli(command)
        assert 1 == status, output
        assert output.startswith("REFUSED\n")
        assert "the evidence is simulated, not real SGX attestation" in output

    def test_out_of_date(self, daemons: dict[str, Daemon]) -> None:
        """
        An OutOfDate platform is accepted by its logged command, which
        carries --allow-outdated, and refused without that flag.
        """
        command = verify_command(daemons["outofdate"])
        assert "--allow-outdated" in command
        status, output = run_cli(command)
        assert 0 == status, output
        assert "advisory_ids:  INTEL-SA-00615, INTEL-SA-00828" in output
        status, output = run_cli(without(command, "--allow-outdated", False))
        assert 1 == status, output
        assert "tcb_status: expected UpToDate" in output

    def test_every_line_says_simulated(
        self, daemons: dict[str, Daemon]
    ) -> None:
        """
        Every line attestd logs (start, verify command, rotations,
        access, stop) says "simulated", and so does the attestation
        document; the rotating debug daemon stays verifiable.
        """
        daemon = daemons["debug"]
        command = verify_command(daemon)
        assert "--allow-debug" in command
        daemon.wait_for(r"Rotated the RA-TLS certificate")
        status, body, _ = fetch(daemon.port(), "/.well-known/attestation")
        assert 200 == status
        document = json.loads(body)
        assert (True, True) == (document["simulated"], document["debug"])
        assert "SIMULATED" in document["warning"]
        status, output = run_cli(command)
        assert 0 == status, output
        daemon.wait_for(r'"GET /\.well-known/attestation" 200')
        daemon.stop()
        ours = [
            line
            for line in daemon.output().splitlines()
            if "[attestd." in line or "] attestd (TLS" in line
        ]
        kinds = set(re.findall(r"\[attestd\.(\w+)#", "\n".join(ours)))
        assert {"daemon", "rotation", "access"} <= kinds
        for line in ours:
            assert "simulated" in line, line


#: Each TCB status, the flags that admit it (None: nothing does).
STATUS_FLAGS = [
    ("UpToDate", []),
    ("SWHardeningNeeded", ["--allow-sw-hardening"]),
    ("ConfigurationNeeded", ["--allow-hw-config"]),
    (
        "ConfigurationAndSWHardeningNeeded",
        ["--allow-hw-config", "--allow-sw-hardening"],
    ),
    ("OutOfDate", ["--allow-outdated"]),
    (
        "OutOfDateConfigurationNeeded",
        ["--allow-outdated", "--allow-hw-config"],
    ),
    ("Revoked", None),
]

ALL_FLAGS = [
    "--allow-outdated",
    "--allow-hw-config",
    "--allow-sw-hardening",
    "--allow-debug",
]


@pytest.fixture(scope="module")
def status_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    The simulated state shared by the TCB status tests.
    """
    return tmp_path_factory.mktemp("statuses")


def verify_file(arguments: list[str]) -> tuple[int, str]:
    """
    Run C{attestd verify ARGS} in this process (no network: --cert).
    """
    out = io.StringIO()
    status = cli_main(["verify", *arguments], out=out, environ={})
    return status, out.getvalue()


class TestTCBStatuses:
    @pytest.mark.parametrize(("status", "flags"), STATUS_FLAGS)
    def test_policy_flags(
        self,
        status_state: Path,
        tmp_path: Path,
        status: str,
        flags: list[str] | None,
    ) -> None:
        """
        A certificate minted under each TCB status is refused without
        flags (except UpToDate), accepted with exactly the flags its
        status needs, and refused whatever the flags when Revoked.
        """
        advisories = () if status == "UpToDate" else ("INTEL-SA-00999",)
        source = SimulatedSource(
            status_state, tcb_status=status, advisory_ids=advisories
        )
        identity = source.mint()
        cert = tmp_path / "cert.der"
        cert.write_bytes(identity.certificate_der)
        arguments = source.verify_arguments("https://127.0.0.1:1")
        base = [
            "--cert",
            str(cert),
            "--trust-root",
            str(source.root_path),
            "--collateral",
            str(source.collateral_path),
            "--mrenclave",
            source.enclave.mrenclave.hex(),
        ]
        plain, plain_output = verify_file(base)
        if flags is None:
            assert arguments is None
            everything, output = verify_file([*base, *ALL_FLAGS])
            assert (1, 1) == (plain, everything)
            assert "tcb_status: expected" in output
            assert "Revoked" in output
            return
        assert arguments is not None
        assert flags == arguments[len(arguments) - len(flags) :]
        if flags:
            assert 1 == plain, plain_output
            assert f"got {status}" in plain_output
            for missing in flags:
                partial = [f for f in flags if f != missing]
                assert 1 == verify_file([*base, *partial])[0]
        accepted, output = verify_file([*base, *flags])
        assert 0 == accepted, output
        assert f"tcb_status:    {status}\n" in output
        if advisories:
            assert "advisory_ids:  INTEL-SA-00999\n" in output


def test_nothing_to_attest_with(tmp_path: Path) -> None:
    """
    C{twistd -n attestd} with no certificate file and no
    /dev/attestation exits with one line naming the two ways forward.
    """
    if (
        Path("/tmp/ra-tls.crt.pem").exists()
        or Path("/dev/attestation").exists()
    ):
        pytest.skip("this machine has a certificate or /dev/attestation")
    daemon = Daemon(tmp_path, [])
    status = daemon.finish()
    output = daemon.output()
    assert 1 == status, output
    (line,) = output.strip().splitlines()
    assert line.startswith(
        "attestd: no RA-TLS certificate at /tmp/ra-tls.crt.pem and no "
        "/dev/attestation: run inside Gramine"
    )
    assert "--attestation gramine" in line
    assert "--attestation simulated for development" in line
