"""
End to end on loopback: the real daemon (C{twistd -n attestd}) serves the
real konvera RA-TLS certificate, and the real client side, the
C{attestd verify} command and a treq request through the attested agent,
decides on it with the automata-0825 collateral bundle.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor

from attestd._client import AttestedAgent, RATLSVerifier
from attestd._pccs import BundleCollateralSource
from attestd._policy import Policy
from attestd.errors import PolicyError

from ._vectors import AUTOMATA_BUNDLE, expected
from .test_daemon import Daemon, konvera_args

NOW = 1755236700
KONVERA = expected()["konvera_gramine_legacy_cert"]["source_asserts"]


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """
    The port of a daemon serving the konvera files on 127.0.0.1.
    """
    daemon = Daemon(tmp_path_factory.mktemp("e2e"), konvera_args())
    yield daemon.port()
    daemon.stop()


def attestd_verify(port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    """
    Run the installed C{attestd verify} against the daemon.
    """
    command = Path(sys.executable).with_name("attestd")
    return subprocess.run(
        [
            str(command),
            "verify",
            f"https://127.0.0.1:{port}",
            "--collateral",
            str(AUTOMATA_BUNDLE),
            "--at",
            str(NOW),
            "--mrenclave",
            KONVERA["mrenclave"],
            "--mrsigner",
            KONVERA["mrsigner"],
            "--isv-prod-id",
            "0",
            "--isv-svn",
            "0",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


class TestCommand:
    def test_accepted_with_allow_outdated(self, port: int) -> None:
        """
        attestd verify accepts the daemon with allow-outdated.
        """
        result = attestd_verify(port, "--allow-outdated")
        assert 0 == result.returncode, result.stdout + result.stderr
        assert result.stdout.startswith("ACCEPTED")
        assert KONVERA["mrenclave"] in result.stdout

    def test_refused_without(self, port: int) -> None:
        """
        Without allow-outdated it refuses, naming the TCB status.
        """
        result = attestd_verify(port)
        assert 1 == result.returncode, result.stdout + result.stderr
        assert result.stdout.startswith("REFUSED")
        assert "OutOfDate" in result.stdout


def agent(**policy: object) -> AttestedAgent:
    settings: dict[str, object] = {
        "mrenclave": bytes.fromhex(KONVERA["mrenclave"]),
        "mrsigner": bytes.fromhex(KONVERA["mrsigner"]),
        "isv_prod_id": 0,
        "isv_svn": 0,
        "allow_outdated_tcb_insecure": True,
    }
    settings.update(policy)
    verifier = RATLSVerifier(
        policy=Policy(**settings),  # type: ignore[arg-type]
        clock=lambda: float(NOW),
    )
    return AttestedAgent(
        reactor, verifier, BundleCollateralSource(AUTOMATA_BUNDLE)
    )


class TestTreq:
    @pytest_twisted.ensureDeferred
    async def test_attestation_document(self, port: int) -> None:
        """
        treq through the attested agent gets the attestation document,
        which matches the verified certificate.
        """
        client = treq.client.HTTPClient(agent())
        response = await client.get(
            f"https://127.0.0.1:{port}/.well-known/attestation"
        )
        document = await response.json()
        assert 200 == response.code
        assert KONVERA["mrenclave"] == document["mrenclave"]
        assert document["debug"] is False

    @pytest_twisted.ensureDeferred
    async def test_refusal(self, port: int) -> None:
        """
        A policy asking for a newer ISV_SVN gets a refusal, not a page.
        """
        client = treq.client.HTTPClient(agent(isv_svn=1))
        with pytest.raises(Exception) as caught:
            await client.get(
                f"https://127.0.0.1:{port}/.well-known/attestation"
            )
        reasons = [r.value for r in getattr(caught.value, "reasons", [])]
        assert any(isinstance(r, PolicyError) for r in reasons), caught.value
