"""
The SGX extension of a PCK certificate.

Intel's Provisioning Certification Service puts the platform's identity
and TCB into the PCK leaf certificate, in the non-critical extension
C{1.2.840.113741.1.13.1} ("SGX PCK Certificate and Certificate Revocation
List Profile Specification", section 1.3.5; project reference, 3.3 step
3).  Its value is a SEQUENCE of C{(OID, value)} pairs:

  - C{.1} PPID, OCTET STRING (16);
  - C{.2} TCB, a SEQUENCE of pairs: C{.2.1} to C{.2.16} the component
    SVNs (INTEGER 0-255), C{.2.17} PCESVN (INTEGER 0-65535), C{.2.18}
    CPUSVN (OCTET STRING 16);
  - C{.3} PCE-ID, OCTET STRING (2);
  - C{.4} FMSPC, OCTET STRING (6);
  - C{.5} SGX type, ENUMERATED (0 standard, 1 scalable, 2 scalable with
    integrity);
  - optional C{.6} platform instance id, OCTET STRING (16), and C{.7}
    configuration, a SEQUENCE of BOOLEAN pairs (C{.7.1} dynamic platform,
    C{.7.2} cached keys, C{.7.3} SMT enabled), for PCK Platform CA leaves.

The value is decoded with a plain DER decoder and walked by hand, so
that every type, size and multiplicity is checked; anything unexpected
raises L{PCKExtensionParseError}.  Unknown sub-OIDs under the arc are
ignored, as Intel may add some; a repeated one is refused.
"""

from __future__ import annotations

import functools

from attrs import frozen
from cryptography import x509
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ

from attestd._x509util import X509_PARSE_ERRORS
from attestd.errors import PCKExtensionParseError

#: The SGX extension of a PCK certificate.
OID_SGX_EXTENSIONS = "1.2.840.113741.1.13.1"

#: Real extensions are about 450-560 bytes; anything much larger is not
#: one, and the bound keeps the decoder's recursion shallow.
MAX_EXTENSION_SIZE = 4096

#: What pyasn1's schema-less decoder raises on malformed input: besides
#: its own error, some inputs (an end-of-contents octet inside a
#: definite-length SEQUENCE, absurd long-form lengths) surface as
#: AttributeError or OverflowError (found by tests/test_pck.py's
#: property tests).
_DECODER_ERRORS = (
    PyAsn1Error,
    RecursionError,
    ValueError,
    TypeError,
    AttributeError,
    OverflowError,
    IndexError,
)

_PPID = OID_SGX_EXTENSIONS + ".1"
_TCB = OID_SGX_EXTENSIONS + ".2"
_PCE_ID = OID_SGX_EXTENSIONS + ".3"
_FMSPC = OID_SGX_EXTENSIONS + ".4"
_SGX_TYPE = OID_SGX_EXTENSIONS + ".5"
_PLATFORM_INSTANCE_ID = OID_SGX_EXTENSIONS + ".6"
_CONFIGURATION = OID_SGX_EXTENSIONS + ".7"

_PCESVN = _TCB + ".17"
_CPUSVN = _TCB + ".18"
_COMPONENTS = tuple(f"{_TCB}.{n}" for n in range(1, 17))

_DYNAMIC_PLATFORM = _CONFIGURATION + ".1"
_CACHED_KEYS = _CONFIGURATION + ".2"
_SMT_ENABLED = _CONFIGURATION + ".3"

#: SGX types (ENUMERATED values of C{.5}).
SGX_TYPE_STANDARD = 0
SGX_TYPE_SCALABLE = 1
SGX_TYPE_SCALABLE_WITH_INTEGRITY = 2


@frozen
class PCKConfiguration:
    """
    The platform configuration flags of a PCK Platform CA leaf (C{.7}).
    Each is C{None} when absent.

    @ivar dynamic_platform: Whether the platform can add or remove CPU
        packages.
    @ivar cached_keys: Whether platform root keys are cached by the
        platform registration service.
    @ivar smt_enabled: Whether simultaneous multithreading is enabled.
    """

    dynamic_platform: bool | None
    cached_keys: bool | None
    smt_enabled: bool | None


