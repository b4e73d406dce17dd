"""
Tests for the attestation sources (L{attestd.sources}) and how the daemon
chooses one: the files that gramine-ratls wrote, Gramine's
C{/dev/attestation} (against a fake attestation directory driven by the
simulated quoting enclave), and the simulated source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from attestd._collateral import Collateral
from attestd._dcap import TrustRoot, verify_quote
from attestd._evidence import OID_LEGACY_GRAMINE, RATLSEvidence
from attestd._fresh import fresh_report_data
from attestd._policy import Policy
from attestd._quote import Quote
from attestd._simulated import (
    SimulatedEnclave,
    SimulatedPKI,
    dice_claims,
)
from attestd._tls import PrivateKey, ServerIdentity
from attestd._verifier import RATLSVerdict, verify_ratls_certificate
from attestd.errors import (
    AttestationSourceError,
    ConfigurationError,
    FreshnessUnavailableError,
    NonceParseError,
    SimulatedEvidenceError,
)
from attestd.sources import (
    FilesSource,
    GramineSource,
    SimulatedSource,
    default_state_dir,
)
from attestd.tap import (
    NO_ATTESTATION,
    Options,
    check_options,
    choose_source,
    parse_duration,
)

from ._vectors import KONVERA_DER, KONVERA_KEY_PEM, KONVERA_TRUSTED_PEM
from .fakes.devattestation import FakeAttestationDevice

ENCLAVE = SimulatedEnclave(
    mrenclave=bytes.fromhex("5e" * 32),
    mrsigner=bytes.fromhex("a5" * 32),
    isv_prod_id=4,
    isv_svn=9,
)


def enclave_policy(**allow: bool) -> Policy:
    """
    A policy for L{ENCLAVE}, with the given C{allow_*} switches.
    """
    return Policy(
        mrenclave=ENCLAVE.mrenclave,
        mrsigner=ENCLAVE.mrsigner,
        isv_prod_id=ENCLAVE.isv_prod_id,
        isv_svn=ENCLAVE.isv_svn,
        **allow,
    )


def verify_simulated(
    identity: ServerIdentity,
    source: SimulatedSource,
    policy: Policy | None = None,
) -> RATLSVerdict:
    """
    Verify an identity's certificate with what the simulated source
    published in its state directory.
    """
    return verify_ratls_certificate(
        identity.certificate_der,
        Collateral.from_json(source.collateral_path.read_bytes()),
        enclave_policy() if policy is None else policy,
        now=time.time(),
        trust_root=TrustRoot.from_pem(source.root_path.read_bytes()),
    )


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    One simulated state directory for the module.
    """
    return tmp_path_factory.mktemp("simulated-state")


@pytest.fixture(scope="module")
def source(state_dir: Path) -> SimulatedSource:
    """
    A simulated source quoting L{ENCLAVE}.
    """
    return SimulatedSource(state_dir, enclave=ENCLAVE)


def key_pem(key: PrivateKey) -> bytes:
    """
    A key as PKCS#8 PEM.
    """
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


class TestFilesSource:
    def test_load_and_renew(
        self, tmp_path: Path, source: SimulatedSource
    ) -> None:
        """
        The files source serves what the files hold, and renewing reads
        them again: after the files are replaced, the new certificate.
        """
        cert, key = tmp_path / "crt.pem", tmp_path / "key.pem"
        shutil.copy(KONVERA_TRUSTED_PEM, cert)
        shutil.copy(KONVERA_KEY_PEM, key)
        files = FilesSource(cert, key)
        assert KONVERA_DER.read_bytes() == files.load().certificate_der
        minted = source.mint()
        cert.write_bytes(minted.certificate_der)
        key.write_bytes(key_pem(minted.private_key))
        assert minted.certificate_der == files.renew().certificate_der
        assert (False, "files") == (files.in_process, files.kind)

    def test_no_fresh_quote(self) -> None:
        """
        The files source cannot quote a nonce, and says that freshness
        needs an in-process source.
        """
        files = FilesSource(KONVERA_TRUSTED_PEM, KONVERA_KEY_PEM)
        with pytest.raises(FreshnessUnavailableError, match="in-process"):
            files.fresh_quote(b"spki", bytes(32))


