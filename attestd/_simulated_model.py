"""
The configuration and output objects of the simulated DCAP
infrastructure (L{attestd._simulated}): enclave and platform identities,
TCB levels, collateral options and issued collateral.

The layouts follow Intel's formats: the SGX report body (SDM vol. 3D,
REPORTBODY), TCB Info v3 and QE Identity v2 (PCS API v4), and dcap-qvl's
C{QuoteCollateralV3} JSON for offline bundles.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
from collections.abc import Iterable, Sequence
from typing import Literal, TypeAlias

from attrs import Factory, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestd._collateral import Collateral
from attestd._quote import (
    FLAG_INIT,
    FLAG_MODE64BIT,
    FLAG_PROVISION_KEY,
    REPORT_BODY_SIZE,
)
from attestd.errors import ConfigurationError

#: A point in time: an aware (or naive UTC) datetime, or Unix seconds.
Instant: TypeAlias = datetime.datetime | float

#: Which Intel CA issues the PCK certificates.
CAKind: TypeAlias = Literal["platform", "processor"]

#: TCB statuses of TCB Info levels, in Intel's spelling.
TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
#: TCB statuses of QE Identity levels.
QE_TCB_STATUSES = ("UpToDate", "OutOfDate", "Revoked")

#: The simulated platform's family-model-stepping-platform-CustomSKU: not
#: one of Intel's, so Intel collateral never matches a simulated quote.
DEFAULT_FMSPC = bytes.fromhex("a77e57d00000")
#: TCB component SVNs and PCE SVN of the default platform (the shape of
#: a recent Intel server platform's TCB).
DEFAULT_TCB_COMPONENTS = (14, 14, 3, 3, 255, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
DEFAULT_PCESVN = 13
#: The default enclave's measurements: recognisable, not any real build.
DEFAULT_MRENCLAVE = hashlib.sha256(b"attestd SIMULATED enclave").digest()
DEFAULT_MRSIGNER = hashlib.sha256(b"attestd SIMULATED enclave signer").digest()
#: XFRM of the real quotes in the vectors (x87, SSE, AVX, AVX-512).
DEFAULT_XFRM = 0xE7
#: The simulated quoting enclave's identity.  Its MRSIGNER is not Intel's,
#: so Intel's QE Identity never matches a simulated QE report.
DEFAULT_QE_MRENCLAVE = hashlib.sha256(
    b"attestd SIMULATED quoting enclave"
).digest()
DEFAULT_QE_MRSIGNER = hashlib.sha256(
    b"attestd SIMULATED quoting enclave signer"
).digest()
DEFAULT_QE_SVN = 8
#: The QE's attribute flags in real quotes: INIT, MODE64BIT and
#: PROVISION_KEY (0x15).
DEFAULT_QE_FLAGS = FLAG_INIT | FLAG_MODE64BIT | FLAG_PROVISION_KEY
#: QE Identity masks as Intel publishes them.
DEFAULT_QE_ATTRIBUTES_MASK = bytes.fromhex("fbffffffffffffff0000000000000000")
DEFAULT_QE_MISCSELECT_MASK = 0xFFFFFFFF
#: The QE authentication data of every real quote in the vectors.
DEFAULT_QE_AUTH_DATA = bytes(range(32))
#: The tcbDate of generated levels (the date of tcbEvaluationDataNumber
#: 17 in Intel's data).
DEFAULT_TCB_DATE = datetime.datetime(2024, 3, 13, tzinfo=datetime.timezone.utc)
DEFAULT_TCB_EVALUATION_DATA_NUMBER = 17
#: Validity of collateral issued on demand (Intel's is 30 days).
DEFAULT_COLLATERAL_LIFETIME = datetime.timedelta(days=30)

_UTC = datetime.timezone.utc


def as_utc(when: Instant) -> datetime.datetime:
    """
    Normalise a point in time to an aware UTC datetime in whole seconds.

    @param when: A datetime (naive means UTC) or Unix seconds.
    @return: The instant, microseconds dropped.
    """
    if isinstance(when, datetime.datetime):
        moment = (
            when.replace(tzinfo=_UTC)
            if when.tzinfo is None
            else when.astimezone(_UTC)
        )
    else:
        moment = datetime.datetime.fromtimestamp(when, _UTC)
    return moment.replace(microsecond=0)


def json_time(when: datetime.datetime) -> str:
    """
    A time as Intel's collateral writes it: C{2025-08-15T05:45:00Z}.

    @param when: The time.
    @return: The text, in UTC, whole seconds.
    """
    return as_utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_size(what: str, value: bytes, size: int) -> None:
    if len(value) != size:
        msg = f"{what} must be {size} bytes, got {len(value)}"
        raise ConfigurationError(msg)


def _check_range(what: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        msg = f"{what} must fit in {bits} unsigned bits, got {value}"
        raise ConfigurationError(msg)


def _tuple_of_str(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _tuple_of_int(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(values)


@frozen
class SimulatedEnclave:
    """
    The identity of an enclave whose reports a simulated quoting enclave
    signs: what a real enclave's SIGSTRUCT and launch would fix.

    @ivar mrenclave: 32-byte MRENCLAVE.
    @ivar mrsigner: 32-byte MRSIGNER.
    @ivar isv_prod_id: ISVPRODID.
    @ivar isv_svn: ISVSVN.
    @ivar flags: ATTRIBUTES.FLAGS; INIT and MODE64BIT by default, add
        L{attestd._quote.FLAG_DEBUG} for a debug enclave.
    @ivar xfrm: ATTRIBUTES.XFRM.
    @ivar misc_select: MISCSELECT.
    @ivar config_svn: CONFIGSVN (KSS).
    @ivar config_id: 64-byte CONFIGID (KSS).
    @ivar isv_ext_prod_id: 16-byte extended product id (KSS).
    @ivar isv_family_id: 16-byte family id (KSS).
    """

    mrenclave: bytes = DEFAULT_MRENCLAVE
    mrsigner: bytes = DEFAULT_MRSIGNER
    isv_prod_id: int = 0
    isv_svn: int = 0
    flags: int = FLAG_INIT | FLAG_MODE64BIT
    xfrm: int = DEFAULT_XFRM
    misc_select: int = 0
    config_svn: int = 0
    config_id: bytes = bytes(64)
    isv_ext_prod_id: bytes = bytes(16)
    isv_family_id: bytes = bytes(16)

    def __attrs_post_init__(self) -> None:
        _check_size("MRENCLAVE", self.mrenclave, 32)
        _check_size("MRSIGNER", self.mrsigner, 32)
        _check_size("CONFIGID", self.config_id, 64)
        _check_size("ISVEXTPRODID", self.isv_ext_prod_id, 16)
        _check_size("ISVFAMILYID", self.isv_family_id, 16)
        _check_range("ISVPRODID", self.isv_prod_id, 16)
        _check_range("ISVSVN", self.isv_svn, 16)
        _check_range("CONFIGSVN", self.config_svn, 16)
        _check_range("MISCSELECT", self.misc_select, 32)
        _check_range("attribute flags", self.flags, 64)
        _check_range("XFRM", self.xfrm, 64)

    @property
    def attributes(self) -> bytes:
        """
        The 16 raw ATTRIBUTES bytes: flags then XFRM, little-endian.
        """
        return struct.pack("<QQ", self.flags, self.xfrm)

    def report_body(self, report_data: bytes, cpu_svn: bytes) -> bytes:
        """
        The 384-byte SGX report body this enclave would produce.

        @param report_data: 64 bytes of report data.
        @param cpu_svn: The platform's 16-byte CPUSVN.
        @return: The report body (layout of SDM vol. 3D, REPORTBODY).
        @raise ConfigurationError: If a size is wrong.
        """
        _check_size("report data", report_data, 64)
        _check_size("CPUSVN", cpu_svn, 16)
        body = bytearray(REPORT_BODY_SIZE)
        body[0:16] = cpu_svn
        struct.pack_into("<I", body, 16, self.misc_select)
        body[32:48] = self.isv_ext_prod_id
        body[48:64] = self.attributes
        body[64:96] = self.mrenclave
        body[128:160] = self.mrsigner
        body[192:256] = self.config_id
        struct.pack_into(
            "<HHH", body, 256, self.isv_prod_id, self.isv_svn, self.config_svn
        )
        body[304:320] = self.isv_family_id
        body[320:384] = report_data
        return bytes(body)


#: The simulated quoting enclave (Intel's QE has ISVPRODID 1).
DEFAULT_QE = SimulatedEnclave(
    mrenclave=DEFAULT_QE_MRENCLAVE,
    mrsigner=DEFAULT_QE_MRSIGNER,
    isv_prod_id=1,
    isv_svn=DEFAULT_QE_SVN,
    flags=DEFAULT_QE_FLAGS,
)


def _default_cpusvn(platform: SimulatedPlatform) -> bytes:
    # Out-of-range SVNs are reported by the platform's own checks.
    return bytes(svn & 0xFF for svn in platform.tcb_components)


@frozen
class SimulatedPlatform:
    """
    A simulated SGX platform: what its PCK certificate certifies, and its
    quoting enclave.

    @ivar fmspc: 6-byte FMSPC.
    @ivar pce_id: 2-byte PCE-ID.
    @ivar tcb_components: The 16 TCB component SVNs of the PCK
        certificate; they select the TCB Info level.
    @ivar pcesvn: The PCE SVN of the PCK certificate (also the quote
        header's pce_svn).
    @ivar cpusvn: 16-byte CPUSVN of the PCK certificate and of reports;
        by default the component SVNs as bytes, as on real platforms.
    @ivar qe: The quoting enclave; its ISVSVN is the quote header's
        qe_svn and is matched against the QE Identity levels.
    @ivar sgx_type: SGX Type of the PCK certificate; C{None} for the
        CA's usual value (Scalable under the Platform CA, Standard under
        the Processor CA).
    @ivar dynamic_platform: Configuration flag (Platform CA only).
    @ivar cached_keys: Configuration flag (Platform CA only).
    @ivar smt_enabled: Configuration flag (Platform CA only).
    """

    fmspc: bytes = DEFAULT_FMSPC
    pce_id: bytes = b"\0\0"
    tcb_components: tuple[int, ...] = field(
        default=DEFAULT_TCB_COMPONENTS, converter=_tuple_of_int
    )
    pcesvn: int = DEFAULT_PCESVN
    cpusvn: bytes = field(default=Factory(_default_cpusvn, takes_self=True))
    qe: SimulatedEnclave = DEFAULT_QE
    sgx_type: int | None = None
    dynamic_platform: bool = True
    cached_keys: bool = False
    smt_enabled: bool = False

    def __attrs_post_init__(self) -> None:
        _check_size("FMSPC", self.fmspc, 6)
        _check_size("PCE-ID", self.pce_id, 2)
        if len(self.tcb_components) != 16:
            msg = (
                f"a TCB has 16 component SVNs, got {len(self.tcb_components)}"
            )
            raise ConfigurationError(msg)
        for svn in self.tcb_components:
            _check_range("TCB component SVN", svn, 8)
        _check_range("PCESVN", self.pcesvn, 16)
        _check_size("CPUSVN", self.cpusvn, 16)
        _check_range("QE ISVSVN", self.qe.isv_svn, 16)

    @property
    def qe_svn(self) -> int:
        """
        The quoting enclave's ISVSVN.
        """
        return self.qe.isv_svn


def _check_status(status: str, allowed: Sequence[str]) -> None:
    if status not in allowed:
        msg = f"unknown TCB status {status!r}; one of {', '.join(allowed)}"
        raise ConfigurationError(msg)


@frozen
class TCBLevel:
    """
    One level of TCB Info.

    @ivar components: The 16 component SVNs a platform must reach.
    @ivar pcesvn: The PCE SVN a platform must reach.
    @ivar status: The level's tcbStatus (one of L{TCB_STATUSES}).
    @ivar advisory_ids: Its advisoryIDs; left out of the JSON when empty.
    @ivar tcb_date: Its tcbDate.
    """

    components: tuple[int, ...] = field(converter=_tuple_of_int)
    pcesvn: int
    status: str
    advisory_ids: tuple[str, ...] = field(default=(), converter=_tuple_of_str)
    tcb_date: datetime.datetime = DEFAULT_TCB_DATE

    def __attrs_post_init__(self) -> None:
        if len(self.components) != 16:
            msg = (
                "a TCB level has 16 component SVNs, got "
                f"{len(self.components)}"
            )
            raise ConfigurationError(msg)
        _check_status(self.status, TCB_STATUSES)

    def to_json(self) -> dict[str, object]:
        """
        The level as TCB Info v3 lists it.

        @return: A JSON-ready mapping, keys in Intel's order.
        """
        level: dict[str, object] = {
            "tcb": {
                "sgxtcbcomponents": [{"svn": svn} for svn in self.components],
                "pcesvn": self.pcesvn,
            },
            "tcbDate": json_time(self.tcb_date),
            "tcbStatus": self.status,
        }
        if self.advisory_ids:
            level["advisoryIDs"] = list(self.advisory_ids)
        return level


@frozen
class QETCBLevel:
    """
    One level of QE Identity.

    @ivar isvsvn: The QE ISVSVN a quoting enclave must reach.
    @ivar status: The level's tcbStatus (one of L{QE_TCB_STATUSES}).
    @ivar advisory_ids: Its advisoryIDs; left out of the JSON when empty.
    @ivar tcb_date: Its tcbDate.
    """

    isvsvn: int
    status: str
    advisory_ids: tuple[str, ...] = field(default=(), converter=_tuple_of_str)
    tcb_date: datetime.datetime = DEFAULT_TCB_DATE

    def __attrs_post_init__(self) -> None:
        _check_status(self.status, QE_TCB_STATUSES)

    def to_json(self) -> dict[str, object]:
        """
        The level as QE Identity v2 lists it.

        @return: A JSON-ready mapping, keys in Intel's order.
        """
        level: dict[str, object] = {
            "tcb": {"isvsvn": self.isvsvn},
            "tcbDate": json_time(self.tcb_date),
            "tcbStatus": self.status,
        }
        if self.advisory_ids:
            level["advisoryIDs"] = list(self.advisory_ids)
        return level


def tcb_levels_with_status(
    status: str,
    advisory_ids: Sequence[str] = (),
    *,
    platform: SimulatedPlatform | None = None,
) -> tuple[TCBLevel, ...]:
    """
    TCB Info levels under which C{platform} matches a level with
    C{status}.

    For C{UpToDate} that is the one level at the platform's TCB.  For any
    other status a newer C{UpToDate} level (PCE SVN one higher) comes
    first, which the platform does not reach, then the platform's level
    with C{status} and C{advisory_ids}: the shape of real TCB Info.

    @param status: The status the platform should get.
    @param advisory_ids: The advisories of the matching level.
    @param platform: The platform; the default one if C{None}.
    @return: The levels, newest first.
    """
    p = SimulatedPlatform() if platform is None else platform
    own = TCBLevel(
        components=p.tcb_components,
        pcesvn=p.pcesvn,
        status=status,
        advisory_ids=advisory_ids,
    )
    if status == "UpToDate":
        return (own,)
    newer = TCBLevel(
        components=p.tcb_components, pcesvn=p.pcesvn + 1, status="UpToDate"
    )
    return (newer, own)


def qe_levels_with_status(
    status: str,
    advisory_ids: Sequence[str] = (),
    *,
    qe_svn: int = DEFAULT_QE_SVN,
) -> tuple[QETCBLevel, ...]:
    """
    QE Identity levels under which a QE with ISVSVN C{qe_svn} matches a
    level with C{status}, after a newer C{UpToDate} level unless the
    status is C{UpToDate}.

    @param status: C{UpToDate}, C{OutOfDate} or C{Revoked}.
    @param advisory_ids: The advisories of the matching level.
    @param qe_svn: The QE's ISVSVN.
    @return: The levels, newest first.
    """
    own = QETCBLevel(isvsvn=qe_svn, status=status, advisory_ids=advisory_ids)
    if status == "UpToDate":
        return (own,)
    return (QETCBLevel(isvsvn=qe_svn + 1, status="UpToDate"), own)


#: A validity window: (issue or thisUpdate, nextUpdate).
Window: TypeAlias = tuple[datetime.datetime, datetime.datetime]


@frozen
class CollateralOptions:
    """
    What L{SimulatedPKI.issue_collateral} signs.  Every C{None} means
    "consistent with the platform", so the defaults verify as
    C{UpToDate}.

    @ivar tcb_levels: TCB Info levels, newest first; C{None} for one
        C{UpToDate} level at the platform's TCB.
    @ivar qe_levels: QE Identity levels; C{None} for one C{UpToDate}
        level at the platform QE's ISVSVN.
    @ivar fmspc: TCB Info fmspc; C{None} for the platform's.
    @ivar pce_id: TCB Info pceId; C{None} for the platform's.
    @ivar tcb_type: TCB Info tcbType.
    @ivar tcb_evaluation_data_number: In TCB Info and QE Identity.
    @ivar lifetime: From issue to next update, for every piece whose
        window is not given.
    @ivar tcb_info_window: TCB Info (issueDate, nextUpdate).
    @ivar qe_identity_window: QE Identity (issueDate, nextUpdate).
    @ivar pck_crl_window: PCK CRL (thisUpdate, nextUpdate).
    @ivar root_crl_window: Root CA CRL (thisUpdate, nextUpdate).
    @ivar revoked_pck_serials: Serials the PCK CRL lists.
    @ivar revoked_ca_serials: Serials the root CA CRL lists (PCK CA or
        TCB signing certificates).
    @ivar qe_mrsigner: QE Identity mrsigner; C{None} for the platform
        QE's.
    @ivar qe_isv_prod_id: QE Identity isvprodid; C{None} for the
        platform QE's.
    @ivar qe_miscselect: QE Identity miscselect; C{None} for the
        platform QE's.
    @ivar qe_miscselect_mask: QE Identity miscselectMask.
    @ivar qe_attributes: 16-byte QE Identity attributes; C{None} for the
        platform QE's attributes under the mask.
    @ivar qe_attributes_mask: 16-byte QE Identity attributesMask.
    """

    tcb_levels: tuple[TCBLevel, ...] | None = None
    qe_levels: tuple[QETCBLevel, ...] | None = None
    fmspc: bytes | None = None
    pce_id: bytes | None = None
    tcb_type: int = 0
    tcb_evaluation_data_number: int = DEFAULT_TCB_EVALUATION_DATA_NUMBER
    lifetime: datetime.timedelta = DEFAULT_COLLATERAL_LIFETIME
    tcb_info_window: Window | None = None
    qe_identity_window: Window | None = None
    pck_crl_window: Window | None = None
    root_crl_window: Window | None = None
    revoked_pck_serials: tuple[int, ...] = field(
        default=(), converter=_tuple_of_int
    )
    revoked_ca_serials: tuple[int, ...] = field(
        default=(), converter=_tuple_of_int
    )
    qe_mrsigner: bytes | None = None
    qe_isv_prod_id: int | None = None
    qe_miscselect: int | None = None
    qe_miscselect_mask: int = DEFAULT_QE_MISCSELECT_MASK
    qe_attributes: bytes | None = None
    qe_attributes_mask: bytes = DEFAULT_QE_ATTRIBUTES_MASK


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.PEM)


@frozen
class SimulatedCollateral:
    """
    Signed collateral for simulated quotes, in the forms verifiers and
    PCCS clients consume.

    @ivar ca: C{"platform"} or C{"processor"}: which PCK CA the PCK CRL
        is for.
    @ivar tcb_info: The exact bytes of the signed C{tcbInfo} object.
    @ivar tcb_info_signature: Its 64-byte signature (r || s).
    @ivar qe_identity: The exact bytes of the signed C{enclaveIdentity}
        object.
    @ivar qe_identity_signature: Its 64-byte signature (r || s).
    @ivar pck_crl: The PCK CA's CRL, DER.
    @ivar root_ca_crl: The root CA's CRL, DER.
    @ivar pck_crl_issuer_chain: PEM: PCK CA, then root.
    @ivar tcb_info_issuer_chain: PEM: TCB signing, then root.
    @ivar qe_identity_issuer_chain: PEM: TCB signing, then root.
    """

    ca: CAKind
    tcb_info: bytes
    tcb_info_signature: bytes
    qe_identity: bytes
    qe_identity_signature: bytes
    pck_crl: bytes
    root_ca_crl: bytes
    pck_crl_issuer_chain: bytes
    tcb_info_issuer_chain: bytes
    qe_identity_issuer_chain: bytes

    def as_dict(self) -> dict[str, str]:
        """
        The collateral in dcap-qvl's C{QuoteCollateralV3} JSON layout (the
        layout of the offline bundles in C{tests/vectors}).

        @return: Text values: PEM chains, hex DER CRLs, the exact signed
            JSON and hex signatures.
        """
        return {
            "pck_crl_issuer_chain": self.pck_crl_issuer_chain.decode("ascii"),
            "root_ca_crl": self.root_ca_crl.hex(),
            "pck_crl": self.pck_crl.hex(),
            "tcb_info_issuer_chain": self.tcb_info_issuer_chain.decode(
                "ascii"
            ),
            "tcb_info": self.tcb_info.decode("utf-8"),
            "tcb_info_signature": self.tcb_info_signature.hex(),
            "qe_identity_issuer_chain": self.qe_identity_issuer_chain.decode(
                "ascii"
            ),
            "qe_identity": self.qe_identity.decode("utf-8"),
            "qe_identity_signature": self.qe_identity_signature.hex(),
        }

    def collateral_json(self) -> str:
        """
        L{as_dict} serialised: an offline collateral bundle.

        @return: The JSON text.
        """
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def collateral(self) -> Collateral:
        """
        The collateral as the verifier takes it.

        @return: A L{Collateral} read from L{collateral_json}.
        """
        return Collateral.from_json(self.collateral_json())

    def pcs_tcb_info_response(self) -> tuple[bytes, bytes]:
        """
        What PCS v4 C{GET /sgx/certification/v4/tcb?fmspc=...} returns.

        @return: The body C{{"tcbInfo":...,"signature":"..."}} and the
            issuer chain PEM (the C{TCB-Info-Issuer-Chain} header carries
            it URL-encoded).
        """
        body = (
            b'{"tcbInfo":'
            + self.tcb_info
            + b',"signature":"'
            + self.tcb_info_signature.hex().encode("ascii")
            + b'"}'
        )
        return body, self.tcb_info_issuer_chain

    def pcs_qe_identity_response(self) -> tuple[bytes, bytes]:
        """
        What PCS v4 C{GET /sgx/certification/v4/qe/identity} returns.

        @return: The body C{{"enclaveIdentity":...,"signature":"..."}}
            and the issuer chain PEM (the
            C{SGX-Enclave-Identity-Issuer-Chain} header carries it
            URL-encoded).
        """
        body = (
            b'{"enclaveIdentity":'
            + self.qe_identity
            + b',"signature":"'
            + self.qe_identity_signature.hex().encode("ascii")
            + b'"}'
        )
        return body, self.qe_identity_issuer_chain

    def pcs_pck_crl_response(self) -> tuple[bytes, bytes]:
        """
        What PCS v4 C{GET /sgx/certification/v4/pckcrl?ca=...&encoding=der}
        returns.

        @return: The CRL DER and the issuer chain PEM (the
            C{SGX-PCK-CRL-Issuer-Chain} header carries it URL-encoded).
        """
        return self.pck_crl, self.pck_crl_issuer_chain

    def pck_crl_der(self) -> bytes:
        """
        @return: The PCK CA's CRL, DER.
        """
        return self.pck_crl

    def root_ca_crl_der(self) -> bytes:
        """
        @return: The root CA's CRL, DER (what C{/rootcacrl} serves).
        """
        return self.root_ca_crl
