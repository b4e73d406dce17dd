"""
The C{attestd} command: verify RA-TLS servers and inspect enclave
artefacts.

  - C{attestd verify https://HOST:PORT | --cert FILE}: verify a server's
    RA-TLS certificate (or a certificate file) against collateral and a
    measurement policy; with C{--fresh}, also ask the server for a fresh
    quote of a random nonce over a connection presenting that same
    certificate, and check it.  Exit status 0: accepted; 1: refused; 2:
    usage or I/O error.
  - C{attestd inspect FILE}: show what a certificate, quote or SIGSTRUCT
    (C{.sig}) holds, without verifying it.
  - C{attestd measure FILE.sig}: MRENCLAVE, MRSIGNER, ISV_PROD_ID, ISV_SVN
    and the debug flag of a signed enclave.
  - C{attestd collateral fetch}: fetch collateral from a PCCS or Intel PCS
    into an offline bundle.
  - C{attestd start}: the container start command (see L{attestd.start}).

Measurement flags default to Gramine's C{RA_TLS_*} environment variables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from attrs import define

from attestd._collateral import Collateral
from attestd._dcap import TrustRoot
from attestd._evidence import RATLSEvidence, certificate_der
from attestd._policy import Policy
from attestd._quote import Quote
from attestd._sigstruct import SIGSTRUCT_SIZE, Sigstruct
from attestd._verifier import RATLSVerdict, verify_ratls_certificate
from attestd.errors import (
    AttestdError,
    ConfigurationError,
    FreshnessError,
    InsecurePolicyWarning,
    ParseError,
    PolicyError,
    VerificationError,
)

if TYPE_CHECKING:
    from attestd._fresh import FreshVerdict

EXIT_ACCEPTED = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

#: Bound on files read by the command: certificates, quotes, bundles.
_MAX_INPUT = 8 * 1024 * 1024


class _UsageError(Exception):
    """
    Bad arguments or unreadable input: exit status 2.
    """


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_INPUT + 1)
    except OSError as e:
        msg = f"cannot read {what} {path}: {e.strerror or e}"
        raise _UsageError(msg) from e
    if len(data) > _MAX_INPUT:
        msg = f"{what} {path} is larger than {_MAX_INPUT} bytes"
        raise _UsageError(msg)
    return data


def _parse_time(text: str) -> datetime:
    """
    The C{--at} time: POSIX seconds, or ISO 8601 (UTC when no zone).

    @raise _UsageError: If C{text} is empty, not a time, or out of range.
    """
    msg = f"--at: {text!r} is neither POSIX seconds nor ISO 8601"
    if not text.strip():
        raise _UsageError(msg)
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    try:
        if seconds is not None:
            if not math.isfinite(seconds):
                raise _UsageError(msg)
            return datetime.fromtimestamp(seconds, timezone.utc)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as e:
        raise _UsageError(msg) from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when


def _hex32(text: str, name: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        msg = f"{name} must be 64 hex digits"
        raise _UsageError(msg)
    return value


def _u16(text: str, name: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFF:
        msg = f"{name} must be a decimal number from 0 to 65535"
        raise _UsageError(msg)
    return int(text)


def build_policy(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> Policy:
    """
    The policy the command line asks for.

    Flags win; without any measurement flag, Gramine's C{RA_TLS_*}
    variables are used with Gramine's rules (all four must be set, C{any}
    skips one).  The C{--allow-*} flags add to the C{RA_TLS_ALLOW_*}
    variables.

    @raise _UsageError: If the flags are inconsistent or malformed.
    """
    flags_given = any(
        v is not None
        for v in (
            args.mrenclave,
            args.mrsigner,
            args.isv_prod_id,
            args.isv_svn,
        )
    )
    env_given = any(k.startswith("RA_TLS_MR") for k in environ) or any(
        k.startswith("RA_TLS_ISV") for k in environ
    )
    allow = {
        "allow_outdated_tcb_insecure": args.allow_outdated
        or environ.get("RA_TLS_ALLOW_OUTDATED_TCB_INSECURE") == "1",
        "allow_hw_config_needed": args.allow_hw_config
        or environ.get("RA_TLS_ALLOW_HW_CONFIG_NEEDED") == "1",
        "allow_sw_hardening_needed": args.allow_sw_hardening
        or environ.get("RA_TLS_ALLOW_SW_HARDENING_NEEDED") == "1",
        "allow_debug_enclave_insecure": args.allow_debug
        or environ.get("RA_TLS_ALLOW_DEBUG_ENCLAVE_INSECURE") == "1",
    }
    if not flags_given and env_given and not args.any_enclave:
        try:
            # The policy is built again below with the --allow-* flags,
            # which warns about "any enclave" itself: warn once.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecurePolicyWarning)
                from_env = Policy.from_env(environ)
        except ConfigurationError as e:
            raise _UsageError(str(e)) from e
        return Policy(
            mrenclave=from_env.mrenclave,
            mrsigner=from_env.mrsigner,
            isv_prod_id=from_env.isv_prod_id,
            isv_svn=from_env.isv_svn,
            accept_any_enclave=(
                from_env.mrenclave is None and from_env.mrsigner is None
            ),
            **allow,
        )
    mrenclave = (
        _hex32(args.mrenclave, "--mrenclave") if args.mrenclave else None
    )
    mrsigner = _hex32(args.mrsigner, "--mrsigner") if args.mrsigner else None
    if mrenclave is None and mrsigner is None and not args.any_enclave:
        msg = (
            "say which enclave to accept: --mrenclave and/or --mrsigner "
            "(or RA_TLS_* variables), or --any-enclave to accept any"
        )
        raise _UsageError(msg)
    try:
        return Policy(
            mrenclave=mrenclave,
            mrsigner=mrsigner,
            isv_prod_id=(
                _u16(args.isv_prod_id, "--isv-prod-id")
                if args.isv_prod_id is not None
                else None
            ),
            isv_svn=(
                _u16(args.isv_svn, "--isv-svn")
                if args.isv_svn is not None
                else None
            ),
            accept_any_enclave=args.any_enclave,
            **allow,
        )
    except ConfigurationError as e:
        raise _UsageError(str(e)) from e


def _peer_certificate(url: str, timeout: float) -> bytes:
    """
    Connect to an HTTPS URL and return the server's certificate DER,
    without trusting it (it is verified afterwards).
    """
    from attestd._fetchcert import fetch_peer_certificate

    return fetch_peer_certificate(url, timeout)


def _collateral_file(args: argparse.Namespace) -> Collateral:
    try:
        return Collateral.from_json(_read(args.collateral, "bundle"))
    except ParseError as e:
        msg = f"collateral bundle {args.collateral}: {e}"
        raise _UsageError(msg) from e


_NO_COLLATERAL = (
    "say where collateral comes from: --collateral FILE or --pccs URL"
)


def _collateral(
    args: argparse.Namespace, evidence: RATLSEvidence
) -> Collateral:
    if args.collateral:
        return _collateral_file(args)
    if args.pccs:
        from attestd._pccsfetch import fetch_blocking
        from attestd._platform import pck_identity

        fmspc, ca = pck_identity(evidence.quote)
        return fetch_blocking(
            args.pccs,
            fmspc,
            ca,
            ca_file=args.pccs_ca,
            timeout=args.timeout,
        )
    raise _UsageError(_NO_COLLATERAL)


async def _collateral_async(
    reactor: Any, args: argparse.Namespace, evidence: RATLSEvidence
) -> Collateral:
    """
    L{_collateral} for a command already running the reactor.
    """
    if args.collateral:
        return _collateral_file(args)
    if args.pccs:
        from attestd._pccs import CollateralClient
        from attestd._platform import pck_identity

        fmspc, ca = pck_identity(evidence.quote)
        client = CollateralClient(
            reactor, args.pccs, tls_trust=args.pccs_ca, timeout=args.timeout
        )
        collateral: Collateral = await client.fetch(fmspc, ca)
        return collateral
    raise _UsageError(_NO_COLLATERAL)


@define
class _Outcome:
    """
    What C{attestd verify} found.

    @ivar evidence: The certificate's evidence, if it could be read.
    @ivar collateral: The collateral used, if it was obtained.
    @ivar verdict: The certificate's verdict, if it was accepted.
    @ivar fresh: The fresh quote's verdict, if one was checked.
    @ivar error: Why it was refused, if it was.
    """

    evidence: RATLSEvidence | None = None
    collateral: Collateral | None = None
    verdict: RATLSVerdict | None = None
    fresh: FreshVerdict | None = None
    error: VerificationError | ParseError | None = None


def _decide(
    der: bytes,
    policy: Policy,
    now: datetime,
    trust_root: TrustRoot | None,
    collateral_for: Callable[[RATLSEvidence], Collateral],
) -> _Outcome:
    """
    Verify a certificate; a refusal is recorded, not raised.
    """
    outcome = _Outcome()
    try:
        outcome.evidence = RATLSEvidence.from_certificate(der)
        outcome.collateral = collateral_for(outcome.evidence)
        outcome.verdict = verify_ratls_certificate(
            der, outcome.collateral, policy, now=now, trust_root=trust_root
        )
    except (VerificationError, ParseError) as e:
        outcome.error = e
    return outcome


async def _decide_fresh(
    reactor: Any,
    args: argparse.Namespace,
    der: bytes,
    *,
    policy: Policy,
    now: datetime,
    trust_root: TrustRoot | None,
) -> _Outcome:
    """
    Verify a server's certificate, then ask it for a fresh quote of a
    random nonce over an attested connection and check that quote.
    """
    from attestd._fresh import (
        DEFAULT_NONCE_SIZE,
        check_fresh_quote,
        request_fresh_quote,
    )

    collateral: Collateral | None = None
    try:
        evidence = RATLSEvidence.from_certificate(der)
    except (VerificationError, ParseError):
        evidence = None
    if evidence is not None:
        collateral = await _collateral_async(reactor, args, evidence)

    def held(_: RATLSEvidence) -> Collateral:
        assert collateral is not None
        return collateral

    outcome = _decide(der, policy, now, trust_root, held)
    if outcome.verdict is None or collateral is None:
        return outcome
    nonce = os.urandom(DEFAULT_NONCE_SIZE)
    try:
        presented, quote = await request_fresh_quote(
            reactor,
            args.url,
            certificate=outcome.verdict,
            collateral=collateral,
            trust_root=trust_root,
            clock=now.timestamp,
            nonce=nonce,
            timeout=args.timeout,
        )
        # The connection that carried the nonce decides: a server that
        # rotated since the first handshake is judged on its new
        # certificate, which passed the same verification.
        outcome.verdict = presented
        outcome.evidence = presented.evidence
        outcome.fresh = check_fresh_quote(
            quote,
            nonce=nonce,
            certificate=presented,
            collateral=collateral,
            now=now,
            trust_root=trust_root,
        )
    except (VerificationError, ParseError) as e:
        outcome.error = e
    return outcome


def _print_verdict(
    out: TextIO, verdict: RATLSVerdict | None, evidence: RATLSEvidence | None
) -> None:
    if evidence is not None:
        report = evidence.quote.report
        out.write(f"evidence:      {evidence.kind}\n")
        out.write(f"mrenclave:     {report.mrenclave.hex()}\n")
        out.write(f"mrsigner:      {report.mrsigner.hex()}\n")
        out.write(f"isv_prod_id:   {report.isv_prod_id}\n")
        out.write(f"isv_svn:       {report.isv_svn}\n")
        out.write(f"debug:         {str(report.debug).lower()}\n")
        out.write(
            f"certificate:   sha256:{evidence.certificate.sha256.hex()}\n"
        )
    if verdict is not None:
        q = verdict.quote
        out.write(f"tcb_status:    {q.status.value}\n")
        out.write(f"advisory_ids:  {', '.join(q.advisory_ids) or '-'}\n")
        until = f"{q.collateral_expires:%Y-%m-%dT%H:%M:%SZ}"
        if q.collateral_expired:
            out.write(
                f"collateral:    EXPIRED at {until} (accepted only "
                "because outdated TCB is allowed)\n"
            )
        else:
            out.write(f"collateral:    valid until {until}\n")
        if q.simulated:
            out.write(
                "trust_root:    SIMULATED (not Intel): this is not real "
                "SGX attestation\n"
            )


def _print_fresh(out: TextIO, fresh: FreshVerdict) -> None:
    out.write(f"fresh_quote:   verified for nonce {fresh.nonce.hex()}\n")
    out.write(f"fresh_status:  {fresh.quote.status.value}\n")


def _reasons(error: VerificationError | ParseError) -> list[str]:
    if isinstance(error, PolicyError):
        return [str(m) for m in error.mismatches]
    if isinstance(error, FreshnessError) and error.mismatches:
        return [f"fresh quote: {m}" for m in error.mismatches]
    return [str(error)]


def cmd_verify(
    args: argparse.Namespace, out: TextIO, environ: Mapping[str, str]
) -> int:
    """
    C{attestd verify}.
    """
    if bool(args.url) == bool(args.cert):
        msg = "give exactly one of an https:// URL or --cert FILE"
        raise _UsageError(msg)
    if args.collateral and args.pccs:
        msg = "give only one of --collateral and --pccs"
        raise _UsageError(msg)
    policy = build_policy(args, environ)
    now = (
        _parse_time(args.at)
        if args.at is not None
        else datetime.now(timezone.utc)
    )
    trust_root = None
    if args.trust_root:
        data = _read(args.trust_root, "trust root")
        try:
            trust_root = (
                TrustRoot.from_der(data)
                if data[:1] == b"\x30"
                else TrustRoot.from_pem(data)
            )
        except ParseError as e:
            msg = f"trust root {args.trust_root}: {e}"
            raise _UsageError(msg) from e
    if args.fresh and not args.url:
        msg = "--fresh needs an https:// URL: the server itself quotes"
        raise _UsageError(msg)
    if args.url:
        if not args.url.startswith("https://"):
            msg = "the URL must be https:// (attestd servers are TLS only)"
            raise _UsageError(msg)
        der = _peer_certificate(args.url, args.timeout)
    else:
        try:
            der = certificate_der(_read(args.cert, "certificate"))
        except ParseError as e:
            msg = f"certificate {args.cert}: {e}"
            raise _UsageError(msg) from e
    if args.fresh:
        from attestd._pccsfetch import run_reactor_once

        outcome = run_reactor_once(
            lambda reactor: _decide_fresh(
                reactor,
                args,
                der,
                policy=policy,
                now=now,
                trust_root=trust_root,
            )
        )
    else:
        outcome = _decide(
            der,
            policy,
            now,
            trust_root,
            lambda evidence: _collateral(args, evidence),
        )
    return _report(args, out, outcome)


def _report(args: argparse.Namespace, out: TextIO, outcome: _Outcome) -> int:
    """
    Print the outcome of C{attestd verify}.

    @return: The exit status.
    """
    evidence, verdict, error = outcome.evidence, outcome.verdict, outcome.error
    if error is not None:
        reasons = _reasons(error)
        if args.json:
            json.dump(
                {
                    "accepted": False,
                    "error": type(error).__name__,
                    "reasons": reasons,
                    "evidence": _evidence_dict(evidence),
                },
                out,
                indent=1,
            )
            out.write("\n")
        else:
            out.write("REFUSED\n")
            _print_verdict(out, verdict, evidence)
            for reason in reasons:
                out.write(f"reason:        {reason}\n")
        return EXIT_REFUSED
    assert verdict is not None
    if args.json:
        result = verdict.to_json_dict()
        result["accepted"] = True
        if outcome.fresh is not None:
            result["fresh"] = outcome.fresh.to_json_dict()
        json.dump(result, out, indent=1)
        out.write("\n")
    else:
        out.write("ACCEPTED\n")
        _print_verdict(out, verdict, evidence)
        if outcome.fresh is not None:
            _print_fresh(out, outcome.fresh)
    return EXIT_ACCEPTED


def _evidence_dict(evidence: RATLSEvidence | None) -> dict[str, Any] | None:
    if evidence is None:
        return None
    report = evidence.quote.report
    return {
        "evidence": evidence.kind,
        "mrenclave": report.mrenclave.hex(),
        "mrsigner": report.mrsigner.hex(),
        "isv_prod_id": report.isv_prod_id,
        "isv_svn": report.isv_svn,
        "debug": report.debug,
        "certificate_sha256": evidence.certificate.sha256.hex(),
    }


def _quote_dict(quote: Quote) -> dict[str, Any]:
    report = quote.report
    return {
        "version": quote.header.version,
        "qe_svn": quote.header.qe_svn,
        "pce_svn": quote.header.pce_svn,
        "mrenclave": report.mrenclave.hex(),
        "mrsigner": report.mrsigner.hex(),
        "isv_prod_id": report.isv_prod_id,
        "isv_svn": report.isv_svn,
        "attributes_flags": hex(report.flags),
        "attributes_xfrm": hex(report.xfrm),
        "debug": report.debug,
        "report_data": report.report_data.hex(),
        "certification_data_type": quote.certification_data_type,
    }


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    """
    C{attestd inspect}: certificate, quote or SIGSTRUCT, detected.
    """
    data = _read(args.file, "file")
    result: dict[str, Any]
    if len(data) == SIGSTRUCT_SIZE and data[:16] == bytes.fromhex(
        "06000000e10000000000010000000000"
    ):
        result = {"kind": "sigstruct", **Sigstruct.from_bytes(data).to_dict()}
    elif data[:2] == b"\x03\x00":
        result = {"kind": "quote", **_quote_dict(Quote.from_bytes(data))}
    else:
        try:
            der = certificate_der(data)
        except ParseError as e:
            msg = (
                f"{args.file} is not a certificate, a quote or a SIGSTRUCT "
                f"(.sig): {e}"
            )
            raise _UsageError(msg) from e
        evidence = RATLSEvidence.from_certificate(der)
        try:
            evidence.check_binding()
            binding = "holds"
        except VerificationError as e:
            binding = f"BROKEN: {e}"
        result = {
            "kind": "certificate",
            "evidence": evidence.kind,
            "certificate_sha256": evidence.certificate.sha256.hex(),
            "key_binding": binding,
            "quote": _quote_dict(evidence.quote),
        }
    if args.json:
        json.dump(result, out, indent=1)
        out.write("\n")
    else:
        _print_flat(out, result)
    return 0


def _print_flat(
    out: TextIO, data: Mapping[str, Any], prefix: str = ""
) -> None:
    for key, value in data.items():
        if isinstance(value, Mapping):
            _print_flat(out, value, f"{prefix}{key}.")
        elif isinstance(value, bool):
            out.write(f"{prefix}{key}: {str(value).lower()}\n")
        else:
            out.write(f"{prefix}{key}: {value}\n")


def cmd_measure(args: argparse.Namespace, out: TextIO) -> int:
    """
    C{attestd measure FILE.sig}, like C{gramine-sgx-sigstruct-view}.
    """
    sig = Sigstruct.from_bytes(_read(args.file, "SIGSTRUCT"))
    sig.verify_signature()
    fields = {
        "mr_enclave": sig.mrenclave.hex(),
        "mr_signer": sig.mrsigner.hex(),
        "isv_prod_id": sig.isv_prod_id,
        "isv_svn": sig.isv_svn,
        "debug_enclave": sig.debug,
    }
    if args.json:
        json.dump(fields, out, indent=1)
        out.write("\n")
    else:
        _print_flat(out, fields)
    return 0


def cmd_collateral_fetch(args: argparse.Namespace, out: TextIO) -> int:
    """
    C{attestd collateral fetch}: write an offline bundle.
    """
    from attestd._pccsfetch import fetch_blocking
    from attestd._platform import pck_identity

    if args.for_file:
        data = _read(args.for_file, "certificate or quote")
        quote = (
            Quote.from_bytes(data)
            if data[:2] == b"\x03\x00"
            else RATLSEvidence.from_certificate(certificate_der(data)).quote
        )
        fmspc, ca = pck_identity(quote)
    elif args.fmspc and args.ca:
        fmspc, ca = bytes.fromhex(args.fmspc), args.ca
    else:
        msg = "give --for FILE, or --fmspc HEX with --ca platform|processor"
        raise _UsageError(msg)
    collateral = fetch_blocking(
        args.pccs, fmspc, ca, ca_file=args.pccs_ca, timeout=args.timeout
    )
    text = collateral.to_json()
    if args.output == "-":
        out.write(text + "\n")
    else:
        Path(args.output).write_text(text + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attestd",
        description="Verify RA-TLS servers and inspect SGX enclave artefacts.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    verify = sub.add_parser(
        "verify",
        help="verify an RA-TLS server or certificate",
        description=(
            "Verify an RA-TLS certificate: DCAP quote, collateral, key "
            "binding and measurement policy.  Exit 0: accepted, 1: "
            "refused, 2: usage or I/O error."
        ),
    )
    verify.add_argument("url", nargs="?", help="https://HOST:PORT")
    verify.add_argument("--cert", help="verify a certificate file instead")
    verify.add_argument("--collateral", help="offline collateral bundle")
    verify.add_argument("--pccs", help="PCCS or Intel PCS base URL")
    verify.add_argument("--pccs-ca", help="CA file for the PCCS's TLS")
    verify.add_argument("--trust-root", help="root CA instead of Intel's")
    verify.add_argument("--mrenclave", help="expected MRENCLAVE (hex)")
    verify.add_argument("--mrsigner", help="expected MRSIGNER (hex)")
    verify.add_argument("--isv-prod-id", help="expected ISV_PROD_ID")
    verify.add_argument("--isv-svn", help="minimum ISV_SVN")
    verify.add_argument(
        "--any-enclave",
        action="store_true",
        help="accept any enclave measurement (INSECURE)",
    )
    verify.add_argument(
        "--allow-outdated",
        action="store_true",
        help=(
            "accept OutOfDate TCB levels and expired collateral (INSECURE; "
            "RA_TLS_ALLOW_OUTDATED_TCB_INSECURE=1)"
        ),
    )
    verify.add_argument(
        "--allow-hw-config",
        action="store_true",
        help=(
            "accept TCB levels that need platform configuration "
            "(RA_TLS_ALLOW_HW_CONFIG_NEEDED=1)"
        ),
    )
    verify.add_argument(
        "--allow-sw-hardening",
        action="store_true",
        help=(
            "accept TCB levels that need software hardening "
            "(RA_TLS_ALLOW_SW_HARDENING_NEEDED=1)"
        ),
    )
    verify.add_argument(
        "--allow-debug",
        action="store_true",
        help=(
            "accept debug enclaves (INSECURE; "
            "RA_TLS_ALLOW_DEBUG_ENCLAVE_INSECURE=1)"
        ),
    )
    verify.add_argument("--at", help="verification time (POSIX or ISO)")
    verify.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds for each network exchange (default: 10)",
    )
    verify.add_argument(
        "--json", action="store_true", help="print the verdict as JSON"
    )
    verify.add_argument(
        "--fresh",
        action="store_true",
        help=(
            "then send a random nonce over an attested connection and "
            "check the server's fresh quote (same enclave, the key of that "
            "connection's certificate, this nonce)"
        ),
    )

    inspect = sub.add_parser("inspect", help="show a certificate/quote/.sig")
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true", help="print JSON")

    measure = sub.add_parser("measure", help="measurements of a .sig file")
    measure.add_argument("file")
    measure.add_argument("--json", action="store_true", help="print JSON")

    collateral = sub.add_parser("collateral", help="collateral tools")
    csub = collateral.add_subparsers(dest="collateral_command", required=True)
    fetch = csub.add_parser("fetch", help="fetch collateral into a bundle")
    fetch.add_argument("--pccs", required=True, help="PCCS or PCS base URL")
    fetch.add_argument("--pccs-ca", help="CA file for the PCCS's TLS")
    fetch.add_argument("--for", dest="for_file", help="certificate or quote")
    fetch.add_argument("--fmspc", help="the platform's FMSPC (12 hex digits)")
    fetch.add_argument(
        "--ca",
        choices=["platform", "processor"],
        help="the PCK CA that issued the platform's PCK certificate",
    )
    fetch.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds for each request (default: 30)",
    )
    fetch.add_argument(
        "-o", "--output", default="-", help="bundle file (default: stdout)"
    )

    sub.add_parser("start", help="container start command", add_help=False)
    return parser


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """
    Run the command.

    @param argv: Arguments without the program name (default: C{sys.argv}).
    @param out: Where results go (default: standard output).
    @param environ: The environment (default: C{os.environ}).
    @return: The exit status.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    out = sys.stdout if out is None else out
    environ = os.environ if environ is None else environ
    if args_list[:1] == ["start"]:
        from attestd.start import main as start_main

        return start_main(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _dispatch(args, out, environ)


def _dispatch(
    args: argparse.Namespace, out: TextIO, environ: Mapping[str, str]
) -> int:
    """
    Run the chosen subcommand and turn its errors into exit statuses.
    """
    try:
        if args.command == "verify":
            return cmd_verify(args, out, environ)
        if args.command == "inspect":
            return cmd_inspect(args, out)
        if args.command == "measure":
            return cmd_measure(args, out)
        return cmd_collateral_fetch(args, out)
    except _UsageError as e:
        sys.stderr.write(f"attestd: {e}\n")
        return EXIT_USAGE
    except AttestdError as e:
        # inspect, measure or fetch on bad input, or an I/O failure.
        sys.stderr.write(f"attestd: {e}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (``attestd verify ... | head``): end as a
        # program killed by SIGPIPE would, without a traceback at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13


def _show_warning(  # noqa: PLR0917 (the signature of showwarning)
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """
    Print a Python warning (such as L{attestd.errors.InsecurePolicyWarning}) as one line.
    """
    sys.stderr.write(f"attestd: warning: {message}\n")


def _entry() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    _entry()
