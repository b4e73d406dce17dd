"""
The measurement and TCB policy an RA-TLS verifier applies to a verified
quote.

A L{Policy} says which enclave a client is willing to talk to (MRENCLAVE,
MRSIGNER, ISVPRODID, a minimum ISVSVN) and which platform weaknesses it
tolerates.  Its knobs and their semantics are those of Gramine's
C{ra_tls_verify_common.c} and C{ra_tls_verify_dcap.c} (project reference,
section 1.5): the same C{RA_TLS_*} environment variables, the same
"C{any}" wildcard, the same TCB status acceptance table and the same
enclave attribute checks.  Expired collateral is accepted only when
outdated TCBs are, as in Gramine.  Stricter than Gramine: a policy that
accepts any enclave (no MRENCLAVE and no MRSIGNER) needs an explicit
C{accept_any_enclave=True} in Python, and building one is logged as a
warning (event C{policy_accepts_any_enclave}) however it was asked for;
a status outside Intel's seven is refused.

L{Policy.check} never stops at the first problem: it collects every
L{Mismatch} and raises one L{PolicyError}.
"""

from __future__ import annotations

import hmac
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from attrs import frozen

from attestd._quote import (
    FLAG_EINITTOKEN_KEY,
    FLAG_INIT,
    FLAG_MODE64BIT,
    FLAG_PROVISION_KEY,
    ReportBody,
)
from attestd.errors import (
    ConfigurationError,
    InsecurePolicyWarning,
    Mismatch,
    PolicyError,
)

ENV_MRENCLAVE = "RA_TLS_MRENCLAVE"
ENV_MRSIGNER = "RA_TLS_MRSIGNER"
ENV_ISV_PROD_ID = "RA_TLS_ISV_PROD_ID"
ENV_ISV_SVN = "RA_TLS_ISV_SVN"
ENV_ALLOW_OUTDATED_TCB = "RA_TLS_ALLOW_OUTDATED_TCB_INSECURE"
ENV_ALLOW_HW_CONFIG = "RA_TLS_ALLOW_HW_CONFIG_NEEDED"
ENV_ALLOW_SW_HARDENING = "RA_TLS_ALLOW_SW_HARDENING_NEEDED"
ENV_ALLOW_DEBUG = "RA_TLS_ALLOW_DEBUG_ENCLAVE_INSECURE"

#: The value of a measurement variable that skips its check.
ANY = "any"

MEASUREMENT_SIZE = 32
U16_MAX = 0xFFFF

_HEX_MEASUREMENT = re.compile(r"[0-9a-fA-F]{64}")
_DECIMAL = re.compile(r"[0-9]{1,10}")

_ALLOW_OUTDATED = "allow_outdated_tcb_insecure"
_ALLOW_HW_CONFIG = "allow_hw_config_needed"
_ALLOW_SW_HARDENING = "allow_sw_hardening_needed"

#: For each TCB status, the policy switches that must all be on for it to
#: be accepted; C{None} when it is never accepted.  Gramine maps the QVL
#: results the same way (reference 1.5).
TCB_STATUS_REQUIREMENTS: Mapping[str, tuple[str, ...] | None] = {
    "UpToDate": (),
    "SWHardeningNeeded": (_ALLOW_SW_HARDENING,),
    "ConfigurationNeeded": (_ALLOW_HW_CONFIG,),
    "ConfigurationAndSWHardeningNeeded": (
        _ALLOW_HW_CONFIG,
        _ALLOW_SW_HARDENING,
    ),
    "OutOfDate": (_ALLOW_OUTDATED,),
    "OutOfDateConfigurationNeeded": (_ALLOW_OUTDATED, _ALLOW_HW_CONFIG),
    "Revoked": None,
}

#: Attribute flags an enclave must have set, and must have clear, as
#: C{verify_quote_body_enclave_attributes} checks them.
_REQUIRED_FLAGS = ((FLAG_INIT, "INIT"), (FLAG_MODE64BIT, "MODE64BIT"))
_FORBIDDEN_FLAGS = (
    (FLAG_PROVISION_KEY, "PROVISION_KEY"),
    (FLAG_EINITTOKEN_KEY, "EINITTOKEN_KEY"),
)


