"""
Tests for the RA-TLS measurement and TCB policy, on verification results
built by hand around the real quotes of the test vectors.
"""

from __future__ import annotations

import datetime
import enum
import hmac
import itertools
import struct
import warnings
from collections.abc import Callable, Sequence

import pytest
from attrs import frozen

from attestd import _policy
from attestd._policy import Policy
from attestd._quote import Quote
from attestd.errors import (
    ConfigurationError,
    InsecurePolicyWarning,
    Mismatch,
    PolicyError,
    VerificationError,
)

from ._vectors import CCC_DICE_QUOTE, KONVERA_QUOTE, expected

KONVERA = expected()["konvera_gramine_legacy_cert"]["source_asserts"]
KONVERA_MRENCLAVE = bytes.fromhex(KONVERA["mrenclave"])
KONVERA_MRSIGNER = bytes.fromhex(KONVERA["mrsigner"])
CCC = expected()["ccc_gramine_dualoid_cert"]["computed"]
SIX_ADVISORIES = tuple(
    expected()["automata_0825_bundle"]["vectors"][
        "gramine-ratls-certs/konvera_gramine_legacy_quote.bin"
    ]["computed_advisory_ids"]
)

ALL_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)

#: Gramine's acceptance rule for each status, given the switches
#: (outdated, hw_config, sw_hardening); reference section 1.5.
GRAMINE_ACCEPTS: dict[str, Callable[[bool, bool, bool], bool]] = {
    "UpToDate": lambda outdated, hw, sw: True,
    "SWHardeningNeeded": lambda outdated, hw, sw: sw,
    "ConfigurationNeeded": lambda outdated, hw, sw: hw,
    "ConfigurationAndSWHardeningNeeded": lambda outdated, hw, sw: hw and sw,
    "OutOfDate": lambda outdated, hw, sw: outdated,
    "OutOfDateConfigurationNeeded": lambda outdated, hw, sw: outdated and hw,
    "Revoked": lambda outdated, hw, sw: False,
}


class StrStatus(str, enum.Enum):
    """
    A string enum like C{attestd._dcap.TcbStatus}.
    """

    OUT_OF_DATE = "OutOfDate"
    UP_TO_DATE = "UpToDate"


@frozen
class HandVerdict:
    """
    The parts of a C{QuoteVerdict} the policy reads.
    """

    quote: Quote
    status: str
    advisory_ids: tuple[str, ...] = ()
    collateral_expired: bool = False
    collateral_expires: datetime.datetime = datetime.datetime(
        2025, 9, 14, 4, 36, 46, tzinfo=datetime.timezone.utc
    )


def quote_with(
    source: bytes | None = None,
    *,
    flags: int | None = None,
    isv_prod_id: int | None = None,
    isv_svn: int | None = None,
) -> Quote:
    """
    A real quote (konvera's by default) with report body fields changed.
    """
    data = bytearray(KONVERA_QUOTE.read_bytes() if source is None else source)
    if flags is not None:
        struct.pack_into("<Q", data, 96, flags)
    if isv_prod_id is not None:
        struct.pack_into("<H", data, 304, isv_prod_id)
    if isv_svn is not None:
        struct.pack_into("<H", data, 306, isv_svn)
    return Quote.from_bytes(bytes(data))


def konvera_policy(**changes: object) -> Policy:
    """
    A policy naming the konvera enclave exactly, with changes.
    """
    fields: dict[str, object] = {
        "mrenclave": KONVERA_MRENCLAVE,
        "mrsigner": KONVERA_MRSIGNER,
        "isv_prod_id": 0,
        "isv_svn": 0,
    }
    fields.update(changes)
    return Policy(**fields)  # type: ignore[arg-type]


def konvera_env(**changes: str) -> dict[str, str]:
    """
    C{RA_TLS_*} variables naming the konvera enclave, with changes.
    """
    env = {
        "RA_TLS_MRENCLAVE": KONVERA["mrenclave"],
        "RA_TLS_MRSIGNER": KONVERA["mrsigner"],
        "RA_TLS_ISV_PROD_ID": "0",
        "RA_TLS_ISV_SVN": "0",
    }
    env.update(changes)
    return env


