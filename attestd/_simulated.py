"""
Simulated Intel SGX DCAP attestation: a local stand-in for Intel's
provisioning infrastructure and for a platform's quoting enclave.

L{SimulatedPKI} holds a root CA, a PCK Platform (or Processor) CA, a TCB
signing certificate and a PCK key; L{SimulatedQuotingEnclave} signs quotes
in the real v3 format (attestation key, QE report signed by the PCK key,
QE authentication data, certification data type 5); and
L{SimulatedPKI.issue_collateral} signs TCB Info (v3) and QE Identity (v2)
and issues the root and PCK CRLs, in the layouts Intel's PCS serves.  The
bytes are the real formats throughout, so the verifier runs unchanged on
them; only the trust root differs.  Every certificate name says
"SIMULATED", the root is never trusted by default, and no certificate
points at any network location.

Nothing here does I/O except L{SimulatedPKI.load_or_create}, which keeps
the keys and certificates in a state directory so that clients can trust
the same root across restarts.  The time is always a parameter: a
L{datetime.datetime} (naive means UTC) or Unix seconds.

Format references: Intel "SGX ECDSA Quote Library API" (quote v3),
"SGX PCK Certificate and CRL Profile" (the SGX extension), and the PCS
v4 API ("TCB Info V3", "Enclave Identity V2").
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import struct
from pathlib import Path

from attrs import Factory, frozen
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from attestd._quote import (
    ATT_KEY_TYPE_ECDSA_P256,
    CERT_DATA_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
)
from attestd._simulated_model import (
    DEFAULT_COLLATERAL_LIFETIME,
    DEFAULT_FMSPC,
    DEFAULT_MRENCLAVE,
    DEFAULT_MRSIGNER,
    DEFAULT_QE,
    DEFAULT_QE_AUTH_DATA,
    QE_TCB_STATUSES,
    TCB_STATUSES,
    CAKind,
    CollateralOptions,
    Instant,
    QETCBLevel,
    SimulatedCollateral,
    SimulatedEnclave,
    SimulatedPlatform,
    TCBLevel,
    Window,
    as_utc,
    json_time,
    pem,
    qe_levels_with_status,
    tcb_levels_with_status,
)
from attestd._simulated_ratls import (
    GRAMINE_NOT_AFTER,
    GRAMINE_NOT_BEFORE,
    dice_claims,
    mint_ratls_certificate,
    ratls_subject,
)
from attestd._simulated_x509 import (
    OID_SGX_EXTENSIONS,
    PCK_CN,
    PLATFORM_CA_CN,
    PROCESSOR_CA_CN,
    ROOT_CA_CN,
    SGX_TYPE_SCALABLE,
    SGX_TYPE_STANDARD,
    SIMULATED_ORGANIZATION,
    TCB_SIGNING_CN,
    build_certificate,
    build_crl,
    encode_sgx_extension,
    new_key,
    raw_public_key,
    sign_raw,
    simulated_name,
)
from attestd.errors import ConfigurationError

__all__ = [
    "DEFAULT_COLLATERAL_LIFETIME",
    "DEFAULT_FMSPC",
    "DEFAULT_MRENCLAVE",
    "DEFAULT_MRSIGNER",
    "DEFAULT_QE",
    "GRAMINE_NOT_AFTER",
    "GRAMINE_NOT_BEFORE",
    "OID_SGX_EXTENSIONS",
    "QE_TCB_STATUSES",
    "SIMULATED_ORGANIZATION",
    "TCB_STATUSES",
    "CAKind",
    "CollateralOptions",
    "Instant",
    "QETCBLevel",
    "SimulatedCollateral",
    "SimulatedEnclave",
    "SimulatedPKI",
    "SimulatedPlatform",
    "SimulatedQuotingEnclave",
    "TCBLevel",
    "as_utc",
    "dice_claims",
    "is_simulated_root",
    "mint_ratls_certificate",
    "qe_levels_with_status",
    "ratls_subject",
    "tcb_levels_with_status",
]

#: Certificate lifetimes, close to Intel's.
_ROOT_LIFETIME = datetime.timedelta(days=30 * 365)
_CA_LIFETIME = datetime.timedelta(days=15 * 365)
_LEAF_LIFETIME = datetime.timedelta(days=7 * 365)
#: New certificates start this long before "now", to absorb clock skew.
_BACKDATE = datetime.timedelta(days=1)


@frozen(eq=False)
class SimulatedQuotingEnclave:
    """
    A simulated platform's quoting enclave: signs SGX DCAP v3 quotes with
    an ECDSA P-256 attestation key certified by the PCK key.

    @ivar platform: The platform (its QE, CPUSVN, PCE SVN).
    @ivar enclave: The enclave whose reports are quoted by default.
    @ivar pck_key: The PCK leaf's private key, which signs QE reports.
    @ivar pck_chain: PCK leaf, PCK CA and root certificates.
    @ivar attestation_key: The attestation key, fresh per instance.
    @ivar qe_auth_data: The QE authentication data.
    """

    platform: SimulatedPlatform
    enclave: SimulatedEnclave
    pck_key: ec.EllipticCurvePrivateKey
    pck_chain: tuple[x509.Certificate, x509.Certificate, x509.Certificate]
    attestation_key: ec.EllipticCurvePrivateKey = Factory(new_key)
    qe_auth_data: bytes = DEFAULT_QE_AUTH_DATA

    @property
    def pck_certificate(self) -> x509.Certificate:
        """
        The PCK leaf certificate.
        """
        return self.pck_chain[0]

    @property
    def qe_id(self) -> bytes:
        """
        The 16-byte QE id of the header's user data (derived from the PCK
        key, so stable for a platform).
        """
        digest = hashlib.sha256(
            b"attestd simulated QE id"
            + raw_public_key(self.pck_key.public_key())
        )
        return digest.digest()[:16]

    def certification_data(self) -> bytes:
        """
        Type 5 certification data: the PEM chain, leaf first, and one NUL
        byte, as Intel's QE writes it.

        @return: The certification data bytes.
        """
        return b"".join(pem(c) for c in self.pck_chain) + b"\0"

    def quote_for(
        self, report_data: bytes, *, enclave: SimulatedEnclave | None = None
    ) -> bytes:
        """
        Quote a report of C{enclave} (this QE's enclave by default) with
        the given report data.

        The quote signature (attestation key) covers the header and the
        report body; the QE report's data is SHA-256(attestation key ||
        QE authentication data) then 32 zero bytes, and the PCK key signs
        the QE report.

        @param report_data: Up to 64 bytes; shorter input is padded with
            zero bytes, as Gramine's C{/dev/attestation/user_report_data}
            does.
        @param enclave: The enclave to quote, if not L{enclave}.
        @return: The quote (version 3, ECDSA-P256).
        @raise ConfigurationError: If C{report_data} is longer than 64
            bytes.
        """
        if len(report_data) > 64:
            msg = f"report data is at most 64 bytes, got {len(report_data)}"
            raise ConfigurationError(msg)
        report_data = bytes(report_data).ljust(64, b"\0")
        subject = self.enclave if enclave is None else enclave
        header = (
            struct.pack(
                "<HHIHH",
                3,
                ATT_KEY_TYPE_ECDSA_P256,
                0,
                self.platform.qe_svn,
                self.platform.pcesvn,
            )
            + INTEL_QE_VENDOR_ID
            + self.qe_id
            + bytes(4)
        )
        body = subject.report_body(report_data, self.platform.cpusvn)
        signature = sign_raw(self.attestation_key, header + body)
        attestation_key = raw_public_key(self.attestation_key.public_key())
        qe_report = self.platform.qe.report_body(
            hashlib.sha256(attestation_key + self.qe_auth_data).digest()
            + bytes(32),
            self.platform.cpusvn,
        )
        qe_report_signature = sign_raw(self.pck_key, qe_report)
        certification = self.certification_data()
        signature_data = (
            signature
            + attestation_key
            + qe_report
            + qe_report_signature
            + struct.pack("<H", len(self.qe_auth_data))
            + self.qe_auth_data
            + struct.pack("<HI", CERT_DATA_PCK_CHAIN, len(certification))
            + certification
        )
        return (
            header
            + body
            + struct.pack("<I", len(signature_data))
            + signature_data
        )

    def mint_ratls_certificate(
        self,
        key: ec.EllipticCurvePrivateKey | None = None,
        *,
        enclave: SimulatedEnclave | None = None,
    ) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        """
        A Gramine 1.8-style RA-TLS certificate whose quotes this QE signs.

        @param key: The certificate key; a fresh P-384 key if C{None}.
        @param enclave: The enclave to quote, if not L{enclave}.
        @return: The certificate DER and its private key.
        """
        return mint_ratls_certificate(
            lambda data: self.quote_for(data, enclave=enclave), key
        )


def is_simulated_root(certificate: x509.Certificate) -> bool:
    """
    Whether a certificate's subject marks it as a simulated root.

    @param certificate: A certificate.
    @return: C{True} if a subject attribute contains "SIMULATED" or names
        the simulated organisation.
    """
    for attribute in certificate.subject:
        value = attribute.value
        text = value if isinstance(value, str) else value.decode("latin-1")
        if "SIMULATED" in text or text == SIMULATED_ORGANIZATION:
            return True
    return False


def _same_key(
    certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> bool:
    public = certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    spki = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    return public.public_bytes(*spki) == key.public_key().public_bytes(*spki)


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _valid_at(certificate: x509.Certificate, when: datetime.datetime) -> bool:
    return (
        certificate.not_valid_before_utc
        <= when
        <= certificate.not_valid_after_utc
    )


def _validity(
    start: datetime.datetime,
    lifetime: datetime.timedelta,
    parent: x509.Certificate | None,
) -> tuple[datetime.datetime, datetime.datetime]:
    end = start + lifetime
    if parent is not None:
        end = min(end, parent.not_valid_after_utc)
    return start, end


def _sgx_extension(
    platform: SimulatedPlatform,
    ca: CAKind,
    pck_key: ec.EllipticCurvePrivateKey,
) -> x509.UnrecognizedExtension:
    """
    The SGX extension of a PCK certificate for C{platform} under a
    C{ca} CA; the PPID and platform instance id are derived from the PCK
    key.
    """
    raw = raw_public_key(pck_key.public_key())
    sgx_type = platform.sgx_type
    if sgx_type is None:
        sgx_type = SGX_TYPE_SCALABLE if ca == "platform" else SGX_TYPE_STANDARD
    platform_ca = ca == "platform"
    value = encode_sgx_extension(
        ppid=hashlib.sha256(b"attestd simulated PPID" + raw).digest()[:16],
        components=platform.tcb_components,
        pcesvn=platform.pcesvn,
        cpusvn=platform.cpusvn,
        pce_id=platform.pce_id,
        fmspc=platform.fmspc,
        sgx_type=sgx_type,
        platform_instance_id=(
            hashlib.sha256(b"attestd simulated platform" + raw).digest()[:16]
            if platform_ca
            else None
        ),
        configuration=(
            (
                platform.dynamic_platform,
                platform.cached_keys,
                platform.smt_enabled,
            )
            if platform_ca
            else None
        ),
    )
    return x509.UnrecognizedExtension(
        x509.ObjectIdentifier(OID_SGX_EXTENSIONS), value
    )


def _ca_common_name(ca: CAKind) -> str:
    if ca == "platform":
        return PLATFORM_CA_CN
    if ca == "processor":
        return PROCESSOR_CA_CN
    msg = f"PCK CA must be 'platform' or 'processor', not {ca!r}"
    raise ConfigurationError(msg)


def _issue_root(
    key: ec.EllipticCurvePrivateKey, start: datetime.datetime
) -> x509.Certificate:
    not_before, not_after = _validity(start, _ROOT_LIFETIME, None)
    return build_certificate(
        subject=simulated_name(ROOT_CA_CN),
        public_key=key.public_key(),
        issuer=None,
        issuer_key=key,
        not_before=not_before,
        not_after=not_after,
        ca=True,
        path_length=1,
    )


def _issue_pck_ca(
    key: ec.EllipticCurvePrivateKey,
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    start: datetime.datetime,
    ca: CAKind,
) -> x509.Certificate:
    not_before, not_after = _validity(start, _CA_LIFETIME, root)
    return build_certificate(
        subject=simulated_name(_ca_common_name(ca)),
        public_key=key.public_key(),
        issuer=root,
        issuer_key=root_key,
        not_before=not_before,
        not_after=not_after,
        ca=True,
        path_length=0,
    )


def _issue_tcb_signing(
    key: ec.EllipticCurvePrivateKey,
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    start: datetime.datetime,
) -> x509.Certificate:
    not_before, not_after = _validity(start, _LEAF_LIFETIME, root)
    return build_certificate(
        subject=simulated_name(TCB_SIGNING_CN),
        public_key=key.public_key(),
        issuer=root,
        issuer_key=root_key,
        not_before=not_before,
        not_after=not_after,
        ca=False,
    )


def _issue_pck(
    key: ec.EllipticCurvePrivateKey,
    pck_ca: x509.Certificate,
    pck_ca_key: ec.EllipticCurvePrivateKey,
    *,
    platform: SimulatedPlatform,
    ca: CAKind,
    validity: tuple[datetime.datetime, datetime.datetime],
    serial: int | None = None,
) -> x509.Certificate:
    return build_certificate(
        subject=simulated_name(PCK_CN),
        public_key=key.public_key(),
        issuer=pck_ca,
        issuer_key=pck_ca_key,
        not_before=validity[0],
        not_after=validity[1],
        ca=False,
        extra=[_sgx_extension(platform, ca, key)],
        serial=serial,
    )


def _pck_matches(
    certificate: x509.Certificate,
    platform: SimulatedPlatform,
    ca: CAKind,
    key: ec.EllipticCurvePrivateKey,
) -> bool:
    try:
        extension = certificate.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(OID_SGX_EXTENSIONS)
        ).value
    except x509.ExtensionNotFound:
        return False
    if not isinstance(extension, x509.UnrecognizedExtension):
        return False
    return extension.value == _sgx_extension(platform, ca, key).value


#: File stems in the state directory.
_ROOT = "root-ca"
_PCK_CA = "pck-ca"
_TCB_SIGNING = "tcb-signing"
_PCK = "pck"


def _write(path: Path, data: bytes, mode: int) -> None:
    """
    Replace C{path} atomically with C{data}, created with C{mode}.
    """
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


class _State:
    """
    Reads and writes the key and certificate files of a state directory.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def key_path(self, stem: str) -> Path:
        return self._directory / f"{stem}.key"

    def cert_path(self, stem: str) -> Path:
        return self._directory / f"{stem}.pem"

    def load_key(self, stem: str) -> ec.EllipticCurvePrivateKey | None:
        path = self.key_path(stem)
        if not path.exists():
            return None
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as e:
            msg = f"simulated PKI key {path} is unreadable: {e}"
            raise ConfigurationError(msg) from e
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            msg = f"simulated PKI key {path} is not an EC key"
            raise ConfigurationError(msg)
        return key

    def load_certificate(self, stem: str) -> x509.Certificate | None:
        path = self.cert_path(stem)
        if not path.exists():
            return None
        try:
            return x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as e:
            msg = f"simulated PKI certificate {path} is unreadable: {e}"
            raise ConfigurationError(msg) from e

    def save_key(self, stem: str, key: ec.EllipticCurvePrivateKey) -> None:
        _write(self.key_path(stem), _key_pem(key), 0o600)

    def save_certificate(
        self, stem: str, certificate: x509.Certificate
    ) -> None:
        _write(self.cert_path(stem), pem(certificate), 0o644)

    def key(self, stem: str) -> ec.EllipticCurvePrivateKey:
        """
        The stored key, or a new one, stored.
        """
        key = self.load_key(stem)
        if key is None:
            key = new_key()
            self.save_key(stem, key)
        return key