@frozen
class PCKExtension:
    """
    The parsed SGX extension of a PCK leaf certificate.

    @ivar ppid: The 16-byte Platform Provisioning ID.
    @ivar tcb_components: The 16 TCB component SVNs (C{.2.1}-C{.2.16}),
        compared against the TCB Info levels.
    @ivar pce_svn: The PCE security version (C{.2.17}).
    @ivar cpu_svn: The 16-byte CPUSVN (C{.2.18}).
    @ivar pce_id: The 2-byte PCE-ID.
    @ivar fmspc: The 6-byte FMSPC, which selects the TCB Info.
    @ivar sgx_type: 0 standard, 1 scalable, 2 scalable with integrity.
    @ivar platform_instance_id: 16 bytes, only for PCK Platform CA
        leaves.
    @ivar configuration: The platform configuration, only for PCK
        Platform CA leaves.
    """

    ppid: bytes
    tcb_components: tuple[int, ...]
    pce_svn: int
    cpu_svn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None
    configuration: PCKConfiguration | None

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> PCKExtension:
        """
        Read the SGX extension of a PCK leaf certificate.

        @param certificate: The PCK leaf.
        @return: The parsed extension.
        @raise PCKExtensionParseError: If the extension is missing or
            malformed.
        """
        try:
            ext = certificate.extensions.get_extension_for_oid(
                x509.ObjectIdentifier(OID_SGX_EXTENSIONS)
            )
        except x509.ExtensionNotFound as e:
            msg = "PCK certificate has no SGX extension"
            raise PCKExtensionParseError(msg) from e
        except X509_PARSE_ERRORS as e:
            msg = f"PCK certificate extensions are malformed: {e}"
            raise PCKExtensionParseError(msg) from e
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):
            msg = "PCK certificate SGX extension has an unexpected type"
            raise PCKExtensionParseError(msg)
        return cls.from_der(value.value)

    @classmethod
    def from_der(cls, data: bytes) -> PCKExtension:
        """
        Parse the DER value of the SGX extension.

        @param data: The extension's value (the contents of its
            extnValue OCTET STRING).
        @return: The parsed extension.
        @raise PCKExtensionParseError: If it is malformed, oversized,
            lacks a mandatory field or repeats one.
        """
        return _parse_extension(bytes(data))


@functools.lru_cache(maxsize=128)
def _parse_extension(data: bytes) -> PCKExtension:
    """
    The work of L{PCKExtension.from_der}, memoised by content: the PCK
    leaf of a platform is the same in each of its quotes, and its decoding
    is the slowest step of a verification.  Failures are not cached.
    """
    if len(data) > MAX_EXTENSION_SIZE:
        msg = (
            f"SGX extension is {len(data)} bytes, more than "
            f"{MAX_EXTENSION_SIZE}"
        )
        raise PCKExtensionParseError(msg)
    try:
        decoded, rest = der_decoder.decode(data)
    except _DECODER_ERRORS as e:
        msg = f"SGX extension is not DER: {e}"
        raise PCKExtensionParseError(msg) from e
    if rest:
        msg = f"{len(rest)} trailing bytes after the SGX extension"
        raise PCKExtensionParseError(msg)
    fields = _pairs(decoded, "SGX extension")
    tcb = _pairs(_required(fields, _TCB), "SGX extension TCB")
    components = tuple(
        _integer(_required(tcb, oid), oid, 0, 255) for oid in _COMPONENTS
    )
    configuration = None
    if _CONFIGURATION in fields:
        flags = _pairs(fields[_CONFIGURATION], "SGX configuration")
        configuration = PCKConfiguration(
            dynamic_platform=_boolean(flags, _DYNAMIC_PLATFORM),
            cached_keys=_boolean(flags, _CACHED_KEYS),
            smt_enabled=_boolean(flags, _SMT_ENABLED),
        )
    instance_id = None
    if _PLATFORM_INSTANCE_ID in fields:
        instance_id = _octets(
            fields[_PLATFORM_INSTANCE_ID], _PLATFORM_INSTANCE_ID, 16
        )
    return PCKExtension(
        ppid=_octets(_required(fields, _PPID), _PPID, 16),
        tcb_components=components,
        pce_svn=_integer(_required(tcb, _PCESVN), _PCESVN, 0, 0xFFFF),
        cpu_svn=_octets(_required(tcb, _CPUSVN), _CPUSVN, 16),
        pce_id=_octets(_required(fields, _PCE_ID), _PCE_ID, 2),
        fmspc=_octets(_required(fields, _FMSPC), _FMSPC, 6),
        sgx_type=_integer(
            _required(fields, _SGX_TYPE),
            _SGX_TYPE,
            SGX_TYPE_STANDARD,
            SGX_TYPE_SCALABLE_WITH_INTEGRITY,
            univ.Enumerated,
        ),
        platform_instance_id=instance_id,
        configuration=configuration,
    )