def refusal(policy: Policy, verdict: HandVerdict) -> tuple[Mismatch, ...]:
    """
    The mismatches of the L{PolicyError} that C{policy.check} raises.
    """
    with pytest.raises(PolicyError) as info:
        policy.check(verdict)
    assert info.value.mismatches == policy.mismatches(verdict)
    return info.value.mismatches


def any_enclave_warnings(
    caught: Sequence[warnings.WarningMessage],
) -> list[warnings.WarningMessage]:
    """
    The "accepts any enclave" warnings among caught warnings.
    """
    return [
        w
        for w in caught
        if issubclass(w.category, InsecurePolicyWarning)
        and "any enclave" in str(w.message)
    ]


class TestFromEnv:
    def test_all_four(self) -> None:
        """
        The four measurement variables set the four measurement fields;
        the switches are off when absent.
        """
        policy = Policy.from_env(
            konvera_env(RA_TLS_ISV_PROD_ID="7", RA_TLS_ISV_SVN="65535")
        )
        assert (
            Policy(
                mrenclave=KONVERA_MRENCLAVE,
                mrsigner=KONVERA_MRSIGNER,
                isv_prod_id=7,
                isv_svn=65535,
            )
            == policy
        )

    def test_upper_case_hex(self) -> None:
        """
        Measurements may be written in upper-case hex.
        """
        policy = Policy.from_env(
            konvera_env(RA_TLS_MRENCLAVE=KONVERA["mrenclave"].upper())
        )
        assert KONVERA_MRENCLAVE == policy.mrenclave

    @pytest.mark.parametrize(
        "name",
        [
            "RA_TLS_MRENCLAVE",
            "RA_TLS_MRSIGNER",
            "RA_TLS_ISV_PROD_ID",
            "RA_TLS_ISV_SVN",
        ],
    )
    def test_each_is_required(self, name: str) -> None:
        """
        Leaving any of the four measurement variables unset is a
        configuration error that names it.
        """
        env = konvera_env()
        del env[name]
        with pytest.raises(ConfigurationError, match=name):
            Policy.from_env(env)

    @pytest.mark.parametrize(
        ("name", "field"),
        [
            ("RA_TLS_MRENCLAVE", "mrenclave"),
            ("RA_TLS_MRSIGNER", "mrsigner"),
            ("RA_TLS_ISV_PROD_ID", "isv_prod_id"),
            ("RA_TLS_ISV_SVN", "isv_svn"),
        ],
    )
    def test_any_skips(self, name: str, field: str) -> None:
        """
        The value C{any} leaves that field unchecked and the others set.
        """
        policy = Policy.from_env(konvera_env(**{name: "any"}))
        assert getattr(policy, field) is None
        assert () == policy.mismatches(HandVerdict(quote_with(), "UpToDate"))
        others = {"mrenclave", "mrsigner", "isv_prod_id", "isv_svn"} - {field}
        assert all(getattr(policy, f) is not None for f in others)

    def test_both_measurements_any(self) -> None:
        """
        C{any} for both MRENCLAVE and MRSIGNER builds a policy that
        accepts any enclave, and warns about it once.
        """
        with warnings.catch_warnings(record=True) as events:
            warnings.simplefilter("always")
            policy = Policy.from_env(
                konvera_env(RA_TLS_MRENCLAVE="any", RA_TLS_MRSIGNER="any")
            )
        assert policy.accepts_any_enclave
        assert 1 == len(any_enclave_warnings(events))
        other = quote_with(CCC_DICE_QUOTE.read_bytes())
        assert ["debug"] == [
            m.field for m in policy.mismatches(HandVerdict(other, "UpToDate"))
        ]

    def test_one_measurement_does_not_warn(self) -> None:
        """
        A policy that checks one of the two measurements logs no warning.
        """
        with warnings.catch_warnings(record=True) as events:
            warnings.simplefilter("always")
            Policy.from_env(konvera_env(RA_TLS_MRENCLAVE="any"))
        assert [] == any_enclave_warnings(events)

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "ANY",
            "Any",
            " any",
            "zz" * 32,
            "00" * 31,
            "00" * 33,
            "0" * 63,
            "0x" + "00" * 31,
            "00" * 32 + "\n",
            " " + "00" * 32,
            "00" * 16 + " " + "00" * 16,
            "\uff10" * 64,
        ],
    )
    @pytest.mark.parametrize("name", ["RA_TLS_MRENCLAVE", "RA_TLS_MRSIGNER"])
    def test_malformed_measurement(self, name: str, value: str) -> None:
        """
        A measurement that is not exactly 64 ASCII hex digits (or C{any})
        is a configuration error naming the variable.
        """
        with pytest.raises(ConfigurationError, match=name):
            Policy.from_env(konvera_env(**{name: value}))

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "-1",
            "+1",
            "1.0",
            "1e3",
            "0x10",
            " 1",
            "1 ",
            "65536",
            "4294967297",
            "1" * 5000,
            "\u0661",
            "ANY",
        ],
    )
    @pytest.mark.parametrize("name", ["RA_TLS_ISV_PROD_ID", "RA_TLS_ISV_SVN"])
    def test_malformed_number(self, name: str, value: str) -> None:
        """
        An ISV number that is not ASCII decimal within 16 bits (or C{any})
        is a configuration error naming the variable.
        """
        with pytest.raises(ConfigurationError, match=name):
            Policy.from_env(konvera_env(**{name: value}))

    @pytest.mark.parametrize("value", ["0", "00065535", "65535"])
    def test_decimal_bounds(self, value: str) -> None:
        """
        Zero, the 16-bit maximum and leading zeros are valid numbers.
        """
        policy = Policy.from_env(konvera_env(RA_TLS_ISV_SVN=value))
        assert int(value) == policy.isv_svn

    @pytest.mark.parametrize(
        ("name", "field"),
        [
            (
                "RA_TLS_ALLOW_OUTDATED_TCB_INSECURE",
                "allow_outdated_tcb_insecure",
            ),
            ("RA_TLS_ALLOW_HW_CONFIG_NEEDED", "allow_hw_config_needed"),
            ("RA_TLS_ALLOW_SW_HARDENING_NEEDED", "allow_sw_hardening_needed"),
            (
                "RA_TLS_ALLOW_DEBUG_ENCLAVE_INSECURE",
                "allow_debug_enclave_insecure",
            ),
        ],
    )
    @pytest.mark.parametrize(
        ("value", "on"),
        [
            ("1", True),
            ("0", False),
            ("", False),
            ("true", False),
            ("yes", False),
            ("01", False),
            ("1 ", False),
            (" 1", False),
            ("2", False),
        ],
    )
    def test_switch_only_on_with_1(
        self, name: str, field: str, value: str, on: bool
    ) -> None:
        """
        Each C{RA_TLS_ALLOW_*} switch is on only when it is exactly "1",
        and turns on only its own field.
        """
        policy = Policy.from_env(konvera_env(**{name: value}))
        switches = {
            f: getattr(policy, f)
            for f in (
                "allow_outdated_tcb_insecure",
                "allow_hw_config_needed",
                "allow_sw_hardening_needed",
                "allow_debug_enclave_insecure",
            )
        }
        assert {f: (on and f == field) for f in switches} == switches

    def test_to_env_round_trip(self) -> None:
        """
        L{Policy.to_env} writes variables that read back as the same
        policy.
        """
        policy = konvera_policy(
            isv_prod_id=None,
            isv_svn=3,
            allow_outdated_tcb_insecure=True,
            allow_debug_enclave_insecure=True,
        )
        env = policy.to_env()
        assert "any" == env["RA_TLS_ISV_PROD_ID"]
        assert policy == Policy.from_env(env)


