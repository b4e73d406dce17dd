"""
Tests for the C{attestd} command: verify, inspect and measure, on the
real vectors, and verify against a live TLS server on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from OpenSSL import crypto
from twisted.internet import reactor, threads
from twisted.internet.ssl import KeyPair, PrivateCertificate
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource
from twisted.web.server import Site

from attestd.cli import main

from ._vectors import (
    AUTOMATA_BUNDLE,
    CCC_PEM,
    KONVERA_DER,
    KONVERA_KEY_DER,
    KONVERA_QUOTE,
    KONVERA_TRUSTED_PEM,
    expected,
)
from .fakes.sigstructs import generate_key, make_sigstruct, mrsigner_of

NOW = "1755236700"
KONVERA = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
OFFLINE = ["--collateral", str(AUTOMATA_BUNDLE), "--at", NOW]


def run(
    argv: list[str], environ: dict[str, str] | None = None
) -> tuple[int, str]:
    out = io.StringIO()
    status = main(argv, out=out, environ=environ or {})
    return status, out.getvalue()


def verify_konvera(*extra: str, **kwargs: Any) -> tuple[int, str]:
    return run(
        ["verify", "--cert", str(KONVERA_TRUSTED_PEM), *OFFLINE, *extra],
        **kwargs,
    )


class TestVerifyFile:
    def test_accepted_with_allow_outdated(self) -> None:
        """
        The konvera certificate with the bundle and allow-outdated is
        accepted, and its measurements are printed.
        """
        status, out = verify_konvera(
            "--mrenclave", KONVERA["mrenclave"], "--allow-outdated"
        )
        assert (0, "ACCEPTED") == (status, out.splitlines()[0])
        assert KONVERA["mrenclave"] in out
        assert KONVERA["mrsigner"] in out
        assert "OutOfDate" in out
        assert "INTEL-SA-00960" in out

    def test_refused_without_allow_outdated(self) -> None:
        """
        Without allow-outdated the same certificate is refused (exit 1),
        with the TCB status and advisories as the reason.
        """
        status, out = verify_konvera("--mrenclave", KONVERA["mrenclave"])
        assert 1 == status
        assert out.startswith("REFUSED")
        assert "OutOfDate" in out

    def test_every_reason_listed(self) -> None:
        """
        Several mismatches are all reported, in JSON too.
        """
        status, out = verify_konvera(
            "--mrenclave",
            "00" * 32,
            "--mrsigner",
            "11" * 32,
            "--isv-svn",
            "3",
            "--json",
        )
        assert 1 == status
        document = json.loads(out)
        assert document["accepted"] is False
        fields = " ".join(document["reasons"])
        for name in ("mrenclave", "mrsigner", "isv_svn", "tcb_status"):
            assert name in fields

    def test_json_accepted(self) -> None:
        """
        --json prints the verdict with the collateral that decided it.
        """
        status, out = verify_konvera(
            "--mrsigner", KONVERA["mrsigner"], "--allow-outdated", "--json"
        )
        assert 0 == status
        document = json.loads(out)
        assert document["accepted"] is True
        assert KONVERA["mrenclave"] in out

    def test_environment_policy(self) -> None:
        """
        Gramine's RA_TLS_* variables set the policy when no flag does.
        """
        environ = {
            "RA_TLS_MRENCLAVE": KONVERA["mrenclave"],
            "RA_TLS_MRSIGNER": "any",
            "RA_TLS_ISV_PROD_ID": "0",
            "RA_TLS_ISV_SVN": "0",
            "RA_TLS_ALLOW_OUTDATED_TCB_INSECURE": "1",
        }
        assert 0 == verify_konvera(environ=environ)[0]
        environ["RA_TLS_ISV_SVN"] = "1"
        assert 1 == verify_konvera(environ=environ)[0]
        environ["RA_TLS_ALLOW_OUTDATED_TCB_INSECURE"] = "true"
        environ["RA_TLS_ISV_SVN"] = "0"
        assert 1 == verify_konvera(environ=environ)[0]

    def test_debug_needs_both_flags(self) -> None:
        """
        The CCC debug enclave passes only with allow-debug and
        allow-outdated together.
        """
        base = ["verify", "--cert", str(CCC_PEM), *OFFLINE, "--any-enclave"]
        assert 1 == run([*base, "--allow-outdated"])[0]
        assert 1 == run([*base, "--allow-debug"])[0]
        assert 0 == run([*base, "--allow-outdated", "--allow-debug"])[0]

    @pytest.mark.parametrize(
        "argv",
        [
            ["verify", "--cert", "/nonexistent/cert.pem", *OFFLINE],
            ["verify", "--cert", str(KONVERA_DER), "--at", NOW],
            ["verify", "--cert", str(KONVERA_DER), *OFFLINE],
            [
                "verify",
                "--cert",
                str(KONVERA_DER),
                *OFFLINE,
                "--mrenclave",
                "zz",
            ],
            ["verify", "http://127.0.0.1:1/", *OFFLINE, "--any-enclave"],
            ["verify", *OFFLINE, "--any-enclave"],
            [
                "verify",
                "--cert",
                str(KONVERA_DER),
                "--collateral",
                str(KONVERA_DER),
                "--any-enclave",
            ],
        ],
    )
    def test_usage_errors(
        self, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        Unreadable files, missing collateral or policy, malformed
        measurements and non-https URLs exit 2 with one line.
        """
        status, _ = run(argv)
        assert 2 == status
        err = capsys.readouterr().err
        assert err.startswith("attestd: ")
        assert "Traceback" not in err

    def test_garbage_certificate_is_refused(self, tmp_path: Path) -> None:
        """
        A file that is not a certificate is a usage error, not a crash.
        """
        bad = tmp_path / "bad.pem"
        bad.write_bytes(b"\x30\x82\xff\xffgarbage")
        assert (
            2
            == run(["verify", "--cert", str(bad), *OFFLINE, "--any-enclave"])[
                0
            ]
        )