def _pairs(value: object, what: str) -> dict[str, object]:
    """
    Read a SEQUENCE of C{SEQUENCE {OID, value}} into a mapping.

    @param value: The decoded SEQUENCE.
    @param what: Its name, for messages.
    @return: OID (dotted) to decoded value.
    @raise PCKExtensionParseError: If it is not such a sequence, or an
        OID repeats.
    """
    if not isinstance(value, (univ.Sequence, univ.SequenceOf)):
        msg = f"{what} is not a SEQUENCE"
        raise PCKExtensionParseError(msg)
    out: dict[str, object] = {}
    for index in range(len(value)):
        item = value[index]
        if (
            not isinstance(item, (univ.Sequence, univ.SequenceOf))
            or len(item) != 2
            or not isinstance(item[0], univ.ObjectIdentifier)
            or item[0].tagSet != univ.ObjectIdentifier.tagSet
        ):
            msg = f"{what} item {index} is not an (OID, value) pair"
            raise PCKExtensionParseError(msg)
        oid = str(item[0])
        if oid in out:
            msg = f"{what} repeats {oid}"
            raise PCKExtensionParseError(msg)
        out[oid] = item[1]
    return out


def _required(fields: dict[str, object], oid: str) -> object:
    """
    A mandatory field.

    @raise PCKExtensionParseError: If it is absent.
    """
    if oid not in fields:
        msg = f"SGX extension lacks {oid}"
        raise PCKExtensionParseError(msg)
    return fields[oid]


def _octets(value: object, oid: str, size: int) -> bytes:
    """
    An OCTET STRING of exactly C{size} bytes.

    @raise PCKExtensionParseError: If it is not.
    """
    if (
        not isinstance(value, univ.OctetString)
        or value.tagSet != univ.OctetString.tagSet
    ):
        msg = f"SGX extension field {oid} is not an OCTET STRING"
        raise PCKExtensionParseError(msg)
    out = bytes(value)
    if len(out) != size:
        msg = f"SGX extension field {oid} is {len(out)} bytes, expected {size}"
        raise PCKExtensionParseError(msg)
    return out


def _integer(
    value: object,
    oid: str,
    low: int,
    high: int,
    kind: type[univ.Integer] = univ.Integer,
) -> int:
    """
    An INTEGER (or, with C{kind}, an ENUMERATED) within C{[low, high]}.

    @raise PCKExtensionParseError: If it is not.
    """
    if not isinstance(value, univ.Integer) or value.tagSet != kind.tagSet:
        msg = f"SGX extension field {oid} is not {kind.__name__}"
        raise PCKExtensionParseError(msg)
    out = int(value)
    if not low <= out <= high:
        msg = f"SGX extension field {oid} is {out}, not in [{low}, {high}]"
        raise PCKExtensionParseError(msg)
    return out


def _boolean(fields: dict[str, object], oid: str) -> bool | None:
    """
    An optional BOOLEAN.

    @raise PCKExtensionParseError: If it is present but not a BOOLEAN.
    """
    if oid not in fields:
        return None
    value = fields[oid]
    if (
        not isinstance(value, univ.Integer)
        or value.tagSet != univ.Boolean.tagSet
    ):
        msg = f"SGX extension field {oid} is not a BOOLEAN"
        raise PCKExtensionParseError(msg)
    return bool(value)
