"""
Property tests: random bytes, and truncations, bit flips and splices of
the real vectors, thrown at every parser.

Each property asserts one thing: nothing escapes but attestd's own
errors.  Malformed input must raise a L{ParseError} subclass; input that
parses but does not hold up (no evidence, a broken binding, a bad
signature) may raise a L{VerificationError} subclass.  An C{IndexError},
C{struct.error}, C{KeyError}, C{UnicodeError}, pyasn1 or cbor2 error, or
anything else, fails the test.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import cbor2
import pytest
from cryptography import x509
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_modules import rfc5280

from attestd._collateral import Collateral
from attestd._dcap import verify_quote
from attestd._evidence import (
    CBOR_TAG_INTEL_QUOTE,
    OID_DICE_TAGGED_EVIDENCE,
    OID_LEGACY_GRAMINE,
    CertificateInfo,
    RATLSEvidence,
    certificate_der,
)
from attestd._pck import PCKExtension
from attestd._quote import SIGNED_SIZE, Quote, ReportBody
from attestd._tcb import QEIdentity, TCBInfo
from attestd.errors import ParseError, VerificationError

from ._vectors import (
    AUTOMATA_BUNDLE,
    CCC_DER,
    CCC_DICE_QUOTE,
    CCC_LEGACY_QUOTE,
    CCC_PEM,
    DCAP_QVL_COLLATERAL,
    DCAP_QVL_QUOTE,
    KONVERA_DER,
    KONVERA_PEM,
    KONVERA_QUOTE,
    KONVERA_TRUSTED_PEM,
    expected,
)

T = TypeVar("T")

#: C{ATTESTD_FUZZ_EXAMPLES} raises the count for a longer hunt.
FUZZ = settings(
    max_examples=int(os.environ.get("ATTESTD_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PARSE_ONLY: tuple[type[Exception], ...] = (ParseError,)
PARSE_OR_REFUSAL: tuple[type[Exception], ...] = (
    ParseError,
    VerificationError,
)

QUOTES = {
    "konvera": KONVERA_QUOTE.read_bytes(),
    "dcap-qvl": DCAP_QVL_QUOTE.read_bytes(),
    "ccc-legacy": CCC_LEGACY_QUOTE.read_bytes(),
    "ccc-dice": CCC_DICE_QUOTE.read_bytes(),
}
CERTIFICATES = {
    "konvera": KONVERA_DER.read_bytes(),
    "ccc": CCC_DER.read_bytes(),
}
CERTIFICATE_FILES = {
    "konvera.pem": KONVERA_PEM.read_bytes(),
    "konvera.trusted.pem": KONVERA_TRUSTED_PEM.read_bytes(),
    "ccc.pem": CCC_PEM.read_bytes(),
}
BUNDLES = {
    "automata": AUTOMATA_BUNDLE.read_text(),
    "dcap-qvl": DCAP_QVL_COLLATERAL.read_text(),
}
#: Quote, bundle and a time inside the bundle's window, for each real
#: quote that verifies.
VERIFIABLE = {
    "konvera": (
        QUOTES["konvera"],
        json.loads(BUNDLES["automata"]),
        expected()["automata_0825_bundle"]["verification_time"],
    ),
    "dcap-qvl": (
        QUOTES["dcap-qvl"],
        json.loads(BUNDLES["dcap-qvl"]),
        expected()["dcap_qvl_sgx_sample"]["source_asserts"]["now"],
    ),
}
SIGNED_DOCUMENTS = {
    f"{bundle}/{field}": json.loads(BUNDLES[bundle])[field]
    for bundle in BUNDLES
    for field in ("tcb_info", "qe_identity")
}


def pck_extension(quote: bytes) -> bytes:
    """
    The DER value of the SGX extension of a quote's PCK leaf.
    """
    leaf = x509.load_pem_x509_certificate(
        Quote.from_bytes(quote).pck_chain_pem()[0]
    )
    oid = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
    value = leaf.extensions.get_extension_for_oid(oid).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


PCK_EXTENSIONS = {
    name: pck_extension(QUOTES[name]) for name in ("konvera", "dcap-qvl")
}


def only(
    allowed: tuple[type[Exception], ...], call: Callable[[], T]
) -> T | None:
    """
    Run C{call}; return its result, or C{None} if it raised one of
    C{allowed}.  Any other exception propagates and fails the property.
    The outcome is recorded for C{--hypothesis-show-statistics}.
    """
    try:
        result = call()
    except allowed as e:
        event(f"{type(e).__name__}")
        return None
    event("accepted")
    return result


def quote_hot_spots(quote: bytes) -> list[int]:
    """
    Offsets of the length and type fields of a v3 quote, where a flip
    steers the parser into its bounds checks.
    """
    auth_size_at = SIGNED_SIZE + 4 + 576
    auth_size = int.from_bytes(
        quote[auth_size_at : auth_size_at + 2], "little"
    )
    cert_at = auth_size_at + 2 + auth_size
    spots = [*range(8), *range(SIGNED_SIZE, SIGNED_SIZE + 4)]
    spots += [*range(auth_size_at, auth_size_at + 2)]
    spots += [*range(cert_at, cert_at + 6)]
    return [s for s in spots if s < len(quote)]


def der_hot_spots(der: bytes) -> list[int]:
    """
    Offsets of the outer TLV headers and of the bytes around every
    extension OID of a certificate.
    """
    spots = list(range(min(16, len(der))))
    for oid in (
        bytes.fromhex("06092a864886f84d8a3906"),  # legacy OID
        bytes.fromhex("0606678105050409"),  # DICE OID
    ):
        at = der.find(oid)
        if at >= 0:
            spots += range(max(0, at - 6), min(len(der), at + len(oid) + 8))
    return spots


@st.composite
def mutated(
    draw: st.DrawFn, seed: bytes, hot: list[int] | None = None
) -> bytes:
    """
    C{seed} after one to four edits: bit flips, byte overwrites,
    truncations, deletions, insertions and duplicated slices, at random
    offsets or (half of the time, when given) at C{hot} offsets.
    """
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        if hot and draw(st.booleans()):
            at = draw(st.sampled_from(hot))
        else:
            at = draw(st.integers(0, max(len(data) - 1, 0)))
        at = min(at, max(len(data) - 1, 0))
        kind = draw(
            st.sampled_from(
                ["flip", "set", "truncate", "delete", "insert", "splice"]
            )
        )
        if not data:
            kind = "insert"
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]))
        elif kind == "truncate":
            del data[at:]
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            size = draw(st.integers(1, 64))
            data[at:at] = data[at : at + size]
    return bytes(data)


def replace_extension(der: bytes, oid: str, value: bytes) -> bytes:
    """
    C{der} re-encoded with the value of extension C{oid} replaced, so
    that malformed evidence still sits in a well-formed certificate.
    """
    cert, _ = der_decoder.decode(der, asn1Spec=rfc5280.Certificate())
    for ext in cert["tbsCertificate"]["extensions"]:
        if str(ext["extnID"]) == oid:
            ext["extnValue"] = value
            break
    else:
        msg = f"no extension {oid}"
        raise AssertionError(msg)
    return bytes(der_encoder.encode(cert))


def evidence_of(der: bytes) -> None:
    """
    The whole RA-TLS evidence path: extraction, then the binding check.
    """
    evidence = RATLSEvidence.from_certificate(der)
    evidence.check_binding()


#: JSON-like values, for collateral fields and DICE claims.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

#: CBOR-encodable values, byte strings and tags included.
cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.binary(max_size=40)
    | st.text(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=12) | st.integers(-5, 5), inner, max_size=4
        )
        | st.builds(cbor2.CBORTag, st.sampled_from([24, 60000, 1234]), inner)
    ),
    max_leaves=12,
)


class TestQuoteParser:
    @FUZZ
    @given(st.binary(max_size=6000))
    def test_random_bytes(self, data: bytes) -> None:
        """
        Random bytes are parsed or refused with a parse error.
        """
        only(PARSE_ONLY, lambda: Quote.from_bytes(data))

    @FUZZ
    @given(st.data())
    def test_structured_signature_data(self, data: st.DataObject) -> None:
        """
        Quotes whose signature data is laid out field by field, each
        length right or wrong and the certification data random, PEM-like
        or a damaged real chain, are parsed or refused with a parse error;
        so is the PCK chain of those that parse.
        """
        real = Quote.from_bytes(QUOTES["konvera"])
        auth = data.draw(st.binary(max_size=40))
        cert = data.draw(
            st.binary(max_size=200)
            | mutated(real.certification_data)
            | st.just(
                b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----"
            )
        )

        def length(size: int, actual: int) -> bytes:
            # Right most of the time, so that later fields are reached.
            value = data.draw(
                st.one_of(
                    st.just(actual),
                    st.just(actual),
                    st.just(actual),
                    st.sampled_from([actual + 1, max(actual - 1, 0)]),
                    st.integers(0, 2 ** (8 * size) - 1),
                )
            )
            return value.to_bytes(size, "little")

        signature_data = (
            data.draw(st.binary(min_size=576, max_size=576))
            + length(2, len(auth))
            + auth
            + data.draw(st.sampled_from([5, 0, 1, 4, 6, 0xFFFF])).to_bytes(
                2, "little"
            )
            + length(4, len(cert))
            + cert
        )
        quote_bytes = (
            QUOTES["konvera"][:SIGNED_SIZE]
            + length(4, len(signature_data))
            + signature_data
        )
        quote = only(PARSE_ONLY, lambda: Quote.from_bytes(quote_bytes))
        if quote is not None:
            only(PARSE_ONLY, quote.pck_chain_pem)

    @FUZZ
    @given(
        st.sampled_from(sorted(QUOTES)).flatmap(
            lambda name: mutated(QUOTES[name], quote_hot_spots(QUOTES[name]))
        )
    )
    def test_mutated_real_quotes(self, data: bytes) -> None:
        """
        Truncated, flipped and spliced real quotes are parsed or refused
        with a parse error; so is the PCK chain of those that parse.
        """
        quote = only(PARSE_ONLY, lambda: Quote.from_bytes(data))
        if quote is not None:
            only(PARSE_ONLY, quote.pck_chain_pem)

    @FUZZ
    @given(st.binary(max_size=800))
    def test_report_body(self, data: bytes) -> None:
        """
        A report body of any length is parsed (384 bytes) or refused with
        a parse error.
        """
        body = only(PARSE_ONLY, lambda: ReportBody.from_bytes(data))
        assert (body is not None) == (len(data) == 384)


class TestCertificateParsers:
    @FUZZ
    @given(st.binary(max_size=3000))
    def test_certificate_der_random(self, data: bytes) -> None:
        """
        Random bytes given as a certificate file yield DER or a parse
        error.
        """
        only(PARSE_ONLY, lambda: certificate_der(data))

    @FUZZ
    @given(
        st.sampled_from(["CERTIFICATE", "TRUSTED CERTIFICATE"]),
        st.binary(max_size=600),
        st.text(alphabet="ABCD+/=\n \r\t!", max_size=40),
    )
    def test_certificate_der_pem_shapes(
        self, label: str, body: bytes, noise: str
    ) -> None:
        """
        PEM blocks around random or damaged base64 yield DER or a parse
        error.
        """
        text = base64.encodebytes(body).decode() + noise
        data = (
            f"-----BEGIN {label}-----\n{text}\n-----END {label}-----\n"
        ).encode()
        der = only(PARSE_ONLY, lambda: certificate_der(data))
        if der is not None:
            only(PARSE_OR_REFUSAL, lambda: evidence_of(der))

    @FUZZ
    @given(
        st.sampled_from(sorted(CERTIFICATE_FILES)).flatmap(
            lambda name: mutated(CERTIFICATE_FILES[name])
        )
    )
    def test_certificate_der_mutated_files(self, data: bytes) -> None:
        """
        Damaged PEM files of the real certificates yield DER or a parse
        error, and that DER goes through the evidence path without any
        foreign exception.
        """
        der = only(PARSE_ONLY, lambda: certificate_der(data))
        if der is not None:
            only(PARSE_OR_REFUSAL, lambda: evidence_of(der))

    @FUZZ
    @given(st.binary(max_size=3000))
    def test_certificate_info_random(self, data: bytes) -> None:
        """
        Random bytes given as certificate DER are refused with a parse
        error.
        """
        only(PARSE_ONLY, lambda: CertificateInfo.from_der(data))

    @FUZZ
    @given(
        st.sampled_from(sorted(CERTIFICATES)).flatmap(
            lambda name: mutated(
                CERTIFICATES[name], der_hot_spots(CERTIFICATES[name])
            )
        )
    )
    def test_mutated_real_certificates(self, data: bytes) -> None:
        """
        Damaged real certificates are parsed or refused with a parse
        error, and their evidence (extraction and binding) only ever
        fails with attestd's errors.
        """
        only(PARSE_ONLY, lambda: CertificateInfo.from_der(data))
        only(PARSE_OR_REFUSAL, lambda: evidence_of(data))

    @FUZZ
    @given(
        st.sampled_from(sorted(QUOTES)).flatmap(
            lambda name: mutated(QUOTES[name], quote_hot_spots(QUOTES[name]))
        )
    )
    def test_mutated_legacy_extension(self, quote: bytes) -> None:
        """
        A damaged quote in the legacy extension of an otherwise
        well-formed certificate fails only with attestd's errors.
        """
        der = replace_extension(
            CERTIFICATES["konvera"], OID_LEGACY_GRAMINE, quote
        )
        only(PARSE_OR_REFUSAL, lambda: evidence_of(der))

    def test_length_beyond_a_machine_word(self) -> None:
        """
        A DER length of eight bytes (found by the properties above: pyasn1
        raises C{OverflowError} for it) is refused with a parse error.
        """
        der = CERTIFICATES["konvera"]
        version = bytes.fromhex("a003020102")
        assert 8 == der.find(version)
        damaged = der.replace(version, bytes.fromhex("a003028880"), 1)
        with pytest.raises(ParseError, match="not a well-formed"):
            CertificateInfo.from_der(damaged)


class TestDICE:
    @FUZZ
    @given(
        mutated(
            CertificateInfo.from_der(CERTIFICATES["ccc"]).extensions[
                OID_DICE_TAGGED_EVIDENCE
            ],
            list(range(12)),
        )
    )
    def test_mutated_tagged_evidence(self, value: bytes) -> None:
        """
        Damaged CBOR in the DICE extension of the CCC certificate fails
        only with attestd's errors.
        """
        der = replace_extension(
            CERTIFICATES["ccc"], OID_DICE_TAGGED_EVIDENCE, value
        )
        only(PARSE_OR_REFUSAL, lambda: evidence_of(der))

    @FUZZ
    @given(cbor_values)
    def test_random_cbor_evidence(self, item: object) -> None:
        """
        Any CBOR value as DICE evidence, tagged 60000 or not, fails only
        with attestd's errors.
        """
        der = replace_extension(
            CERTIFICATES["ccc"], OID_DICE_TAGGED_EVIDENCE, cbor2.dumps(item)
        )
        only(PARSE_OR_REFUSAL, lambda: evidence_of(der))

    @FUZZ
    @given(
        st.one_of(
            cbor_values.map(cbor2.dumps),
            mutated(
                cbor2.loads(
                    CertificateInfo.from_der(CERTIFICATES["ccc"]).extensions[
                        OID_DICE_TAGGED_EVIDENCE
                    ]
                ).value[1]
            ),
            st.dictionaries(
                st.sampled_from(["pubkey-hash", "nonce", "key_0"]),
                cbor_values
                | st.tuples(st.integers(-2, 9), st.binary(max_size=70)).map(
                    lambda entry: cbor2.dumps(list(entry))
                ),
                max_size=3,
            ).map(cbor2.dumps),
        )
    )
    def test_random_claims(self, claims: bytes) -> None:
        """
        Well-tagged evidence around the real DICE quote with random,
        damaged or plausible claims fails only with attestd's errors.
        """
        value = cbor2.dumps(
            cbor2.CBORTag(CBOR_TAG_INTEL_QUOTE, [QUOTES["ccc-dice"], claims])
        )
        der = replace_extension(
            CERTIFICATES["ccc"], OID_DICE_TAGGED_EVIDENCE, value
        )
        only(PARSE_OR_REFUSAL, lambda: evidence_of(der))


class TestCollateralParser:
    @FUZZ
    @given(st.binary(max_size=2000) | st.text(max_size=2000))
    def test_random_input(self, data: bytes | str) -> None:
        """
        Random bytes or text as a bundle are refused with a parse error.
        """
        only(PARSE_ONLY, lambda: Collateral.from_json(data))

    @FUZZ
    @given(
        st.sampled_from(sorted(BUNDLES)).flatmap(
            lambda name: mutated(BUNDLES[name].encode())
        )
    )
    def test_mutated_bundles(self, data: bytes) -> None:
        """
        Damaged real bundles (as bytes, and as text when they still
        decode) are read or refused with a parse error.
        """
        only(PARSE_ONLY, lambda: Collateral.from_json(data))
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return
        only(PARSE_ONLY, lambda: Collateral.from_json(text))

    @FUZZ
    @given(
        st.sampled_from(sorted(BUNDLES)),
        st.dictionaries(
            st.sampled_from(
                [*sorted(json.loads(BUNDLES["automata"])), "extra"]
            ),
            json_values | st.text(alphabet="0123456789abcdefABCDEFxyz "),
            min_size=1,
            max_size=3,
        ),
        st.lists(
            st.sampled_from(sorted(json.loads(BUNDLES["automata"]))),
            max_size=2,
        ),
    )
    def test_wrong_field_values(
        self, name: str, changes: dict[str, Any], removed: list[str]
    ) -> None:
        """
        A bundle with fields replaced by other JSON values, odd hex or
        removed is read or refused with a parse error.
        """
        data = json.loads(BUNDLES[name])
        data.update(changes)
        for field in removed:
            data.pop(field, None)
        only(PARSE_ONLY, lambda: Collateral.from_json(json.dumps(data)))
        only(PARSE_ONLY, lambda: Collateral.from_dict(data))

    def test_deeply_nested_json(self) -> None:
        """
        A bundle of deeply nested JSON arrays is refused with a parse
        error.
        """
        with pytest.raises(ParseError):
            Collateral.from_json("[" * 100_000)


def json_paths(
    value: object, path: tuple[object, ...] = ()
) -> Iterator[tuple[object, ...]]:
    """
    Every path (keys and indexes) into a decoded JSON document.
    """
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from json_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from json_paths(item, (*path, index))


@st.composite
def json_mutated(draw: st.DrawFn, text: str) -> str:
    """
    A JSON document with one to three values, anywhere in it, replaced
    by other JSON values or removed.
    """
    document = json.loads(text)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in json_paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = document
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(
                json_values
                | st.sampled_from(
                    [-1, 2**64, "", "00" * 6, "2025-13-01T00:00:00Z"]
                )
            )
    return json.dumps(document, separators=(",", ":"))


class TestPCKExtensionParser:
    @FUZZ
    @given(st.binary(max_size=1200))
    def test_random_bytes(self, data: bytes) -> None:
        """
        Random bytes as the SGX extension are refused with a parse error.
        """
        only(PARSE_ONLY, lambda: PCKExtension.from_der(data))

    @FUZZ
    @given(
        st.sampled_from(sorted(PCK_EXTENSIONS)).flatmap(
            lambda name: mutated(PCK_EXTENSIONS[name], list(range(8)))
        )
    )
    def test_mutated_real_extensions(self, data: bytes) -> None:
        """
        Damaged SGX extensions of real PCK certificates are parsed or
        refused with a parse error.
        """
        only(PARSE_ONLY, lambda: PCKExtension.from_der(data))

    @pytest.mark.parametrize("data", ["0288800000000000000000", "3003300000"])
    def test_pyasn1_internal_errors(self, data: str) -> None:
        """
        Inputs that make pyasn1 fail with its internal errors (found by
        the properties above: C{OverflowError} for an 8-byte length,
        C{AttributeError} for end-of-contents inside a definite SEQUENCE)
        are refused with a parse error.
        """
        with pytest.raises(ParseError):
            PCKExtension.from_der(bytes.fromhex(data))


class TestSignedDocumentParsers:
    @FUZZ
    @given(st.binary(max_size=2000) | st.text(max_size=2000))
    def test_random_input(self, data: bytes | str) -> None:
        """
        Random bytes or text as TCB Info or QE Identity are refused with
        a parse error (or, for well-formed JSON of the wrong kind, a
        mismatch).
        """
        only(PARSE_OR_REFUSAL, lambda: TCBInfo.from_json(data))
        only(PARSE_OR_REFUSAL, lambda: QEIdentity.from_json(data))

    @FUZZ
    @given(
        st.sampled_from(sorted(SIGNED_DOCUMENTS)).flatmap(
            lambda name: (
                mutated(SIGNED_DOCUMENTS[name].encode())
                | json_mutated(SIGNED_DOCUMENTS[name])
            )
        )
    )
    def test_mutated_real_documents(self, data: bytes | str) -> None:
        """
        Damaged real TCB Info and QE Identity documents (bytes flipped,
        or values replaced and removed anywhere in the JSON) are read or
        refused with attestd's errors, whichever parser reads them.
        """
        only(PARSE_OR_REFUSAL, lambda: TCBInfo.from_json(data))
        only(PARSE_OR_REFUSAL, lambda: QEIdentity.from_json(data))


class TestVerifyQuote:
    @FUZZ
    @given(
        st.sampled_from(sorted(VERIFIABLE)),
        st.data(),
    )
    def test_mutated_collateral(self, name: str, data: st.DataObject) -> None:
        """
        A real quote against its real bundle with one field damaged
        (bytes of the text, the JSON of a signed document, or the hex of
        a CRL or signature) fails only with attestd's errors.
        """
        quote, bundle, now = VERIFIABLE[name]
        bundle = dict(bundle)
        field = data.draw(st.sampled_from(sorted(bundle)))
        value = bundle[field]
        if field in ("tcb_info", "qe_identity"):
            strategy = json_mutated(value) | mutated(value.encode()).map(
                lambda b: b.decode("utf-8", "surrogateescape")
            )
        elif field.endswith("_chain"):
            strategy = mutated(value.encode()).map(
                lambda b: b.decode("utf-8", "surrogateescape")
            )
        else:
            strategy = mutated(bytes.fromhex(value), list(range(8))).map(
                bytes.hex
            )
        bundle[field] = data.draw(strategy)
        collateral = only(PARSE_ONLY, lambda: Collateral.from_dict(bundle))
        if collateral is not None:
            only(
                PARSE_OR_REFUSAL,
                lambda: verify_quote(quote, collateral, now=now),
            )

    @FUZZ
    @given(
        st.sampled_from(sorted(VERIFIABLE)).flatmap(
            lambda name: st.tuples(
                st.just(name),
                mutated(
                    VERIFIABLE[name][0],
                    quote_hot_spots(VERIFIABLE[name][0])
                    + list(range(SIGNED_SIZE + 4, SIGNED_SIZE + 4 + 576)),
                ),
            )
        )
    )
    def test_mutated_quotes(self, case: tuple[str, bytes]) -> None:
        """
        A damaged real quote against its real bundle fails only with
        attestd's errors.
        """
        name, quote = case
        _, bundle, now = VERIFIABLE[name]
        collateral = Collateral.from_dict(bundle)
        only(
            PARSE_OR_REFUSAL, lambda: verify_quote(quote, collateral, now=now)
        )

    def test_undecodable_subject_in_collateral(self) -> None:
        """
        An issuer chain whose certificate has a subject that is not valid
        UTF-8 (found by the properties above) is refused with a parse
        error.
        """
        quote, bundle, now = VERIFIABLE["dcap-qvl"]
        bundle = dict(bundle)
        # "Intel SGX PCK Processor CA" becomes "...Proces\x83or CA".
        chain = bundle["pck_crl_issuer_chain"]
        assert 1 == chain.count("UHJvY2Vzc29y")
        bundle["pck_crl_issuer_chain"] = chain.replace(
            "UHJvY2Vzc29y", "UHJvY2Vzg29y"
        )
        with pytest.raises(ParseError):
            verify_quote(quote, Collateral.from_dict(bundle), now=now)

    def test_undecodable_subject_in_quote(self) -> None:
        """
        A quote whose PCK leaf has a subject that is not valid UTF-8 is
        refused with a parse error.
        """
        quote, bundle, now = VERIFIABLE["konvera"]
        # "Intel SGX PCK Certificate" becomes "...Certificat\x83".
        assert 1 == quote.count(b"UENLIENlcnRpZmljYXRl")
        damaged = quote.replace(
            b"UENLIENlcnRpZmljYXRl", b"UENLIENlcnRpZmljYXSD"
        )
        with pytest.raises(ParseError):
            verify_quote(damaged, Collateral.from_dict(bundle), now=now)

    def test_undecodable_crl_issuer(self) -> None:
        """
        A PCK CRL whose issuer name does not decode (found by the
        properties above: an OID length one short) is refused with a
        parse error.
        """
        quote, bundle, now = VERIFIABLE["dcap-qvl"]
        bundle = dict(bundle)
        # The issuer's locality attribute: OID 2.5.4.7, length 3 -> 2.
        crl = bundle["pck_crl"]
        assert crl.index("0603550407") < 200
        bundle["pck_crl"] = crl.replace("0603550407", "0602550407", 1)
        with pytest.raises(ParseError):
            verify_quote(quote, Collateral.from_dict(bundle), now=now)