class _QuoteLike(Protocol):
    """
    What the policy reads of a parsed quote.
    """

    @property
    def report(self) -> ReportBody: ...


class VerdictLike(Protocol):
    """
    What the policy reads of a verification result: the attributes of
    C{attestd._dcap.QuoteVerdict} it uses.
    """

    @property
    def quote(self) -> _QuoteLike: ...

    @property
    def status(self) -> str: ...

    @property
    def advisory_ids(self) -> Sequence[str]: ...

    @property
    def collateral_expired(self) -> bool: ...


def _check_measurement(value: bytes | None, name: str) -> None:
    if value is not None and (
        not isinstance(value, bytes) or len(value) != MEASUREMENT_SIZE
    ):
        msg = f"{name} must be {MEASUREMENT_SIZE} bytes or None"
        raise ConfigurationError(msg)


def _check_u16(value: int | None, name: str) -> None:
    if value is not None and (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 0 <= value <= U16_MAX
    ):
        msg = f"{name} must be an integer in [0, {U16_MAX}] or None"
        raise ConfigurationError(msg)


def _status_name(status: object) -> str:
    """
    The status string of a L{TcbStatus} member, or of a plain string.
    """
    value = getattr(status, "value", status)
    return value if isinstance(value, str) else repr(status)


@frozen
class Policy:
    """
    Which enclaves, on which platforms, a verifier accepts.

    @ivar mrenclave: The 32-byte MRENCLAVE required, or C{None} for any.
    @ivar mrsigner: The 32-byte MRSIGNER required, or C{None} for any.
    @ivar isv_prod_id: The ISVPRODID required, or C{None} for any.
    @ivar isv_svn: The minimum ISVSVN, or C{None} for any.
    @ivar allow_outdated_tcb_insecure: Accept the C{OutOfDate} TCB status
        (and, with L{allow_hw_config_needed},
        C{OutOfDateConfigurationNeeded}) and expired collateral.
    @ivar allow_hw_config_needed: Accept C{ConfigurationNeeded} (and, with
        L{allow_sw_hardening_needed}, C{ConfigurationAndSWHardeningNeeded}).
    @ivar allow_sw_hardening_needed: Accept C{SWHardeningNeeded}.
    @ivar allow_debug_enclave_insecure: Accept debug enclaves, whose memory
        the host can read.
    @ivar accept_any_enclave: The explicit word needed to build a policy
        that checks neither MRENCLAVE nor MRSIGNER.
    @raise ConfigurationError: On construction, if a value is out of range
        or if neither measurement is given without L{accept_any_enclave}.
    """

    mrenclave: bytes | None
    mrsigner: bytes | None
    isv_prod_id: int | None
    isv_svn: int | None
    allow_outdated_tcb_insecure: bool = False
    allow_hw_config_needed: bool = False
    allow_sw_hardening_needed: bool = False
    allow_debug_enclave_insecure: bool = False
    accept_any_enclave: bool = False

    def __attrs_post_init__(self) -> None:
        _check_measurement(self.mrenclave, "mrenclave")
        _check_measurement(self.mrsigner, "mrsigner")
        _check_u16(self.isv_prod_id, "isv_prod_id")
        _check_u16(self.isv_svn, "isv_svn")
        if self.accepts_any_enclave:
            if not self.accept_any_enclave:
                msg = (
                    "a policy with neither mrenclave nor mrsigner accepts "
                    "any enclave; pass accept_any_enclave=True to mean it"
                )
                raise ConfigurationError(msg)
            # A Python warning keeps this module free of Twisted; twistd
            # and trial route warnings into the twisted.logger stream.
            warnings.warn(
                "RA-TLS policy accepts any enclave: neither MRENCLAVE nor "
                "MRSIGNER is checked",
                InsecurePolicyWarning,
                stacklevel=3,
            )

    @property
    def accepts_any_enclave(self) -> bool:
        """
        Whether neither MRENCLAVE nor MRSIGNER is checked.
        """
        return self.mrenclave is None and self.mrsigner is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Policy:
        """
        Build a policy from Gramine's C{RA_TLS_*} variables.

        C{RA_TLS_MRENCLAVE} and C{RA_TLS_MRSIGNER} (64 hex digits),
        C{RA_TLS_ISV_PROD_ID} and C{RA_TLS_ISV_SVN} (decimal) must all be
        set; the value C{any} skips that check, and C{any} for both
        measurements accepts any enclave (with a warning).  Each
        C{RA_TLS_ALLOW_*} switch is on only when it is exactly C{"1"}.

        @param environ: The environment, e.g. C{os.environ}.
        @return: The policy.
        @raise ConfigurationError: Naming the variable that is missing or
            malformed.
        """
        mrenclave = _env_measurement(environ, ENV_MRENCLAVE)
        mrsigner = _env_measurement(environ, ENV_MRSIGNER)
        isv_prod_id = _env_u16(environ, ENV_ISV_PROD_ID)
        isv_svn = _env_u16(environ, ENV_ISV_SVN)
        return cls(
            mrenclave=mrenclave,
            mrsigner=mrsigner,
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            allow_outdated_tcb_insecure=_env_flag(
                environ, ENV_ALLOW_OUTDATED_TCB
            ),
            allow_hw_config_needed=_env_flag(environ, ENV_ALLOW_HW_CONFIG),
            allow_sw_hardening_needed=_env_flag(
                environ, ENV_ALLOW_SW_HARDENING
            ),
            allow_debug_enclave_insecure=_env_flag(environ, ENV_ALLOW_DEBUG),
            accept_any_enclave=mrenclave is None and mrsigner is None,
        )

    def to_env(self) -> dict[str, str]:
        """
        The C{RA_TLS_*} variables that L{from_env} reads back as this
        policy.

        @return: The variables.
        """

        def text(value: bytes | int | None) -> str:
            if value is None:
                return ANY
            return value.hex() if isinstance(value, bytes) else str(value)

        env = {
            ENV_MRENCLAVE: text(self.mrenclave),
            ENV_MRSIGNER: text(self.mrsigner),
            ENV_ISV_PROD_ID: text(self.isv_prod_id),
            ENV_ISV_SVN: text(self.isv_svn),
        }
        for name, on in (
            (ENV_ALLOW_OUTDATED_TCB, self.allow_outdated_tcb_insecure),
            (ENV_ALLOW_HW_CONFIG, self.allow_hw_config_needed),
            (ENV_ALLOW_SW_HARDENING, self.allow_sw_hardening_needed),
            (ENV_ALLOW_DEBUG, self.allow_debug_enclave_insecure),
        ):
            if on:
                env[name] = "1"
        return env

    def to_json_dict(self) -> dict[str, Any]:
        """
        The policy as JSON-ready data, for verdicts and logs.

        @return: Measurements as hex (C{None} for any) and the switches.
        """
        return {
            "mrenclave": None
            if self.mrenclave is None
            else self.mrenclave.hex(),
            "mrsigner": None if self.mrsigner is None else self.mrsigner.hex(),
            "isv_prod_id": self.isv_prod_id,
            "isv_svn_min": self.isv_svn,
            "allow_outdated_tcb_insecure": self.allow_outdated_tcb_insecure,
            "allow_hw_config_needed": self.allow_hw_config_needed,
            "allow_sw_hardening_needed": self.allow_sw_hardening_needed,
            "allow_debug_enclave_insecure": (
                self.allow_debug_enclave_insecure
            ),
            "accept_any_enclave": self.accepts_any_enclave,
        }

    def allows_tcb_status(self, status: object) -> bool:
        """
        Whether this policy accepts a TCB status.

        @param status: A C{TcbStatus} or its string value.
        @return: C{True} if accepted; unknown statuses never are.
        """
        needed = TCB_STATUS_REQUIREMENTS.get(_status_name(status))
        return needed is not None and all(getattr(self, n) for n in needed)

    def mismatches(self, verdict: VerdictLike) -> tuple[Mismatch, ...]:
        """
        Everything about a verified quote that this policy refuses.

        The order is: MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN, debug,
        attributes, TCB status, collateral expiry.

        @param verdict: A C{QuoteVerdict}, or anything with its C{quote},
            C{status}, C{advisory_ids} and C{collateral_expired}.
        @return: The mismatches; empty when the verdict is acceptable.
        """
        report = verdict.quote.report
        found: list[Mismatch] = []
        for name, want, have in (
            ("mrenclave", self.mrenclave, report.mrenclave),
            ("mrsigner", self.mrsigner, report.mrsigner),
        ):
            if want is not None and not hmac.compare_digest(want, have):
                found.append(Mismatch(name, want.hex(), have.hex()))
        if (
            self.isv_prod_id is not None
            and report.isv_prod_id != self.isv_prod_id
        ):
            found.append(
                Mismatch(
                    "isv_prod_id",
                    str(self.isv_prod_id),
                    str(report.isv_prod_id),
                )
            )
        if self.isv_svn is not None and report.isv_svn < self.isv_svn:
            found.append(
                Mismatch("isv_svn", f">= {self.isv_svn}", str(report.isv_svn))
            )
        if report.debug and not self.allow_debug_enclave_insecure:
            found.append(
                Mismatch(
                    "debug",
                    "a production enclave (or allow_debug_enclave_insecure)",
                    "a debug enclave",
                )
            )
        found.extend(_attribute_mismatches(report.flags))
        # XXX: KSS fields (ISVEXTPRODID, CONFIGID, CONFIGSVN, ISVFAMILYID) are not checked, as in Gramine, so a KSS enclave's configuration is not pinned.
        status = _status_name(verdict.status)
        if not self.allows_tcb_status(status):
            found.append(
                Mismatch(
                    "tcb_status",
                    self._expected_status(status),
                    _status_text(status, verdict.advisory_ids),
                )
            )
        if verdict.collateral_expired and not self.allow_outdated_tcb_insecure:
            expires = getattr(verdict, "collateral_expires", None)
            found.append(
                Mismatch(
                    "collateral_expired",
                    f"current collateral (or {_ALLOW_OUTDATED})",
                    "collateral expired"
                    + (
                        "" if expires is None else f" at {expires.isoformat()}"
                    ),
                )
            )
        return tuple(found)

    def check(self, verdict: VerdictLike) -> None:
        """
        Refuse a verified quote that does not satisfy this policy.

        @param verdict: See L{mismatches}.
        @raise PolicyError: Listing every mismatch found.
        """
        found = self.mismatches(verdict)
        if found:
            raise PolicyError(found)

    def _expected_status(self, status: str) -> str:
        needed = TCB_STATUS_REQUIREMENTS.get(status)
        if needed is None:
            return "UpToDate, or a status the policy can allow"
        missing = [n for n in needed if not getattr(self, n)]
        return f"UpToDate, or {status} with {' and '.join(missing)}"


