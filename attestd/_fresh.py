"""
Fresh quotes: proof that the enclave behind an RA-TLS certificate holds
the certificate's key now, not only when the certificate was minted.

A client that has verified a server's certificate sends a nonce of its
own, over a connection presenting that same certificate, to
C{/.well-known/attestation?nonce=HEX}.  A daemon with an in-process
attestation source answers with a new quote whose report data is
SHA-256 of the certificate's SubjectPublicKeyInfo DER followed by SHA-256
of the nonce (L{fresh_report_data}).  L{check_fresh_quote} verifies that
quote with the certificate's collateral and trust root and checks that it
comes from the same enclave, binds the same key and answers this nonce.
L{request_fresh_quote} is the client's round trip, over a Twisted agent
that admits only the certificate already verified.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from attestd._client import AttestedPolicyForHTTPS, RATLSVerifier
from attestd._collateral import Collateral
from attestd._dcap import QuoteVerdict, TrustRoot, verify_quote
from attestd._platform import pck_identity
from attestd._verifier import RATLSVerdict
from attestd.errors import (
    AttestdError,
    FreshnessError,
    Mismatch,
    NonceParseError,
    ParseError,
    VerificationError,
)

#: Bounds on a nonce, in bytes.
MIN_NONCE_SIZE = 16
MAX_NONCE_SIZE = 64

#: The nonce size C{attestd verify --fresh} uses.
DEFAULT_NONCE_SIZE = 32

#: Bound on the attestation document a client reads (two quotes of at
#: most 8 KiB each, base64, and small fields).
MAX_DOCUMENT_SIZE = 256 * 1024

#: The attestation document's path.
ATTESTATION_PATH = "/.well-known/attestation"

#: A nonce in hex: nothing but hex digits (no spaces, no signs).
_NONCE_HEX = re.compile(r"[0-9a-fA-F]*")

#: Bound on the characters of server-supplied text put into an error.
MAX_SERVER_TEXT = 200


def printable(text: object, limit: int = MAX_SERVER_TEXT) -> str:
    """
    Server-supplied text made safe for a terminal: every character that
    is not printable (control characters, escape sequences, line breaks,
    bidirectional overrides) is written as a Python escape (C{\\x1b},
    C{\\n}, C{\\u202e}), backslashes are doubled, and text over
    C{limit} characters is cut with an ellipsis.

    @param text: The text (anything else is converted with C{str}).
    @param limit: Most characters kept, before escaping.
    @return: One printable line.
    """
    value = text if isinstance(text, str) else str(text)
    cut = len(value) > limit
    value = value[:limit]
    escaped = "".join(
        c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in value
    )
    return escaped + ("..." if cut else "")


def check_nonce(nonce: bytes) -> bytes:
    """
    Check a nonce's size.

    @param nonce: The nonce.
    @return: C{nonce}.
    @raise NonceParseError: If it is not 16 to 64 bytes long.
    """
    if not MIN_NONCE_SIZE <= len(nonce) <= MAX_NONCE_SIZE:
        msg = (
            f"a nonce is {MIN_NONCE_SIZE} to {MAX_NONCE_SIZE} bytes, "
            f"not {len(nonce)}"
        )
        raise NonceParseError(msg)
    return nonce


def parse_nonce(text: str | bytes) -> bytes:
    """
    Read a nonce given in hex (as in C{?nonce=HEX}).

    Only hex digits are accepted: no spaces (which C{bytes.fromhex}
    would skip), signs or other characters.

    @param text: 32 to 128 hex digits, an even number.
    @return: The nonce.
    @raise NonceParseError: If it is not hex of 16 to 64 bytes.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if _NONCE_HEX.fullmatch(text) is None:
        msg = "the nonce is not hexadecimal (only 0-9, a-f and A-F)"
        raise NonceParseError(msg)
    if len(text) % 2:
        msg = "the nonce has an odd number of hex digits"
        raise NonceParseError(msg)
    return check_nonce(bytes.fromhex(text))


def fresh_report_data(spki_der: bytes, nonce: bytes) -> bytes:
    """
    The report data of a fresh quote: SHA-256 of the certificate's
    SubjectPublicKeyInfo DER, then SHA-256 of the nonce.

    @param spki_der: The certificate key's SubjectPublicKeyInfo DER.
    @param nonce: The client's nonce.
    @return: 64 bytes.
    """
    return hashlib.sha256(spki_der).digest() + hashlib.sha256(nonce).digest()


