"""
Models of Intel's signed TCB Info (v2 and v3) and QE Identity (v2), and
the selection of their TCB levels.

Both documents come from Intel PCS (or a PCCS) as
C{{"tcbInfo": {...}, "signature": "..."}} and
C{{"enclaveIdentity": {...}, "signature": "..."}}; the signature covers the
exact bytes of the inner object, so the verifier checks it on the served
text before anything here reads it (project reference, 3.3 steps 4 and
5; Intel "PCS API v4", "TCB Info" and "Enclave Identity" models).

Parsing is strict: duplicate keys, non-finite numbers, booleans where
integers belong, wrong hex lengths and unknown status strings all raise
L{CollateralParseError}.  A document of a kind attestd does not verify
(TDX TCB Info, a TD_QE or QVE identity, an unknown version) is
well-formed but refused with L{CollateralMismatchError}.
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Sequence
from typing import Any

from attrs import frozen

from attestd._collateral import CollateralParseError
from attestd.errors import CollateralMismatchError, Mismatch

#: Bound on one TCB Info or QE Identity document; real ones are 1-10 KiB.
MAX_DOCUMENT_SIZE = 1024 * 1024

#: Bound on the number of TCB levels in a document; real ones have 10-20.
MAX_LEVELS = 1024


class TcbStatus(str, enum.Enum):
    """
    The TCB status of a platform or a Quoting Enclave, as Intel names it.
    """

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    REVOKED = "Revoked"

    def __str__(self) -> str:
        return self.value


#: The only statuses a QE Identity level may carry.
QE_STATUSES = frozenset(
    {TcbStatus.UP_TO_DATE, TcbStatus.OUT_OF_DATE, TcbStatus.REVOKED}
)


@frozen
class TCBLevel:
    """
    One level of a TCB Info.

    @ivar components: The 16 SGX TCB component SVNs of the level.
    @ivar pce_svn: The level's PCESVN.
    @ivar tcb_date: The level's C{tcbDate}, as served.
    @ivar status: The status of a platform at this level.
    @ivar advisory_ids: Intel security advisories that apply.
    """

    components: tuple[int, ...]
    pce_svn: int
    tcb_date: str
    status: TcbStatus
    advisory_ids: tuple[str, ...]

    def matches(self, components: Sequence[int], pce_svn: int) -> bool:
        """
        Whether a platform with these SVNs is at or above this level.

        @param components: The PCK certificate's 16 component SVNs.
        @param pce_svn: The PCK certificate's PCESVN.
        @return: C{True} when every component SVN and the PCESVN are at
            least the level's.
        """
        return pce_svn >= self.pce_svn and all(
            have >= need
            for have, need in zip(components, self.components, strict=True)
        )


@frozen
class TCBInfo:
    """
    A TCB Info document (version 2 or 3, SGX).

    @ivar version: 2 or 3.
    @ivar id: C{"SGX"} for version 3; C{None} for version 2, which has no
        id.
    @ivar issue_date: When Intel issued it.
    @ivar next_update: When the next one is due; past it, this one has
        expired.
    @ivar fmspc: The 6-byte FMSPC it is for.
    @ivar pce_id: The 2-byte PCE-ID it is for.
    @ivar tcb_type: The C{tcbType} (0).
    @ivar tcb_evaluation_data_number: The TCB recovery counter.
    @ivar levels: The TCB levels, in the served order (newest first).
    """

    version: int
    id: str | None
    issue_date: datetime.datetime
    next_update: datetime.datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    levels: tuple[TCBLevel, ...]

    @classmethod
    def from_json(cls, text: str | bytes) -> TCBInfo:
        """
        Parse the C{tcbInfo} object.

        @param text: The exact signed JSON text of the C{tcbInfo} object.
        @return: The model.
        @raise CollateralParseError: If it is malformed.
        @raise CollateralMismatchError: If it is not SGX TCB Info v2 or
            v3.
        """
        data = _load_object(text, "tcb_info")
        version = _int(data, "version", "tcb_info")
        tcb_id = data.get("id")
        if version == 3:
            if tcb_id != "SGX":
                raise CollateralMismatchError(
                    [Mismatch("tcb_info.id", "SGX", repr(tcb_id))]
                )
        elif version == 2:
            if "id" in data:
                msg = "tcb_info version 2 has an id field"
                raise CollateralParseError(msg)
        else:
            raise CollateralMismatchError(
                [Mismatch("tcb_info.version", "2 or 3", str(version))]
            )
        raw_levels = _list(data, "tcbLevels", "tcb_info")
        if not raw_levels:
            msg = "tcb_info has no TCB level"
            raise CollateralParseError(msg)
        levels = tuple(
            _tcb_level(item, version, f"tcb_info.tcbLevels[{n}]")
            for n, item in enumerate(raw_levels)
        )
        return cls(
            version=version,
            id=tcb_id,
            issue_date=_date(data, "issueDate", "tcb_info"),
            next_update=_date(data, "nextUpdate", "tcb_info"),
            fmspc=_hex(data, "fmspc", 6, "tcb_info"),
            pce_id=_hex(data, "pceId", 2, "tcb_info"),
            tcb_type=_int(data, "tcbType", "tcb_info"),
            tcb_evaluation_data_number=_int(
                data, "tcbEvaluationDataNumber", "tcb_info"
            ),
            levels=levels,
        )

    def select_level(
        self, components: Sequence[int], pce_svn: int
    ) -> TCBLevel | None:
        """
        The platform's TCB level: the first level, in the served order,
        that the platform is at or above (project reference, 3.3 step 4).

        @param components: The PCK certificate's 16 component SVNs.
        @param pce_svn: The PCK certificate's PCESVN.
        @return: The level, or C{None} when the platform is below all.
        """
        for level in self.levels:
            if level.matches(components, pce_svn):
                return level
        return None


@frozen
class QELevel:
    """
    One TCB level of a QE Identity.

    @ivar isv_svn: The Quoting Enclave ISVSVN of the level.
    @ivar tcb_date: The level's C{tcbDate}, as served.
    @ivar status: UpToDate, OutOfDate or Revoked.
    @ivar advisory_ids: Intel security advisories that apply.
    """

    isv_svn: int
    tcb_date: str
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@frozen
class QEIdentity:
    """
    A QE Identity document (C{enclaveIdentity}, id C{QE}, version 2).

    @ivar id: C{"QE"}.
    @ivar version: 2.
    @ivar issue_date: When Intel issued it.
    @ivar next_update: When the next one is due.
    @ivar tcb_evaluation_data_number: The TCB recovery counter.
    @ivar miscselect: Expected MISCSELECT bits, under L{miscselect_mask}.
        The served hex is the four bytes as they sit in the report, so
        they are read little-endian, like the report's field.
    @ivar miscselect_mask: Which MISCSELECT bits are compared.
    @ivar attributes: Expected 16 ATTRIBUTES bytes, under
        L{attributes_mask}.
    @ivar attributes_mask: Which ATTRIBUTES bits are compared.
    @ivar mrsigner: The Quoting Enclave's MRSIGNER.
    @ivar isv_prod_id: The Quoting Enclave's ISVPRODID.
    @ivar levels: The TCB levels, in the served order (newest first).
    """

    id: str
    version: int
    issue_date: datetime.datetime
    next_update: datetime.datetime
    tcb_evaluation_data_number: int
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isv_prod_id: int
    levels: tuple[QELevel, ...]

    @classmethod
    def from_json(cls, text: str | bytes) -> QEIdentity:
        """
        Parse the C{enclaveIdentity} object.

        @param text: The exact signed JSON text of the object.
        @return: The model.
        @raise CollateralParseError: If it is malformed.
        @raise CollateralMismatchError: If it is not a version 2 identity
            of Intel's SGX Quoting Enclave.
        """
        data = _load_object(text, "qe_identity")
        identity_id = data.get("id")
        version = _int(data, "version", "qe_identity")
        mismatches = []
        if identity_id != "QE":
            mismatches.append(
                Mismatch("qe_identity.id", "QE", repr(identity_id))
            )
        if version != 2:
            mismatches.append(
                Mismatch("qe_identity.version", "2", str(version))
            )
        if mismatches:
            raise CollateralMismatchError(mismatches)
        raw_levels = _list(data, "tcbLevels", "qe_identity")
        if not raw_levels:
            msg = "qe_identity has no TCB level"
            raise CollateralParseError(msg)
        levels = tuple(
            _qe_level(item, f"qe_identity.tcbLevels[{n}]")
            for n, item in enumerate(raw_levels)
        )
        return cls(
            id="QE",
            version=version,
            issue_date=_date(data, "issueDate", "qe_identity"),
            next_update=_date(data, "nextUpdate", "qe_identity"),
            tcb_evaluation_data_number=_int(
                data, "tcbEvaluationDataNumber", "qe_identity"
            ),
            miscselect=int.from_bytes(
                _hex(data, "miscselect", 4, "qe_identity"), "little"
            ),
            miscselect_mask=int.from_bytes(
                _hex(data, "miscselectMask", 4, "qe_identity"), "little"
            ),
            attributes=_hex(data, "attributes", 16, "qe_identity"),
            attributes_mask=_hex(data, "attributesMask", 16, "qe_identity"),
            mrsigner=_hex(data, "mrsigner", 32, "qe_identity"),
            isv_prod_id=_u16(data, "isvprodid", "qe_identity"),
            levels=levels,
        )

    def select_level(self, isv_svn: int) -> QELevel | None:
        """
        The Quoting Enclave's level: the first level, in the served
        order, whose ISVSVN is at or below the enclave's (project
        reference, 3.3 step 5).

        @param isv_svn: The QE report's ISVSVN.
        @return: The level, or C{None} when the QE is below all.
        """
        for level in self.levels:
            if isv_svn >= level.isv_svn:
                return level
        return None


def _reject_constant(name: str) -> Any:
    """
    Refuse C{NaN} and C{Infinity}, which are not JSON.

    @raise CollateralParseError: Always.
    """
    msg = f"non-finite number {name} in collateral JSON"
    raise CollateralParseError(msg)


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """
    Build a JSON object, refusing repeated keys (whose meaning differs
    between parsers, while the signature covers them all).

    @raise CollateralParseError: If a key repeats.
    """
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            msg = f"repeated key {key!r} in collateral JSON"
            raise CollateralParseError(msg)
        out[key] = value
    return out


def _load_object(text: str | bytes, what: str) -> dict[str, Any]:
    """
    Decode a bounded JSON object strictly.

    @raise CollateralParseError: If it is not one.
    """
    if len(text) > MAX_DOCUMENT_SIZE:
        msg = f"{what} is larger than {MAX_DOCUMENT_SIZE} bytes"
        raise CollateralParseError(msg)
    try:
        data = json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_constant=_reject_constant,
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        if isinstance(e, CollateralParseError):
            raise
        msg = f"{what} is not JSON: {e}"
        raise CollateralParseError(msg) from e
    if not isinstance(data, dict):
        msg = f"{what} is not a JSON object"
        raise CollateralParseError(msg)
    return data


def _field(data: dict[str, Any], key: str, what: str) -> Any:
    """
    A mandatory field.

    @raise CollateralParseError: If it is absent.
    """
    if key not in data:
        msg = f"{what} lacks {key!r}"
        raise CollateralParseError(msg)
    return data[key]


def _int(data: dict[str, Any], key: str, what: str) -> int:
    """
    A mandatory non-negative integer (not a boolean).

    @raise CollateralParseError: If it is not one.
    """
    value = _field(data, key, what)
    if type(value) is not int or value < 0 or value > 0xFFFFFFFF:
        msg = f"{what}.{key} is not a non-negative 32-bit integer"
        raise CollateralParseError(msg)
    return value


def _u16(data: dict[str, Any], key: str, what: str) -> int:
    """
    A mandatory integer in C{[0, 65535]}.

    @raise CollateralParseError: If it is not one.
    """
    value = _int(data, key, what)
    if value > 0xFFFF:
        msg = f"{what}.{key} is {value}, more than 65535"
        raise CollateralParseError(msg)
    return value


def _str(data: dict[str, Any], key: str, what: str) -> str:
    """
    A mandatory string.

    @raise CollateralParseError: If it is not one.
    """
    value = _field(data, key, what)
    if not isinstance(value, str):
        msg = f"{what}.{key} is not a string"
        raise CollateralParseError(msg)
    return value


def _list(data: dict[str, Any], key: str, what: str) -> list[Any]:
    """
    A mandatory, bounded list.

    @raise CollateralParseError: If it is not one.
    """
    value = _field(data, key, what)
    if not isinstance(value, list):
        msg = f"{what}.{key} is not a list"
        raise CollateralParseError(msg)
    if len(value) > MAX_LEVELS:
        msg = f"{what}.{key} has more than {MAX_LEVELS} entries"
        raise CollateralParseError(msg)
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    """
    A JSON object.

    @raise CollateralParseError: If it is not one.
    """
    if not isinstance(value, dict):
        msg = f"{what} is not an object"
        raise CollateralParseError(msg)
    return value


def _hex(data: dict[str, Any], key: str, size: int, what: str) -> bytes:
    """
    A mandatory hex string of exactly C{size} bytes.

    @raise CollateralParseError: If it is not one.
    """
    value = _str(data, key, what)
    if len(value) != 2 * size:
        msg = f"{what}.{key} is not {size} bytes of hex"
        raise CollateralParseError(msg)
    try:
        return bytes.fromhex(value)
    except ValueError as e:
        msg = f"{what}.{key} is not hex"
        raise CollateralParseError(msg) from e


def parse_date(value: object, what: str) -> datetime.datetime:
    """
    Read an ISO 8601 UTC timestamp as Intel serves them
    (C{2025-06-19T10:56:11Z}).

    @param value: The decoded JSON value.
    @param what: Its name, for messages.
    @return: An aware datetime in UTC.
    @raise CollateralParseError: If it is not a UTC timestamp.
    """
    if not isinstance(value, str) or not value.endswith("Z"):
        msg = f"{what} is not a UTC timestamp ending in Z"
        raise CollateralParseError(msg)
    try:
        parsed = datetime.datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError as e:
        msg = f"{what} is not an ISO 8601 timestamp: {value!r}"
        raise CollateralParseError(msg) from e
    return parsed.astimezone(datetime.timezone.utc)


def _date(data: dict[str, Any], key: str, what: str) -> datetime.datetime:
    """
    A mandatory timestamp field.

    @raise CollateralParseError: If it is not one.
    """
    return parse_date(_field(data, key, what), f"{what}.{key}")


def _served_date(data: dict[str, Any], key: str, what: str) -> str:
    """
    A mandatory timestamp field, checked and kept as served.

    @raise CollateralParseError: If it is not a timestamp.
    """
    value = _str(data, key, what)
    parse_date(value, f"{what}.{key}")
    return value


def _status(value: Any, what: str) -> TcbStatus:
    """
    A TCB status string.

    @raise CollateralParseError: If Intel defines no such status.
    """
    try:
        return TcbStatus(value)
    except ValueError as e:
        msg = f"{what} is not a known TCB status: {value!r}"
        raise CollateralParseError(msg) from e


def _advisories(data: dict[str, Any], what: str) -> tuple[str, ...]:
    """
    The optional C{advisoryIDs} list of a level.

    @raise CollateralParseError: If it is not a list of strings.
    """
    value = data.get("advisoryIDs", [])
    if not isinstance(value, list) or not all(
        isinstance(item, str) for item in value
    ):
        msg = f"{what}.advisoryIDs is not a list of strings"
        raise CollateralParseError(msg)
    if len(value) > MAX_LEVELS:
        msg = f"{what}.advisoryIDs has more than {MAX_LEVELS} entries"
        raise CollateralParseError(msg)
    return tuple(value)


def _tcb_level(item: Any, version: int, what: str) -> TCBLevel:
    """
    One TCB Info level, in the layout of C{version}: v2 has flat
    C{sgxtcbcompNNsvn} fields, v3 a C{sgxtcbcomponents} list.

    @raise CollateralParseError: If it is malformed.
    """
    level = _object(item, what)
    tcb = _object(_field(level, "tcb", what), f"{what}.tcb")
    if version == 3:
        raw = _list(tcb, "sgxtcbcomponents", f"{what}.tcb")
        if len(raw) != 16:
            msg = f"{what}.tcb.sgxtcbcomponents has {len(raw)} entries, not 16"
            raise CollateralParseError(msg)
        components = tuple(
            _int(_object(c, f"{what}.tcb.sgxtcbcomponents[{n}]"), "svn", what)
            for n, c in enumerate(raw)
        )
    else:
        components = tuple(
            _int(tcb, f"sgxtcbcomp{n:02d}svn", f"{what}.tcb")
            for n in range(1, 17)
        )
    if any(c > 255 for c in components):
        msg = f"{what} has a component SVN above 255"
        raise CollateralParseError(msg)
    return TCBLevel(
        components=components,
        pce_svn=_u16(tcb, "pcesvn", f"{what}.tcb"),
        tcb_date=_served_date(level, "tcbDate", what),
        status=_status(_field(level, "tcbStatus", what), f"{what}.tcbStatus"),
        advisory_ids=_advisories(level, what),
    )


def _qe_level(item: Any, what: str) -> QELevel:
    """
    One QE Identity level.

    @raise CollateralParseError: If it is malformed or carries a status
        QE levels do not use.
    """
    level = _object(item, what)
    tcb = _object(_field(level, "tcb", what), f"{what}.tcb")
    status = _status(_field(level, "tcbStatus", what), f"{what}.tcbStatus")
    if status not in QE_STATUSES:
        msg = f"{what}.tcbStatus {status.value} is not a QE status"
        raise CollateralParseError(msg)
    return QELevel(
        isv_svn=_u16(tcb, "isvsvn", f"{what}.tcb"),
        tcb_date=_served_date(level, "tcbDate", what),
        status=status,
        advisory_ids=_advisories(level, what),
    )