def _status_text(status: str, advisory_ids: Sequence[str]) -> str:
    if not advisory_ids:
        return f"{status} (no advisories)"
    return f"{status} (advisories: {', '.join(advisory_ids)})"


def _attribute_mismatches(flags: int) -> list[Mismatch]:
    found = [
        Mismatch("attributes", f"{name} set", f"{name} clear")
        for bit, name in _REQUIRED_FLAGS
        if not flags & bit
    ]
    found.extend(
        Mismatch("attributes", f"{name} clear", f"{name} set")
        for bit, name in _FORBIDDEN_FLAGS
        if flags & bit
    )
    return found


def _env_required(environ: Mapping[str, str], name: str) -> str | None:
    """
    The value of a measurement variable, C{None} for C{any}.
    """
    value = environ.get(name)
    if value is None:
        msg = (
            f"{name} is not set; set it to the expected value or to "
            f"'{ANY}' to skip the check"
        )
        raise ConfigurationError(msg)
    return None if value == ANY else value


def _env_measurement(environ: Mapping[str, str], name: str) -> bytes | None:
    value = _env_required(environ, name)
    if value is None:
        return None
    if not _HEX_MEASUREMENT.fullmatch(value):
        msg = (
            f"{name} must be {2 * MEASUREMENT_SIZE} hex digits or "
            f"'{ANY}', got {value!r:.80}"
        )
        raise ConfigurationError(msg)
    return bytes.fromhex(value)


def _env_u16(environ: Mapping[str, str], name: str) -> int | None:
    value = _env_required(environ, name)
    if value is None:
        return None
    if not _DECIMAL.fullmatch(value) or int(value) > U16_MAX:
        msg = (
            f"{name} must be a decimal number in [0, {U16_MAX}] or "
            f"'{ANY}', got {value!r:.80}"
        )
        raise ConfigurationError(msg)
    return int(value)


def _env_flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name) == "1"