@frozen
class FreshVerdict:
    """
    A fresh quote that passed L{check_fresh_quote}.

    @ivar nonce: The nonce it answers.
    @ivar quote: The DCAP verdict of the fresh quote.
    @ivar certificate_sha256: SHA-256 of the certificate whose key it
        binds.
    """

    nonce: bytes
    quote: QuoteVerdict
    certificate_sha256: bytes

    def to_json_dict(self) -> dict[str, Any]:
        """
        The verdict as JSON-ready data.
        """
        return {
            "nonce": self.nonce.hex(),
            "certificate_sha256": self.certificate_sha256.hex(),
            "status": self.quote.status.value,
            "advisory_ids": list(self.quote.advisory_ids),
            "report_data": self.quote.quote.report.report_data.hex(),
            "quote_sha256": hashlib.sha256(self.quote.quote.raw).hexdigest(),
        }


def _differs(a: bytes, b: bytes) -> bool:
    return not hmac.compare_digest(a, b)


def check_fresh_quote(
    fresh_quote: bytes,
    *,
    nonce: bytes,
    certificate: RATLSVerdict,
    collateral: Collateral,
    now: datetime.datetime | float,
    trust_root: TrustRoot | None = None,
) -> FreshVerdict:
    """
    Check a fresh quote against the verified certificate it vouches for.

    The quote must verify with the same collateral and trust root as the
    certificate's (and satisfy the same policy); its enclave must be the
    certificate's (MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN, attributes);
    and its report data must be L{fresh_report_data} of the
    certificate's key and C{nonce}.

    @param fresh_quote: The quote the server returned.
    @param nonce: The nonce the client sent.
    @param certificate: The verdict of the certificate, accepted.
    @param collateral: The collateral the certificate was verified with.
    @param now: The verification time.
    @param trust_root: The trust root the certificate was verified with.
    @return: The fresh verdict.
    @raise NonceParseError: If C{nonce} has the wrong size.
    @raise FreshnessError: If the quote is malformed, does not verify, or
        differs from the certificate or the nonce; every difference is
        listed.
    """
    check_nonce(nonce)
    policy = certificate.policy
    try:
        verdict = verify_quote(
            fresh_quote,
            collateral,
            now=now,
            trust_root=trust_root,
            allow_expired_collateral=policy.allow_outdated_tcb_insecure,
        )
    except (ParseError, VerificationError) as e:
        msg = f"the fresh quote does not verify: {e}"
        raise FreshnessError(msg) from e
    was = certificate.evidence.quote.report
    now_report = verdict.quote.report
    mismatches: list[Mismatch] = []
    for name, expected, actual in [
        ("mrenclave", was.mrenclave, now_report.mrenclave),
        ("mrsigner", was.mrsigner, now_report.mrsigner),
        ("attributes", was.attributes, now_report.attributes),
    ]:
        if _differs(expected, actual):
            mismatches.append(Mismatch(name, expected.hex(), actual.hex()))
    for name, number, got in [
        ("isv_prod_id", was.isv_prod_id, now_report.isv_prod_id),
        ("isv_svn", was.isv_svn, now_report.isv_svn),
    ]:
        if number != got:
            mismatches.append(Mismatch(name, str(number), str(got)))
    info = certificate.evidence.certificate
    want = fresh_report_data(info.spki_der, nonce)
    got_data = now_report.report_data
    if _differs(want[:32], got_data[:32]):
        mismatches.append(
            Mismatch(
                "report_data[0:32] (certificate key)",
                want[:32].hex(),
                got_data[:32].hex(),
            )
        )
    if _differs(want[32:], got_data[32:]):
        mismatches.append(
            Mismatch(
                "report_data[32:64] (SHA-256 of the nonce)",
                want[32:].hex(),
                got_data[32:].hex(),
            )
        )
    mismatches.extend(policy.mismatches(verdict))
    if mismatches:
        msg = "the fresh quote does not vouch for this certificate and nonce"
        raise FreshnessError(msg, mismatches)
    return FreshVerdict(
        nonce=nonce, quote=verdict, certificate_sha256=info.sha256
    )


@define
class RecordingVerifier(RATLSVerifier):
    """
    An L{RATLSVerifier} that remembers the verdict it reached for each
    certificate it accepted, so that the caller knows exactly which
    certificate the connection carrying its request presented.

    @ivar verdicts: The verdicts, in the order of the handshakes.
    """

    verdicts: list[RATLSVerdict] = field(factory=list, init=False)

    def verify(self, certificate_der: bytes) -> RATLSVerdict:
        """
        Verify as usual and remember the verdict.
        """
        verdict = super().verify(certificate_der)
        self.verdicts.append(verdict)
        return verdict


class _BoundedBody(Protocol):
    """
    Collects a response body of at most C{limit} bytes.
    """

    def __init__(self, done: Deferred[bytes], limit: int) -> None:
        self._done = done
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            transport: Any = self.transport
            transport.stopProducing()
            msg = f"the attestation document is over {self._limit} bytes"
            self._done.errback(Failure(FreshnessError(msg)))
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(reason)


