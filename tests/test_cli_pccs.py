"""
The C{attestd} command fetching collateral from a PCCS: a fake PCCS on
127.0.0.1 serves the real automata-0825 collateral over TLS with a
throwaway CA, and the command runs as a subprocess (it runs its own
reactor once).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from attestd._collateral import Collateral

from ._vectors import AUTOMATA_BUNDLE, KONVERA_TRUSTED_PEM, expected
from .fakepccs import FakePCCS, make_pki, serve_tls

KONVERA = expected()["konvera_gramine_legacy_cert"]["source_asserts"]


def attestd(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attestd.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestPCCS:
    @pytest_twisted.ensureDeferred
    async def test_verify_and_fetch(self, tmp_path: Path) -> None:
        """
        verify --pccs fetches the collateral for the certificate's
        platform and decides as with the offline bundle; collateral fetch
        writes a bundle equal to the assembled one; a PCCS whose CA is not
        given is an I/O error (exit 2), not a refusal.
        """
        fake = FakePCCS.from_vectors()
        pccs = serve_tls(reactor, fake, make_pki(), tmp_path)
        assert pccs.ca_file is not None
        common = [
            "--pccs",
            pccs.url,
            "--pccs-ca",
            str(pccs.ca_file),
            "--at",
            "1755236700",
            "--mrenclave",
            KONVERA["mrenclave"],
        ]
        bundle = tmp_path / "bundle.json"
        try:
            accepted = await deferToThread(
                attestd,
                "verify",
                "--cert",
                str(KONVERA_TRUSTED_PEM),
                *common,
                "--allow-outdated",
            )
            refused = await deferToThread(
                attestd, "verify", "--cert", str(KONVERA_TRUSTED_PEM), *common
            )
            fetched = await deferToThread(
                attestd,
                "collateral",
                "fetch",
                "--pccs",
                pccs.url,
                "--pccs-ca",
                str(pccs.ca_file),
                "--for",
                str(KONVERA_TRUSTED_PEM),
                "-o",
                str(bundle),
            )
            untrusted = await deferToThread(
                attestd,
                "verify",
                "--cert",
                str(KONVERA_TRUSTED_PEM),
                "--pccs",
                pccs.url,
                "--any-enclave",
            )
        finally:
            await pccs.stop()
        assert 0 == accepted.returncode, accepted.stdout + accepted.stderr
        assert "OutOfDate" in accepted.stdout
        assert 1 == refused.returncode, refused.stdout + refused.stderr
        assert 0 == fetched.returncode, fetched.stderr
        assert Collateral.from_json(
            AUTOMATA_BUNDLE.read_text()
        ).to_dict() == json.loads(bundle.read_text())
        assert 2 == untrusted.returncode
        assert "Traceback" not in untrusted.stderr
        assert [
            "attestd: warning: RA-TLS policy accepts any enclave: neither "
            "MRENCLAVE nor MRSIGNER is checked"
        ] == untrusted.stderr.splitlines()[:1]
        assert "certificate verify failed" in untrusted.stderr
        assert all(
            line.startswith("attestd: ")
            for line in untrusted.stderr.splitlines()
        )