class TestInspectAndMeasure:
    def test_inspect_certificate(self) -> None:
        """
        inspect shows a certificate's evidence and that its binding holds.
        """
        status, out = run(["inspect", str(KONVERA_TRUSTED_PEM), "--json"])
        document = json.loads(out)
        assert 0 == status
        assert document["kind"] == "certificate"
        assert document["key_binding"] == "holds"
        assert document["quote"]["mrenclave"] == KONVERA["mrenclave"]

    def test_inspect_quote(self) -> None:
        """
        inspect recognises a raw quote.
        """
        status, out = run(["inspect", str(KONVERA_QUOTE)])
        assert 0 == status
        assert "kind: quote" in out
        assert f"mrsigner: {KONVERA['mrsigner']}" in out

    def test_measure(self, tmp_path: Path) -> None:
        """
        measure prints a signed enclave's measurements, like
        gramine-sgx-sigstruct-view; inspect recognises the same file.
        """
        key = generate_key()
        sig = tmp_path / "attestd.sig"
        sig.write_bytes(make_sigstruct(key, bytes([7]) * 32, 5, 2))
        status, out = run(["measure", str(sig), "--json"])
        assert 0 == status
        assert json.loads(out) == {
            "mr_enclave": "07" * 32,
            "mr_signer": mrsigner_of(key).hex(),
            "isv_prod_id": 5,
            "isv_svn": 2,
            "debug_enclave": False,
        }
        assert "kind: sigstruct" in run(["inspect", str(sig)])[1]

    def test_measure_refuses_tampering(self, tmp_path: Path) -> None:
        """
        A .sig whose signed fields were altered is refused.
        """
        data = bytearray(make_sigstruct(generate_key()))
        data[960] ^= 1
        sig = tmp_path / "bad.sig"
        sig.write_bytes(bytes(data))
        assert 2 == run(["measure", str(sig)])[0]