@frozen(eq=False)
class SimulatedPKI:
    """
    A local stand-in for Intel's SGX provisioning infrastructure.

    Create one with L{generate} (in memory) or L{load_or_create} (kept in
    a state directory).  All keys are P-256, as Intel's.

    @ivar root_key: The root CA key.
    @ivar root_certificate: The self-signed root, C{CN=attestd SIMULATED
        SGX Root CA}.
    @ivar pck_ca_key: The PCK Platform (or Processor) CA key.
    @ivar pck_ca_certificate: Its certificate.
    @ivar tcb_signing_key: The key that signs TCB Info and QE Identity.
    @ivar tcb_signing_certificate: Its certificate.
    @ivar pck_key: The platform's PCK key.
    @ivar pck_certificate: The PCK leaf certificate for L{platform}.
    @ivar platform: The platform the PCK certificate certifies.
    """

    root_key: ec.EllipticCurvePrivateKey
    root_certificate: x509.Certificate
    pck_ca_key: ec.EllipticCurvePrivateKey
    pck_ca_certificate: x509.Certificate
    tcb_signing_key: ec.EllipticCurvePrivateKey
    tcb_signing_certificate: x509.Certificate
    pck_key: ec.EllipticCurvePrivateKey
    pck_certificate: x509.Certificate
    platform: SimulatedPlatform

    @property
    def ca(self) -> CAKind:
        """
        C{"platform"} or C{"processor"}: the kind of the PCK CA.
        """
        names = self.pck_ca_certificate.subject.get_attributes_for_oid(
            x509.NameOID.COMMON_NAME
        )
        if names and names[0].value == PROCESSOR_CA_CN:
            return "processor"
        return "platform"

    @classmethod
    def generate(
        cls,
        *,
        now: Instant,
        platform: SimulatedPlatform | None = None,
        ca: CAKind = "platform",
    ) -> SimulatedPKI:
        """
        Make a new PKI in memory.

        @param now: Certificates are valid from a day before this.
        @param platform: The platform of the PCK certificate; the default
            one if C{None}.
        @param ca: Whether PCK certificates come from a Platform or a
            Processor CA.
        @return: The PKI.
        """
        start = as_utc(now) - _BACKDATE
        platform = SimulatedPlatform() if platform is None else platform
        root_key, pck_ca_key, tcb_key, pck_key = [new_key() for _ in range(4)]
        root = _issue_root(root_key, start)
        pck_ca = _issue_pck_ca(pck_ca_key, root, root_key, start, ca)
        return cls(
            root_key=root_key,
            root_certificate=root,
            pck_ca_key=pck_ca_key,
            pck_ca_certificate=pck_ca,
            tcb_signing_key=tcb_key,
            tcb_signing_certificate=_issue_tcb_signing(
                tcb_key, root, root_key, start
            ),
            pck_key=pck_key,
            pck_certificate=_issue_pck(
                pck_key,
                pck_ca,
                pck_ca_key,
                platform=platform,
                ca=ca,
                validity=_validity(start, _LEAF_LIFETIME, pck_ca),
            ),
            platform=platform,
        )

    @classmethod
    def load_or_create(
        cls,
        state_dir: str | os.PathLike[str],
        *,
        now: Instant,
        platform: SimulatedPlatform | None = None,
        ca: CAKind = "platform",
    ) -> SimulatedPKI:
        """
        Load the PKI kept in C{state_dir}, creating what is missing.

        The directory holds C{root-ca}, C{pck-ca}, C{tcb-signing} and
        C{pck}, each as C{NAME.key} (PKCS#8 PEM, mode 0600) and
        C{NAME.pem}, and a C{.lock} file that serialises concurrent
        callers.  The root is reused as long as it is there, so a
        client can keep trusting it.  Any other certificate that does not
        chain to its issuer, is not valid at C{now}, is of the wrong CA
        kind or (for the PCK certificate) certifies another platform is
        issued again with the stored key.

        @param state_dir: The directory; created (mode 0700) if missing.
        @param now: The current time.
        @param platform: The platform; the default one if C{None}.
        @param ca: The PCK CA kind.
        @return: The PKI.
        @raise ConfigurationError: If the directory holds a root key
            without its certificate or the other way round, an
            unreadable file, a root that does not match its key or is
            not valid at C{now}, or an unknown C{ca}.
        """
        when = as_utc(now)
        platform = SimulatedPlatform() if platform is None else platform
        # An unknown CA kind is refused before the directory is touched.
        _ca_common_name(ca)
        directory = Path(state_dir)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # Two daemons starting on a fresh directory must not each make
            # a root: the state is read and written under an exclusive
            # lock, released when the descriptor is closed.
            fcntl.flock(lock, fcntl.LOCK_EX)
            return cls._load_or_create_locked(
                directory, when=when, platform=platform, ca=ca
            )
        finally:
            os.close(lock)

    @classmethod
    def _load_or_create_locked(
        cls,
        directory: Path,
        *,
        when: datetime.datetime,
        platform: SimulatedPlatform,
        ca: CAKind,
    ) -> SimulatedPKI:
        """
        L{load_or_create}'s work, with the state directory locked.
        """
        start = when - _BACKDATE
        ca_name = simulated_name(_ca_common_name(ca))
        state = _State(directory)

        root_key = state.load_key(_ROOT)
        root = state.load_certificate(_ROOT)
        if root_key is None and root is None:
            root_key = new_key()
            root = _issue_root(root_key, start)
            state.save_key(_ROOT, root_key)
            state.save_certificate(_ROOT, root)
        elif root_key is None or root is None:
            msg = (
                f"simulated PKI state in {directory} has only half of the "
                "root CA (key and certificate go together); restore the "
                "missing file or remove both to make a new root"
            )
            raise ConfigurationError(msg)
        elif not (_same_key(root, root_key) and _issued_by(root, root)):
            msg = f"simulated root CA in {directory} does not match its key"
            raise ConfigurationError(msg)
        elif not _valid_at(root, when):
            msg = (
                f"simulated root CA in {directory} is not valid at {when}; "
                "remove the directory to make a new one"
            )
            raise ConfigurationError(msg)

        def usable(
            certificate: x509.Certificate | None,
            key: ec.EllipticCurvePrivateKey,
            issuer: x509.Certificate,
            subject: x509.Name,
        ) -> bool:
            return (
                certificate is not None
                and certificate.subject == subject
                and _same_key(certificate, key)
                and _issued_by(certificate, issuer)
                and _valid_at(certificate, when)
            )

        pck_ca_key = state.key(_PCK_CA)
        pck_ca = state.load_certificate(_PCK_CA)
        if pck_ca is None or not usable(pck_ca, pck_ca_key, root, ca_name):
            pck_ca = _issue_pck_ca(pck_ca_key, root, root_key, start, ca)
            state.save_certificate(_PCK_CA, pck_ca)

        tcb_key = state.key(_TCB_SIGNING)
        tcb = state.load_certificate(_TCB_SIGNING)
        if tcb is None or not usable(
            tcb, tcb_key, root, simulated_name(TCB_SIGNING_CN)
        ):
            tcb = _issue_tcb_signing(tcb_key, root, root_key, start)
            state.save_certificate(_TCB_SIGNING, tcb)

        pck_key = state.key(_PCK)
        pck = state.load_certificate(_PCK)
        if (
            pck is None
            or not usable(pck, pck_key, pck_ca, simulated_name(PCK_CN))
            or not _pck_matches(pck, platform, ca, pck_key)
        ):
            pck = _issue_pck(
                pck_key,
                pck_ca,
                pck_ca_key,
                platform=platform,
                ca=ca,
                validity=_validity(start, _LEAF_LIFETIME, pck_ca),
            )
            state.save_certificate(_PCK, pck)

        return cls(
            root_key=root_key,
            root_certificate=root,
            pck_ca_key=pck_ca_key,
            pck_ca_certificate=pck_ca,
            tcb_signing_key=tcb_key,
            tcb_signing_certificate=tcb,
            pck_key=pck_key,
            pck_certificate=pck,
            platform=platform,
        )

    def root_certificate_pem(self) -> bytes:
        """
        The root certificate to hand to C{attestd verify --trust-root}.

        @return: PEM.
        """
        return pem(self.root_certificate)

    def root_certificate_der(self) -> bytes:
        """
        @return: The root certificate, DER.
        """
        return self.root_certificate.public_bytes(Encoding.DER)

    def root_sha256(self) -> bytes:
        """
        @return: SHA-256 of the root certificate's DER (its fingerprint).
        """
        return hashlib.sha256(self.root_certificate_der()).digest()

    def issue_pck_certificate(
        self,
        platform: SimulatedPlatform | None = None,
        *,
        not_before: Instant | None = None,
        not_after: Instant | None = None,
        serial: int | None = None,
    ) -> x509.Certificate:
        """
        Issue another PCK certificate for the PCK key: for another
        platform, another validity or a chosen serial.

        @param platform: The platform; L{platform} if C{None}.
        @param not_before: Start of validity; that of L{pck_certificate}
            if C{None}.
        @param not_after: End of validity; that of L{pck_certificate} if
            C{None}.
        @param serial: The serial number; random if C{None}.
        @return: The certificate.
        """
        return _issue_pck(
            self.pck_key,
            self.pck_ca_certificate,
            self.pck_ca_key,
            platform=self.platform if platform is None else platform,
            ca=self.ca,
            validity=(
                self.pck_certificate.not_valid_before_utc
                if not_before is None
                else as_utc(not_before),
                self.pck_certificate.not_valid_after_utc
                if not_after is None
                else as_utc(not_after),
            ),
            serial=serial,
        )

    def quoting_enclave(
        self,
        enclave: SimulatedEnclave | None = None,
        *,
        platform: SimulatedPlatform | None = None,
        pck_certificate: x509.Certificate | None = None,
    ) -> SimulatedQuotingEnclave:
        """
        A quoting enclave on this PKI's platform (or another).

        @param enclave: The enclave it quotes by default; the default
            simulated enclave if C{None}.
        @param platform: The platform; L{platform} if C{None}.  Another
            platform gets a PCK certificate issued for it (same validity
            as L{pck_certificate}) unless C{pck_certificate} is given.
        @param pck_certificate: The PCK leaf to put in quotes; it must
            certify L{pck_key}.
        @return: The quoting enclave, with a fresh attestation key.
        @raise ConfigurationError: If C{pck_certificate} is for another
            key.
        """
        chosen = self.platform if platform is None else platform
        if pck_certificate is None:
            pck_certificate = (
                self.pck_certificate
                if chosen == self.platform
                else self.issue_pck_certificate(chosen)
            )
        elif not _same_key(pck_certificate, self.pck_key):
            msg = "the PCK certificate does not certify this PKI's PCK key"
            raise ConfigurationError(msg)
        return SimulatedQuotingEnclave(
            platform=chosen,
            enclave=SimulatedEnclave() if enclave is None else enclave,
            pck_key=self.pck_key,
            pck_chain=(
                pck_certificate,
                self.pck_ca_certificate,
                self.root_certificate,
            ),
        )

    def issue_collateral(
        self,
        now: Instant,
        options: CollateralOptions | None = None,
        *,
        platform: SimulatedPlatform | None = None,
    ) -> SimulatedCollateral:
        """
        Sign TCB Info and QE Identity and issue both CRLs, valid from
        C{now} for C{options.lifetime} unless a window is given.

        @param now: The issue time.
        @param options: What to sign; defaults verify as C{UpToDate}.
        @param platform: The platform the defaults follow; L{platform} if
            C{None}.
        @return: The collateral.
        """
        when = as_utc(now)
        o = CollateralOptions() if options is None else options
        p = self.platform if platform is None else platform
        default_window = (when, when + o.lifetime)

        def window(chosen: Window | None) -> Window:
            if chosen is None:
                return default_window
            return as_utc(chosen[0]), as_utc(chosen[1])

        tcb_issue, tcb_next = window(o.tcb_info_window)
        tcb_levels = (
            tcb_levels_with_status("UpToDate", platform=p)
            if o.tcb_levels is None
            else o.tcb_levels
        )
        tcb_info = {
            "id": "SGX",
            "version": 3,
            "issueDate": json_time(tcb_issue),
            "nextUpdate": json_time(tcb_next),
            "fmspc": (p.fmspc if o.fmspc is None else o.fmspc).hex(),
            "pceId": (p.pce_id if o.pce_id is None else o.pce_id).hex(),
            "tcbType": o.tcb_type,
            "tcbEvaluationDataNumber": o.tcb_evaluation_data_number,
            "tcbLevels": [level.to_json() for level in tcb_levels],
        }

        qe_issue, qe_next = window(o.qe_identity_window)
        qe_levels = (
            qe_levels_with_status("UpToDate", qe_svn=p.qe_svn)
            if o.qe_levels is None
            else o.qe_levels
        )
        attributes = o.qe_attributes
        if attributes is None:
            attributes = bytes(
                a & m
                for a, m in zip(
                    p.qe.attributes, o.qe_attributes_mask, strict=True
                )
            )
        miscselect = (
            p.qe.misc_select & o.qe_miscselect_mask
            if o.qe_miscselect is None
            else o.qe_miscselect
        )
        qe_identity = {
            "id": "QE",
            "version": 2,
            "issueDate": json_time(qe_issue),
            "nextUpdate": json_time(qe_next),
            "tcbEvaluationDataNumber": o.tcb_evaluation_data_number,
            "miscselect": f"{miscselect:08X}",
            "miscselectMask": f"{o.qe_miscselect_mask:08X}",
            "attributes": attributes.hex().upper(),
            "attributesMask": o.qe_attributes_mask.hex().upper(),
            "mrsigner": (
                p.qe.mrsigner if o.qe_mrsigner is None else o.qe_mrsigner
            )
            .hex()
            .upper(),
            "isvprodid": (
                p.qe.isv_prod_id
                if o.qe_isv_prod_id is None
                else o.qe_isv_prod_id
            ),
            "tcbLevels": [level.to_json() for level in qe_levels],
        }

        tcb_bytes = _compact_json(tcb_info)
        qe_bytes = _compact_json(qe_identity)
        pck_this, pck_next = window(o.pck_crl_window)
        root_this, root_next = window(o.root_crl_window)
        signing_chain = pem(self.tcb_signing_certificate) + pem(
            self.root_certificate
        )
        return SimulatedCollateral(
            ca=self.ca,
            tcb_info=tcb_bytes,
            tcb_info_signature=sign_raw(self.tcb_signing_key, tcb_bytes),
            qe_identity=qe_bytes,
            qe_identity_signature=sign_raw(self.tcb_signing_key, qe_bytes),
            pck_crl=build_crl(
                issuer=self.pck_ca_certificate,
                issuer_key=self.pck_ca_key,
                this_update=pck_this,
                next_update=pck_next,
                revoked_serials=o.revoked_pck_serials,
            ),
            root_ca_crl=build_crl(
                issuer=self.root_certificate,
                issuer_key=self.root_key,
                this_update=root_this,
                next_update=root_next,
                revoked_serials=o.revoked_ca_serials,
            ),
            pck_crl_issuer_chain=pem(self.pck_ca_certificate)
            + pem(self.root_certificate),
            tcb_info_issuer_chain=signing_chain,
            qe_identity_issuer_chain=signing_chain,
        )


def _compact_json(value: object) -> bytes:
    """
    JSON as Intel's PCS serialises signed objects: no whitespace.
    """
    return json.dumps(value, separators=(",", ":")).encode("ascii")