class TestConstruction:
    def test_any_enclave_needs_the_word(self) -> None:
        """
        A Python policy with neither measurement is refused unless
        C{accept_any_enclave=True} is given.
        """
        with pytest.raises(ConfigurationError, match="accept_any_enclave"):
            Policy(mrenclave=None, mrsigner=None, isv_prod_id=0, isv_svn=0)

    def test_any_enclave_warns(self) -> None:
        """
        Saying C{accept_any_enclave=True} builds the policy and logs a
        warning event with a stable name.
        """
        with warnings.catch_warnings(record=True) as events:
            warnings.simplefilter("always")
            policy = Policy(
                mrenclave=None,
                mrsigner=None,
                isv_prod_id=None,
                isv_svn=None,
                accept_any_enclave=True,
            )
        assert policy.accepts_any_enclave
        assert 1 == len(any_enclave_warnings(events))

    def test_word_is_harmless_with_a_measurement(self) -> None:
        """
        C{accept_any_enclave=True} with a measurement given still checks
        that measurement, and warns about nothing.
        """
        with warnings.catch_warnings(record=True) as events:
            warnings.simplefilter("always")
            policy = konvera_policy(mrsigner=None, accept_any_enclave=True)
        assert [] == any_enclave_warnings(events)
        ccc = quote_with(CCC_DICE_QUOTE.read_bytes())
        assert "mrenclave" in [
            m.field for m in policy.mismatches(HandVerdict(ccc, "UpToDate"))
        ]

    @pytest.mark.parametrize(
        "changes",
        [
            {"mrenclave": bytes(31)},
            {"mrsigner": bytes(33)},
            {"mrenclave": "00" * 32},
            {"isv_prod_id": -1},
            {"isv_svn": 65536},
            {"isv_svn": True},
            {"isv_prod_id": "0"},
        ],
    )
    def test_bad_values(self, changes: dict[str, object]) -> None:
        """
        Measurements of the wrong size or type and ISV numbers outside 16
        bits are configuration errors.
        """
        with pytest.raises(ConfigurationError):
            konvera_policy(**changes)

    def test_hashable(self) -> None:
        """
        Equal policies hash equal, so they can key a verification cache.
        """
        assert hash(konvera_policy()) == hash(konvera_policy())
        assert konvera_policy() != konvera_policy(isv_svn=1)

    def test_to_json_dict(self) -> None:
        """
        The JSON form names the measurements in hex and every switch.
        """
        data = konvera_policy(
            isv_prod_id=None, allow_sw_hardening_needed=True
        ).to_json_dict()
        assert {
            "mrenclave": KONVERA["mrenclave"],
            "mrsigner": KONVERA["mrsigner"],
            "isv_prod_id": None,
            "isv_svn_min": 0,
            "allow_outdated_tcb_insecure": False,
            "allow_hw_config_needed": False,
            "allow_sw_hardening_needed": True,
            "allow_debug_enclave_insecure": False,
            "accept_any_enclave": False,
        } == data