def _attestd_error(failure: Failure) -> AttestdError | None:
    """
    The attestd error behind a failed request (e.g. the RA-TLS check of
    the handshake), if there is one.
    """
    if isinstance(failure.value, AttestdError):
        return failure.value
    if isinstance(failure.value, ResponseNeverReceived | ResponseFailed):
        for reason in failure.value.reasons:
            if isinstance(reason.value, AttestdError):
                return reason.value
    return None


class FreshRequestError(AttestdError):
    """
    The fresh-quote request could not be made: the server could not be
    reached, or the connection failed for a reason other than RA-TLS
    verification.
    """


def _document(body: bytes, status: int) -> dict[str, Any]:
    """
    The JSON object of an attestation response.

    @raise FreshnessError: If it is not a JSON object.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        msg = f"the attestation response ({status}) is not JSON"
        raise FreshnessError(msg) from e
    if not isinstance(document, dict):
        msg = f"the attestation response ({status}) is not a JSON object"
        raise FreshnessError(msg)
    return document


async def request_fresh_quote(
    reactor: Any,
    url: str,
    *,
    certificate: RATLSVerdict,
    collateral: Collateral,
    trust_root: TrustRoot | None,
    clock: Callable[[], float],
    nonce: bytes,
    timeout: float,
) -> tuple[RATLSVerdict, bytes]:
    """
    Ask a server for a fresh quote over an attested connection.

    The connection is admitted only if the certificate it presents passes
    verification in the handshake, with the policy of C{certificate} and
    the same collateral and trust root.  That certificate is the one the
    fresh quote must bind: it is usually C{certificate}'s, but a server
    that rotated its certificate since presents its new one, which is
    verified in full and returned.

    @param reactor: The reactor.
    @param url: The server's C{https://HOST[:PORT]} URL.
    @param certificate: The verdict of the certificate already verified.
    @param collateral: The collateral it was verified with.
    @param trust_root: The trust root it was verified with.
    @param clock: The verification time, as POSIX seconds.
    @param nonce: The nonce to send.
    @param timeout: Seconds allowed for the whole exchange.
    @return: The verdict on the certificate of the connection that
        carried the request, and the fresh quote's bytes.
    @raise FreshnessError: If the server answers with an error (such as "this
        source cannot give fresh quotes") or a malformed document, or the
        document is for another certificate or nonce.
    @raise attestd.errors.VerificationError: If the certificate is
        refused in the handshake.
    @raise FreshRequestError: If the exchange fails otherwise.
    """
    check_nonce(nonce)
    recording = RecordingVerifier(certificate.policy, trust_root, clock)
    fmspc, ca = pck_identity(certificate.evidence.quote)
    recording.add_collateral(fmspc, ca, collateral)
    agent = Agent(
        reactor,
        contextFactory=AttestedPolicyForHTTPS(recording),
        connectTimeout=timeout,
    )
    uri = f"{url.rstrip('/')}{ATTESTATION_PATH}?nonce={nonce.hex()}"
    requested = agent.request(
        b"GET",
        uri.encode("ascii"),
        Headers({b"user-agent": [b"attestd-verify"]}),
    )
    requested.addTimeout(timeout, reactor)
    try:
        response: IResponse = await requested
        done: Deferred[bytes] = Deferred()
        response.deliverBody(_BoundedBody(done, MAX_DOCUMENT_SIZE))
        done.addTimeout(timeout, reactor)
        body = await done
    except AttestdError:
        raise
    except Exception as e:
        found = _attestd_error(Failure())
        if found is not None:
            raise found from e
        msg = f"fresh-quote request to {printable(url)} failed: {printable(e)}"
        raise FreshRequestError(msg) from e
    # One request, one connection, one handshake: its verdict names the
    # certificate whose key the fresh quote must bind.
    presented = recording.verdicts[-1]
    certificate_der = presented.evidence.certificate.der
    document = _document(body, response.code)
    if response.code != 200:
        reason = printable(document.get("reason") or document.get("error"))
        msg = (
            f"the server gave no fresh quote (HTTP {response.code}): {reason}"
        )
        raise FreshnessError(msg)
    mismatches = []
    want_sha = hashlib.sha256(certificate_der).hexdigest()
    if document.get("certificate_sha256") != want_sha:
        mismatches.append(
            Mismatch(
                "certificate_sha256",
                want_sha,
                printable(document.get("certificate_sha256")),
            )
        )
    if document.get("nonce") != nonce.hex():
        mismatches.append(
            Mismatch("nonce", nonce.hex(), printable(document.get("nonce")))
        )
    encoded = document.get("fresh_quote")
    if not isinstance(encoded, str):
        mismatches.append(Mismatch("fresh_quote", "base64 text", "none"))
    if mismatches:
        msg = "the attestation document does not answer this request"
        raise FreshnessError(msg, mismatches)
    assert isinstance(encoded, str)
    try:
        quote = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        msg = "the fresh quote is not base64"
        raise FreshnessError(msg) from e
    return presented, quote