class _Page(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hi"


@pytest_twisted.async_yield_fixture
async def tls_url() -> AsyncIterator[str]:
    """
    A TLS server on 127.0.0.1 presenting the konvera certificate.
    """
    certificate = PrivateCertificate.load(
        KONVERA_DER.read_bytes(),
        KeyPair.load(KONVERA_KEY_DER.read_bytes(), crypto.FILETYPE_ASN1),
        crypto.FILETYPE_ASN1,
    )
    factory = TLSMemoryBIOFactory(certificate.options(), False, Site(_Page()))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    yield f"https://127.0.0.1:{port.getHost().port}"
    await port.stopListening()


class TestVerifyServer:
    @pytest_twisted.ensureDeferred
    async def test_live_server(self, tls_url: str) -> None:
        """
        verify https://127.0.0.1:PORT reads the server's certificate and
        decides on it: accepted with allow-outdated, refused without.
        """
        argv = [
            "verify",
            tls_url,
            *OFFLINE,
            "--mrenclave",
            KONVERA["mrenclave"],
        ]
        status, out = await threads.deferToThread(
            run, [*argv, "--allow-outdated"]
        )
        assert (0, "ACCEPTED") == (status, out.splitlines()[0])
        status, out = await threads.deferToThread(run, argv)
        assert 1 == status

    @pytest_twisted.ensureDeferred
    async def test_nothing_listening(self, tls_url: str) -> None:
        """
        A server that cannot be reached is an I/O error (exit 2).
        """
        dead = "https://127.0.0.1:1"
        status, _ = await threads.deferToThread(
            run, ["verify", dead, *OFFLINE, "--any-enclave"]
        )
        assert 2 == status


class TestTimes:
    @pytest.mark.parametrize(
        "at", ["", " ", "1e20", "inf", "nan", "99999999999999999"]
    )
    def test_bad_at(self, at: str, capsys: pytest.CaptureFixture[str]) -> None:
        """
        An empty, infinite or out-of-range --at is a usage error, never
        "now" and never a traceback.
        """
        argv = ["verify", "--cert", str(KONVERA_DER)]
        argv += ["--collateral", str(AUTOMATA_BUNDLE), "--at", at]
        assert 2 == run([*argv, "--any-enclave", "--allow-outdated"])[0]
        assert "--at" in capsys.readouterr().err

    def test_expired_collateral_is_shown(self) -> None:
        """
        Expired collateral admitted by --allow-outdated says EXPIRED.
        """
        status, out = run(
            [
                "verify",
                "--cert",
                str(KONVERA_DER),
                "--collateral",
                str(AUTOMATA_BUNDLE),
                "--at",
                "2026-01-01T00:00:00Z",
                "--mrenclave",
                KONVERA["mrenclave"],
                "--allow-outdated",
            ]
        )
        assert 0 == status
        assert "collateral:    EXPIRED at 2025-09-14T04:36:46Z" in out


class TestAnyEnclave:
    def test_warned_once(self, capsys: pytest.CaptureFixture[str]) -> None:
        """
        RA_TLS_MRENCLAVE=any and RA_TLS_MRSIGNER=any accept any enclave,
        as in Gramine, with one one-line warning.
        """
        environ = {
            "RA_TLS_MRENCLAVE": "any",
            "RA_TLS_MRSIGNER": "any",
            "RA_TLS_ISV_PROD_ID": "any",
            "RA_TLS_ISV_SVN": "any",
            "RA_TLS_ALLOW_OUTDATED_TCB_INSECURE": "1",
        }
        assert 0 == verify_konvera(environ=environ)[0]
        assert [
            "attestd: warning: RA-TLS policy accepts any enclave: neither "
            "MRENCLAVE nor MRSIGNER is checked"
        ] == capsys.readouterr().err.splitlines()


class TestInspectUnknown:
    def test_not_an_artefact(self, capsys: pytest.CaptureFixture[str]) -> None:
        """
        inspect on a file that is none of the three kinds says what it
        accepts, in one line, with exit status 2.
        """
        readme = str(KONVERA_DER.parents[3] / "README.md")
        assert 2 == run(["inspect", readme])[0]
        err = capsys.readouterr().err
        assert "not a certificate, a quote or a SIGSTRUCT" in err
        assert 1 == len(err.splitlines())