class TestMeasurements:
    def test_exact_match(self) -> None:
        """
        The konvera quote satisfies a policy naming it exactly.
        """
        konvera_policy().check(HandVerdict(quote_with(), "UpToDate"))

    @pytest.mark.parametrize(
        ("changes", "field", "want", "got"),
        [
            (
                {"mrenclave": bytes(32)},
                "mrenclave",
                "00" * 32,
                KONVERA["mrenclave"],
            ),
            (
                {"mrsigner": b"\xff" * 32},
                "mrsigner",
                "ff" * 32,
                KONVERA["mrsigner"],
            ),
            ({"isv_prod_id": 1}, "isv_prod_id", "1", "0"),
            ({"isv_svn": 1}, "isv_svn", ">= 1", "0"),
        ],
    )
    def test_each_mismatch(
        self, changes: dict[str, object], field: str, want: str, got: str
    ) -> None:
        """
        A wrong MRENCLAVE, MRSIGNER or ISVPRODID, or a required ISVSVN
        above the enclave's, is refused with a mismatch naming it.
        """
        mismatches = refusal(
            konvera_policy(**changes), HandVerdict(quote_with(), "UpToDate")
        )
        assert (Mismatch(field, want, got),) == mismatches

    @pytest.mark.parametrize(("svn", "ok"), [(4, False), (5, True), (6, True)])
    def test_svn_is_a_minimum(self, svn: int, ok: bool) -> None:
        """
        ISVSVN is accepted when at least the policy's, not only equal.
        """
        verdict = HandVerdict(quote_with(isv_svn=svn), "UpToDate")
        assert ok == (konvera_policy(isv_svn=5).mismatches(verdict) == ())

    def test_prod_id_is_exact(self) -> None:
        """
        A higher ISVPRODID is as wrong as a lower one.
        """
        verdict = HandVerdict(quote_with(isv_prod_id=2), "UpToDate")
        assert ["isv_prod_id"] == [
            m.field for m in konvera_policy(isv_prod_id=1).mismatches(verdict)
        ]

    def test_all_reported(self) -> None:
        """
        When everything is wrong, every mismatch is reported, in a fixed
        order, in one error.
        """
        policy = Policy(
            mrenclave=bytes(32),
            mrsigner=bytes(32),
            isv_prod_id=9,
            isv_svn=9,
        )
        quote = quote_with(flags=0x2 | 0x10 | 0x20)
        verdict = HandVerdict(
            quote,
            "OutOfDate",
            SIX_ADVISORIES,
            collateral_expired=True,
        )
        assert [
            "mrenclave",
            "mrsigner",
            "isv_prod_id",
            "isv_svn",
            "debug",
            "attributes",
            "attributes",
            "attributes",
            "attributes",
            "tcb_status",
            "collateral_expired",
        ] == [m.field for m in refusal(policy, verdict)]

    def test_error_text_lists_all(self) -> None:
        """
        The error's message names every mismatch.
        """
        policy = konvera_policy(mrenclave=bytes(32), isv_svn=3)
        with pytest.raises(
            PolicyError, match=r"mrenclave: .*; isv_svn: expected >= 3, got 0"
        ) as info:
            policy.check(HandVerdict(quote_with(), "UpToDate"))
        assert isinstance(info.value, VerificationError)

    def test_constant_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        MRENCLAVE and MRSIGNER are compared with L{hmac.compare_digest}.
        """
        calls: list[tuple[bytes, bytes]] = []
        original = hmac.compare_digest

        def recording(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return original(a, b)

        monkeypatch.setattr(_policy.hmac, "compare_digest", recording)
        konvera_policy().check(HandVerdict(quote_with(), "UpToDate"))
        assert [
            (KONVERA_MRENCLAVE, KONVERA_MRENCLAVE),
            (KONVERA_MRSIGNER, KONVERA_MRSIGNER),
        ] == calls


class TestAttributes:
    def test_debug_refused(self) -> None:
        """
        The debug CCC enclave is refused unless debug enclaves are
        allowed.
        """
        quote = quote_with(CCC_DICE_QUOTE.read_bytes())
        assert quote.report.flags == int(CCC["attributes_flags"], 16)
        policy = Policy(
            mrenclave=bytes.fromhex(CCC["mrenclave"]),
            mrsigner=bytes.fromhex(CCC["mrsigner"]),
            isv_prod_id=0,
            isv_svn=0,
        )
        verdict = HandVerdict(quote, "UpToDate")
        assert ["debug"] == [m.field for m in refusal(policy, verdict)]
        policy = Policy.from_env(
            policy.to_env() | {"RA_TLS_ALLOW_DEBUG_ENCLAVE_INSECURE": "1"}
        )
        policy.check(verdict)

    @pytest.mark.parametrize(
        ("flags", "expected_mismatch"),
        [
            (0x5 & ~0x1, Mismatch("attributes", "INIT set", "INIT clear")),
            (
                0x5 & ~0x4,
                Mismatch("attributes", "MODE64BIT set", "MODE64BIT clear"),
            ),
            (
                0x5 | 0x10,
                Mismatch(
                    "attributes", "PROVISION_KEY clear", "PROVISION_KEY set"
                ),
            ),
            (
                0x5 | 0x20,
                Mismatch(
                    "attributes", "EINITTOKEN_KEY clear", "EINITTOKEN_KEY set"
                ),
            ),
        ],
    )
    def test_each_attribute(
        self, flags: int, expected_mismatch: Mismatch
    ) -> None:
        """
        INIT and MODE64BIT must be set, PROVISION_KEY and EINITTOKEN_KEY
        clear, even when debug enclaves are allowed.
        """
        policy = konvera_policy(allow_debug_enclave_insecure=True)
        verdict = HandVerdict(quote_with(flags=flags), "UpToDate")
        assert (expected_mismatch,) == refusal(policy, verdict)

    def test_other_flags_ignored(self) -> None:
        """
        KSS and the high flag bits are not the policy's business, as in
        Gramine.
        """
        verdict = HandVerdict(
            quote_with(flags=0x5 | 0x80 | 1 << 40), "UpToDate"
        )
        konvera_policy().check(verdict)


class TestTCBStatus:
    @pytest.mark.parametrize("status", ALL_STATUSES)
    @pytest.mark.parametrize(
        ("outdated", "hw", "sw"),
        list(itertools.product([False, True], repeat=3)),
    )
    def test_gramine_table(
        self, status: str, outdated: bool, hw: bool, sw: bool
    ) -> None:
        """
        Every TCB status is accepted exactly under Gramine's rule for the
        three switches; a refusal is one C{tcb_status} mismatch.
        """
        policy = konvera_policy(
            allow_outdated_tcb_insecure=outdated,
            allow_hw_config_needed=hw,
            allow_sw_hardening_needed=sw,
        )
        verdict = HandVerdict(quote_with(), status, ("INTEL-SA-00001",))
        if GRAMINE_ACCEPTS[status](outdated, hw, sw):
            policy.check(verdict)
        else:
            assert ["tcb_status"] == [
                m.field for m in refusal(policy, verdict)
            ]

    def test_revoked_always_refused(self) -> None:
        """
        A revoked TCB is refused even with every switch on.
        """
        policy = konvera_policy(
            allow_outdated_tcb_insecure=True,
            allow_hw_config_needed=True,
            allow_sw_hardening_needed=True,
            allow_debug_enclave_insecure=True,
        )
        (mismatch,) = refusal(policy, HandVerdict(quote_with(), "Revoked"))
        assert "Revoked" in mismatch.actual

    @pytest.mark.parametrize("status", ["", "Bogus", "uptodate", "UPTODATE"])
    def test_unknown_status_refused(self, status: str) -> None:
        """
        A status outside the table is refused, not accepted by default.
        """
        policy = konvera_policy(
            allow_outdated_tcb_insecure=True,
            allow_hw_config_needed=True,
            allow_sw_hardening_needed=True,
        )
        assert ["tcb_status"] == [
            m.field for m in refusal(policy, HandVerdict(quote_with(), status))
        ]

    def test_advisories_in_mismatch(self) -> None:
        """
        The TCB status mismatch lists the status, every advisory and the
        switch that would accept it.
        """
        verdict = HandVerdict(quote_with(), "OutOfDate", SIX_ADVISORIES)
        (mismatch,) = refusal(konvera_policy(), verdict)
        assert "tcb_status" == mismatch.field
        assert mismatch.actual.startswith("OutOfDate")
        for advisory in SIX_ADVISORIES:
            assert advisory in mismatch.actual
        assert "allow_outdated_tcb_insecure" in mismatch.expected

    def test_missing_switches_named(self) -> None:
        """
        For a status that needs two switches, the mismatch names only
        the one still missing.
        """
        policy = konvera_policy(allow_outdated_tcb_insecure=True)
        verdict = HandVerdict(quote_with(), "OutOfDateConfigurationNeeded")
        (mismatch,) = refusal(policy, verdict)
        assert "allow_hw_config_needed" in mismatch.expected
        assert "allow_outdated_tcb_insecure" not in mismatch.expected

    def test_enum_status(self) -> None:
        """
        A string-enum status (like C{TcbStatus}) is judged by its value.
        """
        policy = konvera_policy()
        policy.check(HandVerdict(quote_with(), StrStatus.UP_TO_DATE))
        (mismatch,) = refusal(
            policy, HandVerdict(quote_with(), StrStatus.OUT_OF_DATE)
        )
        assert mismatch.actual.startswith("OutOfDate (")


class TestCollateralExpiry:
    def test_expired_refused(self) -> None:
        """
        Expired collateral is refused, with its expiry time, unless
        outdated TCBs are allowed.
        """
        verdict = HandVerdict(
            quote_with(), "UpToDate", collateral_expired=True
        )
        (mismatch,) = refusal(konvera_policy(), verdict)
        assert "collateral_expired" == mismatch.field
        assert "2025-09-14T04:36:46+00:00" in mismatch.actual
        konvera_policy(allow_outdated_tcb_insecure=True).check(verdict)

    def test_other_switches_do_not_help(self) -> None:
        """
        Allowing debug, configuration or hardening does not accept
        expired collateral.
        """
        policy = konvera_policy(
            allow_hw_config_needed=True,
            allow_sw_hardening_needed=True,
            allow_debug_enclave_insecure=True,
        )
        verdict = HandVerdict(
            quote_with(), "UpToDate", collateral_expired=True
        )
        assert ["collateral_expired"] == [
            m.field for m in refusal(policy, verdict)
        ]