class TestSimulatedSource:
    def test_mints_gramine_certificates(self, source: SimulatedSource) -> None:
        """
        A minted certificate is Gramine 1.8's: P-384 key, legacy quote
        binding SHA-256 of the key, DICE evidence binding the claims;
        with the published root and collateral it verifies, as
        simulated.
        """
        identity = source.mint()
        assert identity.simulated
        certificate = x509.load_der_x509_certificate(identity.certificate_der)
        key = certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert "secp384r1" == key.curve.name
        spki = identity.spki_der
        legacy = Quote.from_bytes(
            certificate.extensions.get_extension_for_oid(
                x509.ObjectIdentifier(OID_LEGACY_GRAMINE)
            ).value.value
        )
        assert (
            hashlib.sha256(spki).digest() + bytes(32)
            == legacy.report.report_data
        )
        evidence = RATLSEvidence.from_certificate(identity.certificate_der)
        assert "dice" == evidence.kind
        assert (
            hashlib.sha256(dice_claims(spki)).digest() + bytes(32)
            == evidence.quote.report.report_data
        )
        verdict = verify_simulated(identity, source)
        assert verdict.quote.simulated
        assert "UpToDate" == verdict.quote.status.value

    def test_intel_root_refuses(self, source: SimulatedSource) -> None:
        """
        Without the simulated root, the certificate is refused as
        simulated evidence.
        """
        identity = source.mint()
        with pytest.raises(SimulatedEvidenceError, match="simulated"):
            verify_ratls_certificate(
                identity.certificate_der,
                Collateral.from_json(source.collateral_path.read_bytes()),
                enclave_policy(),
                now=time.time(),
            )

    def test_state_persists(
        self, source: SimulatedSource, state_dir: Path
    ) -> None:
        """
        A second source on the same state directory keeps the root, so
        clients can keep trusting it across restarts.
        """
        again = SimulatedSource(state_dir, enclave=ENCLAVE)
        again.publish()
        assert source.pki.root_certificate_pem() == (
            again.root_path.read_bytes()
        )

    def test_fresh_quote(self, source: SimulatedSource) -> None:
        """
        A fresh quote carries SHA-256(SPKI) || SHA-256(nonce) and
        verifies with the published collateral.
        """
        spki, nonce = source.mint().spki_der, os.urandom(16)
        quote = source.fresh_quote(spki, nonce)
        verdict = verify_quote(
            quote,
            Collateral.from_json(source.collateral_path.read_bytes()),
            now=time.time(),
            trust_root=TrustRoot.from_pem(source.root_path.read_bytes()),
        )
        report = verdict.quote.report
        assert fresh_report_data(spki, nonce) == report.report_data
        assert ENCLAVE.mrenclave == report.mrenclave
        with pytest.raises(NonceParseError, match="16 to 64 bytes"):
            source.fresh_quote(spki, bytes(15))

    @pytest.mark.parametrize(
        ("status", "debug", "flags"),
        [
            ("UpToDate", False, []),
            ("OutOfDate", False, ["--allow-outdated"]),
            (
                "ConfigurationAndSWHardeningNeeded",
                True,
                ["--allow-hw-config", "--allow-sw-hardening", "--allow-debug"],
            ),
            ("Revoked", False, None),
        ],
    )
    def test_verify_arguments(
        self,
        state_dir: Path,
        status: str,
        debug: bool,
        flags: list[str] | None,
    ) -> None:
        """
        The logged command names the state files, the measurements and
        exactly the flags the status and debug flag need; none accepts
        a revoked platform.
        """
        enclave = SimulatedEnclave(
            mrenclave=ENCLAVE.mrenclave,
            mrsigner=ENCLAVE.mrsigner,
            flags=ENCLAVE.flags | (0x02 if debug else 0),
        )
        simulated = SimulatedSource(
            state_dir, enclave=enclave, tcb_status=status
        )
        arguments = simulated.verify_arguments("https://127.0.0.1:1")
        if flags is None:
            assert arguments is None
            return
        assert [
            "attestd",
            "verify",
            "https://127.0.0.1:1",
            "--trust-root",
            str(state_dir / "root.pem"),
            "--collateral",
            str(state_dir / "collateral.json"),
            "--mrenclave",
            ENCLAVE.mrenclave.hex(),
            "--mrsigner",
            ENCLAVE.mrsigner.hex(),
            "--isv-prod-id",
            "0",
            "--isv-svn",
            "0",
            *flags,
        ] == arguments

    def test_bad_status_and_state(self, tmp_path: Path) -> None:
        """
        An unknown TCB status and a state directory that cannot be made
        are refused with a message naming them.
        """
        with pytest.raises(ConfigurationError, match="UpToDate"):
            SimulatedSource(tmp_path, tcb_status="Fine")
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(AttestationSourceError, match="simulated state"):
            SimulatedSource(blocker / "state")

    def test_default_state_dir(self) -> None:
        """
        The state lives under XDG_STATE_HOME, else ~/.local/state.
        """
        assert Path("/x/attestd-simulated") == default_state_dir(
            {"XDG_STATE_HOME": "/x"}
        )
        assert (
            Path.home() / ".local/state/attestd-simulated"
            == default_state_dir({})
        )


