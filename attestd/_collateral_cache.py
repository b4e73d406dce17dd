"""
An on-disk cache of collateral bundles, one per platform (FMSPC) and PCK
CA, each served until the earliest C{nextUpdate} among its pieces.

A cache file holds one bundle in dcap-qvl's C{QuoteCollateralV3} JSON
layout (L{Collateral.to_json}), so a cached bundle is also a valid offline
bundle.  Files are written atomically (a temporary file in the same
directory, then C{os.replace}), so a reader sees either the old bundle or
the new one.  A file that cannot be read, does not parse or belongs to
another platform is ignored, with a log event, and the caller fetches
again; it never makes a lookup fail.

The time is always a parameter: nothing here reads the clock.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.logger import Logger

from attestd._collateral import (
    MAX_BUNDLE_SIZE,
    Collateral,
    CollateralParseError,
)
from attestd._x509util import X509_PARSE_ERRORS

_log = Logger()

#: The PCK CAs that issue PCK certificates, as the PCS API names them.
CA_NAMES = ("platform", "processor")

_FMSPC_SIZE = 6
_INTEL_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def normalize_fmspc(fmspc: bytes | str) -> bytes:
    """
    An FMSPC as its 6 bytes.

    @param fmspc: The FMSPC as 6 bytes or as 12 hex digits (either case).
    @return: The 6 bytes.
    @raise ValueError: If C{fmspc} is neither.
    """
    if isinstance(fmspc, str):
        if len(fmspc) != 2 * _FMSPC_SIZE:
            msg = f"an FMSPC is {2 * _FMSPC_SIZE} hex digits, not {fmspc!r}"
            raise ValueError(msg)
        try:
            return bytes.fromhex(fmspc)
        except ValueError as e:
            msg = f"an FMSPC is {2 * _FMSPC_SIZE} hex digits, not {fmspc!r}"
            raise ValueError(msg) from e
    if not isinstance(fmspc, bytes) or len(fmspc) != _FMSPC_SIZE:
        msg = f"an FMSPC is {_FMSPC_SIZE} bytes, not {fmspc!r}"
        raise ValueError(msg)
    return fmspc


def normalize_ca(ca: str) -> str:
    """
    A PCK CA name as the PCS API spells it.

    @param ca: C{"platform"} or C{"processor"}, in any case.
    @return: The name in lower case.
    @raise ValueError: If C{ca} names neither.
    """
    name = ca.lower() if isinstance(ca, str) else None
    if name not in CA_NAMES:
        msg = f"the PCK CA is 'platform' or 'processor', not {ca!r}"
        raise ValueError(msg)
    return name


def as_utc_datetime(when: datetime | int | float) -> datetime:
    """
    A point in time as an aware UTC datetime.

    @param when: Unix seconds, or an aware datetime.
    @return: The same time in UTC.
    @raise ValueError: If C{when} is a naive datetime.
    """
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            msg = "a datetime used as 'now' must carry a time zone"
            raise ValueError(msg)
        return when.astimezone(timezone.utc)
    return datetime.fromtimestamp(when, tz=timezone.utc)


def _parse_time(value: Any, what: str) -> datetime:
    """
    Parse a timestamp as Intel writes them in TCB Info and QE Identity
    (C{2025-09-14T05:08:18Z}; other ISO 8601 forms with a zone are
    accepted too).
    """
    if not isinstance(value, str):
        msg = f"{what} is missing or not text"
        raise CollateralParseError(msg)
    try:
        return datetime.strptime(value, _INTEL_TIME_FORMAT).replace(
            tzinfo=timezone.utc
        )
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        msg = f"{what} {value!r} is not a timestamp"
        raise CollateralParseError(msg) from e
    if parsed.tzinfo is None:
        msg = f"{what} {value!r} has no time zone"
        raise CollateralParseError(msg)
    return parsed.astimezone(timezone.utc)


def _signed_object(text: str, what: str) -> dict[str, Any]:
    """
    Decode the signed C{tcbInfo} or C{enclaveIdentity} JSON text.
    """
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        msg = f"{what} is not JSON: {e}"
        raise CollateralParseError(msg) from e
    if not isinstance(value, dict):
        msg = f"{what} is not a JSON object"
        raise CollateralParseError(msg)
    return value


def collateral_fmspc(collateral: Collateral) -> bytes:
    """
    The FMSPC a bundle's TCB Info is for.

    @param collateral: The bundle.
    @return: The FMSPC's 6 bytes.
    @raise CollateralParseError: If the TCB Info has no valid C{fmspc}.
    """
    value = _signed_object(collateral.tcb_info, "tcbInfo").get("fmspc")
    try:
        return normalize_fmspc(value if isinstance(value, str) else b"")
    except ValueError as e:
        msg = f"tcbInfo fmspc {value!r} is not 12 hex digits"
        raise CollateralParseError(msg) from e


def _crl_next_update(der: bytes, what: str) -> datetime:
    try:
        crl = x509.load_der_x509_crl(der)
    except X509_PARSE_ERRORS as e:
        msg = f"{what} is not a DER CRL: {e}"
        raise CollateralParseError(msg) from e
    next_update = crl.next_update_utc
    if next_update is None:
        msg = f"{what} has no nextUpdate"
        raise CollateralParseError(msg)
    return next_update


def collateral_next_update(collateral: Collateral) -> datetime:
    """
    When a bundle stops being current: the earliest of the TCB Info's and
    the QE Identity's C{nextUpdate} and the two CRLs' C{nextUpdate}.

    This reads the dates only; it checks no signature.

    @param collateral: The bundle.
    @return: The earliest C{nextUpdate}, in UTC.
    @raise CollateralParseError: If a date is missing or malformed.
    """
    tcb_info = _signed_object(collateral.tcb_info, "tcbInfo")
    qe_identity = _signed_object(collateral.qe_identity, "enclaveIdentity")
    return min(
        _parse_time(tcb_info.get("nextUpdate"), "tcbInfo nextUpdate"),
        _parse_time(
            qe_identity.get("nextUpdate"), "enclaveIdentity nextUpdate"
        ),
        _crl_next_update(collateral.pck_crl, "PCK CRL"),
        _crl_next_update(collateral.root_ca_crl, "root CA CRL"),
    )


class CollateralCache:
    """
    Collateral bundles on disk, keyed by FMSPC and PCK CA.

    @ivar directory: Where the bundles live; created (mode 0700) on the
        first store.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        """
        @param directory: The cache directory.
        """
        self.directory = Path(directory)

    def path_for(self, fmspc: bytes | str, ca: str) -> Path:
        """
        The file that holds the bundle for one platform and CA.

        @param fmspc: The FMSPC (6 bytes or 12 hex digits).
        @param ca: C{"platform"} or C{"processor"}.
        @return: The path, which need not exist.
        @raise ValueError: If C{fmspc} or C{ca} is not valid.
        """
        name = f"{normalize_fmspc(fmspc).hex()}-{normalize_ca(ca)}.json"
        return self.directory / name

    def load(
        self, fmspc: bytes | str, ca: str, *, now: datetime | int | float
    ) -> Collateral | None:
        """
        The cached bundle for a platform, if there is one and it is still
        current at C{now}, i.e. C{now} is before its earliest
        C{nextUpdate}.

        A missing file gives L{None} quietly; an unreadable, malformed or
        mismatched one gives L{None} and a warning.

        @param fmspc: The FMSPC (6 bytes or 12 hex digits).
        @param ca: C{"platform"} or C{"processor"}.
        @param now: The time to judge freshness at: Unix seconds or an
            aware datetime.
        @return: The bundle, or L{None} if it must be fetched.
        @raise ValueError: If C{fmspc}, C{ca} or C{now} is not valid.
        """
        wanted = normalize_fmspc(fmspc)
        at = as_utc_datetime(now)
        path = self.path_for(wanted, ca)
        try:
            with path.open("rb") as f:
                data = f.read(MAX_BUNDLE_SIZE + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            self._ignore(path, f"cannot be read: {e}")
            return None
        try:
            collateral = Collateral.from_json(data)
            found = collateral_fmspc(collateral)
            next_update = collateral_next_update(collateral)
        except CollateralParseError as e:
            self._ignore(path, str(e))
            return None
        if found != wanted:
            self._ignore(path, f"it holds collateral for FMSPC {found.hex()}")
            return None
        if at >= next_update:
            _log.info(
                "Cached collateral {path} is out of date since "
                "{next_update}; fetching it again",
                path=str(path),
                next_update=next_update.isoformat(),
            )
            return None
        return collateral

    def store(
        self, fmspc: bytes | str, ca: str, collateral: Collateral
    ) -> Path:
        """
        Write a bundle for a platform, replacing any earlier one
        atomically.

        @param fmspc: The FMSPC (6 bytes or 12 hex digits).
        @param ca: C{"platform"} or C{"processor"}.
        @param collateral: The bundle.
        @return: The file written.
        @raise OSError: If the directory or the file cannot be written.
        @raise ValueError: If C{fmspc} or C{ca} is not valid.
        """
        path = self.path_for(fmspc, ca)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(
            dir=self.directory, prefix=".collateral-", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(collateral.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def _ignore(self, path: Path, why: str) -> None:
        _log.warn(
            "Ignoring collateral cache file {path}: {why}",
            path=str(path),
            why=why,
        )