@pytest.fixture(scope="module")
def pki(state_dir: Path) -> SimulatedPKI:
    """
    The PKI of the module's state directory.
    """
    return SimulatedPKI.load_or_create(state_dir, now=time.time())


@pytest.fixture
def device(
    tmp_path: Path, pki: SimulatedPKI
) -> Iterator[FakeAttestationDevice]:
    """
    A fake /dev/attestation quoting L{ENCLAVE}.
    """
    with FakeAttestationDevice(
        tmp_path / "attestation", pki.quoting_enclave(ENCLAVE)
    ) as fake:
        yield fake


def pki_collateral(pki: SimulatedPKI) -> Collateral:
    """
    UpToDate collateral of the PKI, issued a minute ago.
    """
    return pki.issue_collateral(time.time() - 60).collateral()


class TestGramineSource:
    def test_mint(
        self, device: FakeAttestationDevice, pki: SimulatedPKI
    ) -> None:
        """
        Minting writes the legacy then the DICE report data to
        user_report_data and reads a quote for each; the certificate
        verifies.
        """
        identity = GramineSource(device.root).mint()
        assert not identity.simulated
        spki = identity.spki_der
        assert [
            hashlib.sha256(spki).digest() + bytes(32),
            hashlib.sha256(dice_claims(spki)).digest() + bytes(32),
        ] == device.report_data_seen
        verdict = verify_ratls_certificate(
            identity.certificate_der,
            pki_collateral(pki),
            enclave_policy(),
            now=time.time(),
            trust_root=TrustRoot.from_der(pki.root_certificate_der()),
        )
        assert "dice" == verdict.evidence.kind

    def test_fresh_quote(
        self, device: FakeAttestationDevice, pki: SimulatedPKI
    ) -> None:
        """
        A fresh quote through the device carries the nonce's report
        data and verifies.
        """
        spki, nonce = b"a certificate key", os.urandom(64)
        quote = GramineSource(device.root).fresh_quote(spki, nonce)
        verdict = verify_quote(
            quote,
            pki_collateral(pki),
            now=time.time(),
            trust_root=TrustRoot.from_der(pki.root_certificate_der()),
        )
        assert fresh_report_data(spki, nonce) == (
            verdict.quote.report.report_data
        )

    def test_concurrent_quotes_serialised(
        self, device: FakeAttestationDevice
    ) -> None:
        """
        Quotes asked from many threads at once each carry their own
        report data: every write-then-read pair is made alone.
        """
        source = GramineSource(device.root)
        results: list[tuple[bytes, bytes]] = []
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(3):
                    data = hashlib.sha512(b"%d-%d" % (n, i)).digest()
                    results.append((data, source.quote(data)))
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [
            threading.Thread(target=worker, args=(n,)) for n in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert [] == errors
        assert 18 == len(results)
        for data, quote in results:
            assert data == Quote.from_bytes(quote).report.report_data

    def test_short_write_zero_padded(
        self, device: FakeAttestationDevice
    ) -> None:
        """
        The fake, like Gramine, zero-pads report data shorter than 64
        bytes.
        """
        device.user_report_data_path.write_bytes(b"short")
        quote = device.quote_path.read_bytes()
        assert b"short".ljust(64, b"\0") == (
            Quote.from_bytes(quote).report.report_data
        )

    def test_not_dcap(self, tmp_path: Path, pki: SimulatedPKI) -> None:
        """
        An enclave whose attestation_type is not dcap is refused with a
        message saying what it is and what to set.
        """
        with (
            FakeAttestationDevice(
                tmp_path / "attestation",
                pki.quoting_enclave(ENCLAVE),
                attestation_type="none",
            ) as fake,
            pytest.raises(
                AttestationSourceError,
                match=r"says 'none', not 'dcap'.*sgx.remote_attestation",
            ),
        ):
            GramineSource(fake.root)

    def test_missing_directory(self, tmp_path: Path) -> None:
        """
        A missing attestation directory means not running in Gramine.
        """
        with pytest.raises(AttestationSourceError, match="inside a Gramine"):
            GramineSource(tmp_path / "nothing")


def options(*args: str) -> Options:
    """
    Parsed plugin options.
    """
    parsed = Options()
    parsed.parseOptions(list(args))
    return parsed


class TestChooseSource:
    def test_auto_files_when_cert_given(self, tmp_path: Path) -> None:
        """
        auto with --cert uses the files, even if they are missing (the
        start then names the missing file).
        """
        chosen = choose_source(
            check_options(options("--cert", str(tmp_path / "x"), "--key", "y"))
        )
        assert isinstance(chosen, FilesSource)

    def test_auto_gramine_then_nothing(
        self, tmp_path: Path, device: FakeAttestationDevice
    ) -> None:
        """
        auto without a certificate file uses /dev/attestation when it
        exists; without either it names the two ways forward.
        """
        parsed = options("--attestation-dir", str(device.root))
        parsed["cert"] = str(tmp_path / "absent.pem")
        assert isinstance(choose_source(check_options(parsed)), GramineSource)
        parsed["attestation-dir"] = str(tmp_path / "absent")
        with pytest.raises(ConfigurationError) as e:
            choose_source(check_options(parsed))
        assert NO_ATTESTATION.format(
            cert=tmp_path / "absent.pem",
            attestation_dir=tmp_path / "absent",
        ) == str(e.value)
        assert "--attestation simulated" in str(e.value)

    def test_simulated_options(self, tmp_path: Path) -> None:
        """
        The simulated options make the enclave and the status.
        """
        chosen = choose_source(
            check_options(
                options(
                    "--attestation",
                    "simulated",
                    "--simulated-state",
                    str(tmp_path),
                    "--simulated-mrenclave",
                    "01" * 32,
                    "--simulated-isv-svn",
                    "5",
                    "--simulated-debug",
                    "--simulated-tcb-status",
                    "OutOfDate",
                    "--simulated-advisory-ids",
                    "INTEL-SA-00001, INTEL-SA-00002",
                )
            )
        )
        assert isinstance(chosen, SimulatedSource)
        assert (bytes([1] * 32), 5, True) == (
            chosen.enclave.mrenclave,
            chosen.enclave.isv_svn,
            chosen.enclave_is_debug,
        )
        assert ("OutOfDate", ("INTEL-SA-00001", "INTEL-SA-00002")) == (
            chosen.tcb_status,
            chosen.advisory_ids,
        )

    @pytest.mark.parametrize(
        ("args", "match"),
        [
            (["--attestation", "magic"], "auto, files, gramine, simulated"),
            (["--attestation", "simulated", "--cert", "c"], "--cert is for"),
            (
                ["--attestation", "gramine", "--insecure-unattested"],
                "always has evidence",
            ),
            (["--simulated-tcb-status", "OutOfDate"], "simulated only"),
            (["--simulated-debug"], "simulated only"),
            (
                ["--attestation", "simulated", "--simulated-mrenclave", "ab"],
                "64 hex digits",
            ),
            (
                ["--attestation", "simulated", "--simulated-isv-svn", "70000"],
                "0 to 65535",
            ),
            (
                ["--attestation", "simulated", "--simulated-tcb-status", "Ok"],
                "use one of UpToDate",
            ),
            (
                ["--attestation", "simulated", "--simulated-isv-svn", "x"],
                "a number from 0 to 65535",
            ),
            (["--rotate", "soon"], "a duration is"),
            (["--rotate", "0s"], "more than zero"),
            (["--rotate", "0"], "more than zero"),
            (["--rotate", "1ms"], "at least 100ms"),
            (["--rotate", "0.05"], "at least 100ms"),
            (["--rotate", "-5s"], "a duration is"),
            (["--rotate", "nan"], "a duration is"),
            (["--rotate", "inf"], "a duration is"),
            (["--rotate", "1e3"], "a duration is"),
            (["--rotate", "366d"], "a duration is"),
            (["--rotate", "8761h"], "at most 365 days"),
            (["--rotate", "9" * 400], "at most 365 days"),
        ],
    )
    def test_refused(self, args: list[str], match: str) -> None:
        """
        Inconsistent or malformed attestation options, and a rotation
        period that is not a positive duration of at most 365 days, are
        refused with a message naming the option.
        """
        with pytest.raises(ConfigurationError, match=match) as e:
            check_options(options(*args))
        assert str(e.value).startswith("--")

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("30s", 30), ("10m", 600), ("1h", 3600), ("0.2s", 0.2), ("90", 90)],
    )
    def test_durations(self, text: str, seconds: float) -> None:
        """
        Durations take s, m, h, ms or no unit (seconds).
        """
        assert seconds == pytest.approx(parse_duration(text))
