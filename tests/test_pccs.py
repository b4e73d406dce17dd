"""
Tests for the collateral sources in L{attestd._pccs} and the disk cache in
L{attestd._collateral_cache}: real sockets on 127.0.0.1 against the fake
PCCS in L{tests.fakepccs}, serving the real automata-0825 collateral.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from attestd._collateral import Collateral, CollateralParseError
from attestd._collateral_cache import (
    CollateralCache,
    collateral_fmspc,
    collateral_next_update,
)
from attestd._pccs import (
    INTEL_PCS_URL,
    INTEL_ROOT_CA_CRL_URL,
    BundleCollateralSource,
    CachingCollateralSource,
    CollateralClient,
    CollateralConnectionError,
    CollateralFetchError,
    CollateralFMSPCMismatchError,
    CollateralHTTPError,
    CollateralResponseError,
    CollateralResponseTooLargeError,
    CollateralTimeoutError,
    CollateralTLSError,
)
from attestd.errors import ConfigurationError, ParseError

from ._vectors import (
    AUTOMATA_BUNDLE,
    DCAP_QVL_COLLATERAL,
    KONVERA_QUOTE,
)
from .fakepccs import (
    ENDPOINTS,
    FakePCCS,
    Fault,
    RunningPCCS,
    ThrowawayPKI,
    make_pki,
    serve_http,
    serve_tls,
)

reactor: Any = _reactor

FMSPC = bytes.fromhex("00606a000000")
#: The automata bundle's verification time (PROVENANCE.md).
NOW = 1755236700
#: Its earliest nextUpdate: the QE Identity's, 2025-09-14T04:36:46Z.
EARLIEST_NEXT_UPDATE = 1757824606


def bundle() -> Collateral:
    """
    The assembled automata-0825 bundle.
    """
    return Collateral.from_json(AUTOMATA_BUNDLE.read_text())


@pytest.fixture(scope="module")
def pki() -> ThrowawayPKI:
    """
    A throwaway CA and a certificate for 127.0.0.1 it issued.
    """
    return make_pki()


@pytest_twisted.async_yield_fixture
async def pccs(
    tmp_path: Path, pki: ThrowawayPKI
) -> AsyncIterator[RunningPCCS]:
    """
    The fake PCCS over TLS.
    """
    running = serve_tls(reactor, FakePCCS.from_vectors(), pki, tmp_path)
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def plain_pccs() -> AsyncIterator[RunningPCCS]:
    """
    The fake PCCS over plain HTTP.
    """
    running = serve_http(reactor, FakePCCS.from_vectors())
    yield running
    await running.stop()


def client_for(running: RunningPCCS, **kwargs: Any) -> CollateralClient:
    """
    A client trusting the fake PCCS's CA.
    """
    kwargs.setdefault("tls_trust", running.ca_file)
    return CollateralClient(reactor, running.url, **kwargs)


def attestd_events(events: Any, level: LogLevel) -> list[Any]:
    """
    The events of one level that L{attestd._pccs} logged.
    """
    return [
        e
        for e in events
        if e.get("log_namespace") == "attestd._pccs"
        and e.get("log_level") == level
    ]


class TestCollateralClient:
    @pytest_twisted.ensureDeferred
    async def test_fetch_equals_bundle(self, pccs: RunningPCCS) -> None:
        """
        Collateral fetched from the fake PCCS equals the assembled bundle,
        field for field, and came from the four v4 endpoints.
        """
        collateral = await client_for(pccs).fetch(FMSPC, "platform")
        assert bundle().to_dict() == collateral.to_dict()
        assert pccs.fake.requests == [
            "/sgx/certification/v4/tcb?fmspc=00606A000000",
            "/sgx/certification/v4/qe/identity",
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
            "/sgx/certification/v4/rootcacrl",
        ]

    @pytest_twisted.ensureDeferred
    async def test_signed_bytes_are_exact(self, pccs: RunningPCCS) -> None:
        """
        The TCB Info and QE Identity are the exact bytes of the objects in
        the served files.
        """
        collateral = await client_for(pccs).fetch(FMSPC, "platform")
        assert collateral.tcb_info.encode() in pccs.fake.tcb_info_body
        assert collateral.tcb_info.startswith('{"id":"SGX"')
        assert collateral.qe_identity.encode() in pccs.fake.qe_identity_body
        tcb_doc = json.loads(pccs.fake.tcb_info_body)
        assert tcb_doc["signature"] == collateral.tcb_info_signature.hex()

    @pytest_twisted.ensureDeferred
    async def test_api_path_and_hex_fmspc(self, pccs: RunningPCCS) -> None:
        """
        A base URL written with C{/sgx/certification/v4/} and an FMSPC
        given as hex text give the same collateral.
        """
        client = CollateralClient(
            reactor,
            pccs.url + "/sgx/certification/v4/",
            tls_trust=pccs.ca_file,
        )
        collateral = await client.fetch("00606A000000", "PLATFORM")
        assert bundle() == collateral

    @pytest_twisted.ensureDeferred
    async def test_v3_tcb_header_name(self, pccs: RunningPCCS) -> None:
        """
        The TCB Info chain is also found under the v3 header name
        C{SGX-TCB-Info-Issuer-Chain}.
        """
        pccs.fake.tcb_chain_header = b"SGX-TCB-Info-Issuer-Chain"
        collateral = await client_for(pccs).fetch(FMSPC, "platform")
        assert bundle() == collateral

    @pytest_twisted.ensureDeferred
    async def test_crl_encodings(self, pccs: RunningPCCS) -> None:
        """
        A root CA CRL served as DER and a PCK CRL served as PEM (a server
        ignoring C{encoding=der}) give the same DER.
        """
        pccs.fake.root_crl_format = "der"
        pccs.fake.pck_crl_format = "pem"
        collateral = await client_for(pccs).fetch(FMSPC, "platform")
        assert bundle() == collateral

    @pytest_twisted.ensureDeferred
    async def test_reformatted_body(self, pccs: RunningPCCS) -> None:
        """
        The signed object is cut where a JSON scan finds it, whatever the
        member order, whitespace, or text that looks like it inside a
        string.
        """
        tcb_doc = json.loads(pccs.fake.tcb_info_body)
        exact = bundle().tcb_info
        pccs.fake.tcb_info_body = (
            '{ "note" : "\\"tcbInfo\\":{\\"fmspc\\":\\"000000000000\\"}" ,\n'
            f'  "signature"\t:  "{tcb_doc["signature"].upper()}",\r\n'
            f'  "tcbInfo" :{exact}\n}}\n'
        ).encode()
        collateral = await client_for(pccs).fetch(FMSPC, "platform")
        assert bundle() == collateral

    @pytest_twisted.ensureDeferred
    async def test_object_not_reencoded(self, pccs: RunningPCCS) -> None:
        """
        The signed object keeps its bytes as served: inner whitespace,
        escapes and key order are not normalised.
        """
        signed = (
            '{ "z" : [1, 2.50, "\\u00e9\\/\\n"],\n'
            '\t"fmspc":"00606A000000", "a":{} }'
        )
        pccs.fake.tcb_info_body = (
            f'{{"tcbInfo":{signed},"signature":"{"ab" * 64}"}}'.encode()
        )
        collateral = await client_for(pccs).fetch(FMSPC, "platform")
        assert collateral.tcb_info == signed
        assert collateral.tcb_info_signature == b"\xab" * 64

    @pytest.mark.parametrize(
        ("body", "match"),
        [
            (
                b'{"tcbInfo": {"fmspc": "00606a000000"}, "tcbInfo": {}, '
                b'"signature": "00"}',
                "appears twice",
            ),
            (
                b'{"tcbInfo": {}, "signature": "' + b"00" * 64 + b'"} {}',
                "data after",
            ),
            (b'{"signature": "' + b"00" * 64 + b'"}', "no 'tcbInfo'"),
            (
                b'{"tcbInfo": [], "signature": "' + b"00" * 64 + b'"}',
                "not a JSON object",
            ),
            (
                b'{"tcbInfo": {"fmspc": "00606a000000"}, "signature": "zz"}',
                "not hex",
            ),
            (
                b'{"tcbInfo": {"fmspc": "00606a000000"}, "signature": "00"}',
                "1 bytes",
            ),
            (
                b'{"tcbInfo": {"fmspc": "00606a000000", "x": NaN}, '
                b'"signature": "00"}',
                "NaN is not JSON",
            ),
            (
                b'{"tcbInfo": {"fmspc": 7}, "signature": "'
                + b"00" * 64
                + b'"}',
                "fmspc 7",
            ),
            (b"\xff\xfe{}", "not a JSON object"),
            (b"[" * 100000, "not a JSON object"),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_malformed_tcb_body(
        self, pccs: RunningPCCS, body: bytes, match: str
    ) -> None:
        """
        A TCB Info body that is not one well-formed signed object is
        refused as malformed, naming what is wrong.
        """
        pccs.fake.tcb_info_body = body
        with pytest.raises(CollateralResponseError, match=match) as info:
            await client_for(pccs).fetch(FMSPC, "platform")
        assert isinstance(info.value, ParseError)
        assert info.value.url.endswith("/tcb?fmspc=00606A000000")

    @pytest.mark.parametrize("status", [404, 500, 503])
    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    @pytest_twisted.ensureDeferred
    async def test_error_status(
        self, pccs: RunningPCCS, endpoint: str, status: int
    ) -> None:
        """
        An error status from any endpoint fails the fetch with
        L{CollateralHTTPError} naming the URL and the status.
        """
        pccs.fake.faults[endpoint] = Fault("status", status=status)
        client = client_for(pccs)
        url = client.urls(FMSPC, "platform")[endpoint]
        with pytest.raises(CollateralHTTPError) as info:
            await client.fetch(FMSPC, "platform")
        assert status == info.value.status
        assert url == info.value.url
        assert f"GET {url}: HTTP {status}" in str(info.value)
        assert "Error-Code: FakeFault" in str(info.value)

    @pytest_twisted.ensureDeferred
    async def test_unknown_fmspc(self, pccs: RunningPCCS) -> None:
        """
        An FMSPC the server has no TCB Info for gives its 404.
        """
        with pytest.raises(CollateralHTTPError, match="HTTP 404") as info:
            await client_for(pccs).fetch(bytes(6), "platform")
        assert info.value.url.endswith("/tcb?fmspc=000000000000")

    @pytest_twisted.ensureDeferred
    async def test_other_ca(self, pccs: RunningPCCS) -> None:
        """
        The processor CA's CRL is asked for by name; the fake does not
        hold it and answers 404.
        """
        with pytest.raises(CollateralHTTPError, match="HTTP 404") as info:
            await client_for(pccs).fetch(FMSPC, "processor")
        assert info.value.url.endswith("pckcrl?ca=processor&encoding=der")

    @pytest_twisted.ensureDeferred
    async def test_fmspc_mismatch(self, pccs: RunningPCCS) -> None:
        """
        TCB Info for another FMSPC than the one asked for is refused.
        """
        pccs.fake.any_fmspc = True
        with pytest.raises(
            CollateralFMSPCMismatchError,
            match="FMSPC 00606a000000, not 00a067110000",
        ) as info:
            await client_for(pccs).fetch("00a067110000", "platform")
        assert bytes.fromhex("00a067110000") == info.value.requested
        assert info.value.found == FMSPC

    @pytest_twisted.ensureDeferred
    async def test_hang_times_out(self, pccs: RunningPCCS) -> None:
        """
        A server that never answers fails the fetch with
        L{CollateralTimeoutError} after the timeout.
        """
        pccs.fake.faults["qe_identity"] = Fault("hang")
        with pytest.raises(
            CollateralTimeoutError, match=r"no complete response within 0\.3 s"
        ) as info:
            await client_for(pccs, timeout=0.3).fetch(FMSPC, "platform")
        assert info.value.url.endswith("/qe/identity")

    @pytest.mark.parametrize(
        ("endpoint", "kind", "match"),
        [
            (
                "tcb_info",
                "missing_chain",
                "TCB-Info-Issuer-Chain header is missing",
            ),
            (
                "qe_identity",
                "missing_chain",
                "SGX-Enclave-Identity-Issuer-Chain header is missing",
            ),
            (
                "pck_crl",
                "missing_chain",
                "SGX-PCK-CRL-Issuer-Chain header is missing",
            ),
            ("tcb_info", "malformed_chain", "not a PEM certificate chain"),
            ("pck_crl", "raw_chain", "malformed certificate"),
            ("tcb_info", "truncated", "cut short"),
            ("pck_crl", "truncated", "cut short"),
            ("tcb_info", "not_json", "not a JSON object"),
            ("qe_identity", "not_json", "not a JSON object"),
            ("pck_crl", "not_json", "neither DER, PEM nor hex"),
            ("root_ca_crl", "not_json", "neither DER, PEM nor hex"),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_malformed_response(
        self, pccs: RunningPCCS, endpoint: str, kind: str, match: str
    ) -> None:
        """
        A missing or malformed issuer-chain header, a truncated body or a
        body of the wrong kind fails the fetch with
        L{CollateralResponseError}, a parse error naming the URL.
        """
        pccs.fake.faults[endpoint] = Fault(kind)
        client = client_for(pccs)
        with pytest.raises(CollateralResponseError, match=match) as info:
            await client.fetch(FMSPC, "platform")
        assert client.urls(FMSPC, "platform")[endpoint] == info.value.url
        assert isinstance(info.value, CollateralParseError)
        assert isinstance(info.value, CollateralFetchError)

    @pytest.mark.parametrize("kind", ["oversized", "oversized_declared"])
    @pytest_twisted.ensureDeferred
    async def test_oversized(self, pccs: RunningPCCS, kind: str) -> None:
        """
        A body past the size bound, announced or streamed, is refused
        without waiting for the rest.
        """
        pccs.fake.faults["root_ca_crl"] = Fault(kind, size=1024 * 1024)
        with pytest.raises(
            CollateralResponseTooLargeError, match="larger than 65536 bytes"
        ):
            await client_for(pccs, max_response_size=65536).fetch(
                FMSPC, "platform"
            )

    @pytest_twisted.ensureDeferred
    async def test_connection_refused(self, pccs: RunningPCCS) -> None:
        """
        A server that is not listening gives L{CollateralConnectionError}.
        """
        client = client_for(pccs)
        await pccs.stop()
        with pytest.raises(CollateralConnectionError, match="cannot connect"):
            await client.fetch(FMSPC, "platform")

    @pytest_twisted.ensureDeferred
    async def test_untrusted_certificate(self, pccs: RunningPCCS) -> None:
        """
        Without the fake PCCS's CA, the platform trust store does not
        trust it and the fetch fails in the TLS handshake.
        """
        client = CollateralClient(reactor, pccs.url)
        with pytest.raises(CollateralTLSError, match="TLS handshake failed"):
            await client.fetch(FMSPC, "platform")
        assert pccs.fake.requests == []

    @pytest_twisted.ensureDeferred
    async def test_wrong_host_name(self, tmp_path: Path) -> None:
        """
        A certificate from the trusted CA that names another host is
        refused.
        """
        other = make_pki(dns_name="pccs.invalid")
        running = serve_tls(reactor, FakePCCS.from_vectors(), other, tmp_path)
        try:
            with pytest.raises(CollateralTLSError):
                await client_for(running).fetch(FMSPC, "platform")
        finally:
            await running.stop()

    @pytest_twisted.ensureDeferred
    async def test_insecure_skip_verification(self, pccs: RunningPCCS) -> None:
        """
        With C{insecure_skip_tls_verification}, and only then, an
        untrusted server is accepted, and a warning is logged.
        """
        with capturedLogs() as events:
            client = CollateralClient(
                reactor, pccs.url, insecure_skip_tls_verification=True
            )
        assert attestd_events(events, LogLevel.warn)
        collateral = await client.fetch(FMSPC, "platform")
        assert bundle() == collateral

    def test_conflicting_tls_options(self, tmp_path: Path) -> None:
        """
        A CA file together with C{insecure_skip_tls_verification} is a
        configuration error.
        """
        ca = tmp_path / "ca.pem"
        ca.write_bytes(make_pki().ca_pem)
        with pytest.raises(ConfigurationError, match="not both"):
            CollateralClient(
                reactor,
                "https://127.0.0.1:1",
                tls_trust=ca,
                insecure_skip_tls_verification=True,
            )

    @pytest.mark.parametrize(
        ("content", "match"),
        [(None, "cannot read"), (b"not pem", "no PEM certificates")],
    )
    def test_bad_ca_file(
        self, tmp_path: Path, content: bytes | None, match: str
    ) -> None:
        """
        A CA file that cannot be read or holds no certificate is a
        configuration error.
        """
        ca = tmp_path / "ca.pem"
        if content is not None:
            ca.write_bytes(content)
        with pytest.raises(ConfigurationError, match=match):
            CollateralClient(reactor, "https://127.0.0.1:1", tls_trust=ca)

    @pytest.mark.parametrize(
        "url",
        [
            "ftp://pccs.example",
            "pccs.example:8081",
            "https://",
            "https://h/?q=1",
        ],
    )
    def test_bad_url(self, url: str) -> None:
        """
        A base URL that is not http(s)://HOST[:PORT][/PATH] is refused.
        """
        with pytest.raises(ConfigurationError):
            CollateralClient(reactor, url)

    def test_http_needs_insecure_flag(self) -> None:
        """
        A plain-HTTP base URL is refused unless C{insecure_allow_http}.
        """
        with pytest.raises(ConfigurationError, match="insecure_allow_http"):
            CollateralClient(reactor, "http://127.0.0.1:8081")

    @pytest_twisted.ensureDeferred
    async def test_plain_http(self, plain_pccs: RunningPCCS) -> None:
        """
        With C{insecure_allow_http}, a plain-HTTP PCCS serves the same
        collateral.
        """
        client = CollateralClient(
            reactor, plain_pccs.url, insecure_allow_http=True
        )
        assert bundle() == await client.fetch(FMSPC, "platform")

    def test_intel_pcs_urls(self) -> None:
        """
        Against Intel PCS, the root CA CRL comes from Intel's CRL
        distribution point (PCS has no C{rootcacrl}); against a PCCS, from
        its C{rootcacrl}.  Nothing is fetched.
        """
        pcs = CollateralClient(reactor, INTEL_PCS_URL + "/")
        assert {
            "tcb_info": f"{INTEL_PCS_URL}/sgx/certification/v4/tcb?fmspc=00606A000000",
            "qe_identity": f"{INTEL_PCS_URL}/sgx/certification/v4/qe/identity",
            "pck_crl": f"{INTEL_PCS_URL}/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
            "root_ca_crl": INTEL_ROOT_CA_CRL_URL,
        } == pcs.urls(FMSPC, "processor")
        pccs = CollateralClient(reactor, "https://pccs.example:8081/base")
        assert (
            pccs.urls(FMSPC, "platform")["root_ca_crl"]
            == "https://pccs.example:8081/base/sgx/certification/v4/rootcacrl"
        )

    @pytest.mark.parametrize(
        ("fmspc", "ca"),
        [
            (b"\x00" * 5, "platform"),
            ("00606a00000g", "platform"),
            (FMSPC, "root"),
        ],
    )
    def test_bad_arguments(self, fmspc: Any, ca: str) -> None:
        """
        An FMSPC that is not 6 bytes or 12 hex digits, or an unknown CA,
        is refused before any request.
        """
        client = CollateralClient(reactor, "https://127.0.0.1:1")
        with pytest.raises(ValueError, match=r"FMSPC|PCK CA"):
            client.fetch(fmspc, ca)

    @pytest_twisted.ensureDeferred
    async def test_logs_each_request(self, pccs: RunningPCCS) -> None:
        """
        Each request is logged once with its URL, status, size and
        duration.
        """
        client = client_for(pccs)
        with capturedLogs() as events:
            await client.fetch(FMSPC, "platform")
        logged = attestd_events(events, LogLevel.info)
        assert list(client.urls(FMSPC, "platform").values()) == [
            e["url"] for e in logged
        ]
        assert [e["status"] for e in logged] == [200] * 4
        assert len(pccs.fake.tcb_info_body) == logged[0]["bytes"]
        assert len(pccs.fake.pck_crl_der) == logged[2]["bytes"]
        assert all(e["duration"] >= 0 for e in logged)
        assert attestd_events(events, LogLevel.error) == []

    @pytest_twisted.ensureDeferred
    async def test_logs_one_error(self, pccs: RunningPCCS) -> None:
        """
        A failed fetch is logged once as an error, naming the URL and the
        error.
        """
        pccs.fake.faults["pck_crl"] = Fault("status", status=503)
        client = client_for(pccs)
        with capturedLogs() as events, pytest.raises(CollateralHTTPError):
            await client.fetch(FMSPC, "platform")
        (error,) = attestd_events(events, LogLevel.error)
        assert client.urls(FMSPC, "platform")["pck_crl"] == error["url"]
        assert error["error_type"] == "CollateralHTTPError"
        assert "HTTP 503" in error["error"]
        assert error["fmspc"] == "00606a000000"

    @pytest_twisted.ensureDeferred
    async def test_cancel(self, pccs: RunningPCCS) -> None:
        """
        Cancelling a fetch stops it and logs no error.
        """
        pccs.fake.faults["tcb_info"] = Fault("hang")
        fetching = client_for(pccs).fetch(FMSPC, "platform")
        waiting: Deferred[None] = Deferred()
        reactor.callLater(0.1, waiting.callback, None)
        await waiting
        with capturedLogs() as events:
            fetching.cancel()
        with pytest.raises(CancelledError):
            await fetching
        assert attestd_events(events, LogLevel.error) == []


class TestCollateralCache:
    def test_next_update(self) -> None:
        """
        A bundle is current until the earliest nextUpdate of its pieces,
        here the QE Identity's.
        """
        assert datetime(
            2025, 9, 14, 4, 36, 46, tzinfo=timezone.utc
        ) == collateral_next_update(bundle())
        assert datetime.fromtimestamp(
            EARLIEST_NEXT_UPDATE, tz=timezone.utc
        ) == collateral_next_update(bundle())

    def test_fmspc(self) -> None:
        """
        The FMSPC of a bundle is read from its TCB Info.
        """
        assert collateral_fmspc(bundle()) == FMSPC
        dcap_qvl = Collateral.from_json(DCAP_QVL_COLLATERAL.read_text())
        assert bytes.fromhex("00a067110000") == collateral_fmspc(dcap_qvl)

    def test_store_and_load(self, tmp_path: Path) -> None:
        """
        A stored bundle loads back equal while current, from a 0700
        directory, leaving no temporary file.
        """
        cache = CollateralCache(tmp_path / "cache")
        path = cache.store(FMSPC, "platform", bundle())
        assert tmp_path / "cache" / "00606a000000-platform.json" == path
        assert stat.S_IMODE(os.stat(tmp_path / "cache").st_mode) == 0o700
        assert [path] == list((tmp_path / "cache").iterdir())
        assert bundle() == Collateral.from_json(path.read_text())
        assert bundle() == cache.load(FMSPC, "platform", now=NOW)
        assert bundle() == cache.load(
            "00606A000000", "Platform", now=EARLIEST_NEXT_UPDATE - 1
        )
        assert cache.load(FMSPC, "processor", now=NOW) is None

    def test_expired(self, tmp_path: Path) -> None:
        """
        At the earliest nextUpdate and later the cached bundle is not
        served.
        """
        cache = CollateralCache(tmp_path)
        cache.store(FMSPC, "platform", bundle())
        assert cache.load(FMSPC, "platform", now=EARLIEST_NEXT_UPDATE) is None
        later = datetime(2026, 1, 1, tzinfo=timezone.utc)
        assert cache.load(FMSPC, "platform", now=later) is None

    def test_replace(self, tmp_path: Path) -> None:
        """
        Storing again replaces the bundle.
        """
        cache = CollateralCache(tmp_path)
        cache.store(FMSPC, "platform", bundle())
        cache.store(FMSPC, "platform", bundle())
        assert len(list(tmp_path.iterdir())) == 1

    @pytest.mark.parametrize(
        "content",
        [
            b"garbage",
            b"",
            AUTOMATA_BUNDLE.read_bytes()[:1000],
            json.dumps({**bundle().to_dict(), "pck_crl": "00"}).encode(),
            json.dumps(
                {**bundle().to_dict(), "tcb_info": '{"fmspc":"00606a000000"}'}
            ).encode(),
            DCAP_QVL_COLLATERAL.read_bytes(),
            b"{" * (5 * 1024 * 1024),
        ],
    )
    def test_corrupt_file(self, tmp_path: Path, content: bytes) -> None:
        """
        A cache file that is malformed, lacks dates, is too large or holds
        another platform's bundle is ignored with a warning.
        """
        cache = CollateralCache(tmp_path)
        cache.path_for(FMSPC, "platform").write_bytes(content)
        with capturedLogs() as events:
            assert cache.load(FMSPC, "platform", now=NOW) is None
        warnings = [
            e
            for e in events
            if e.get("log_namespace") == "attestd._collateral_cache"
            and e["log_level"] == LogLevel.warn
        ]
        assert len(warnings) == 1
        assert str(cache.path_for(FMSPC, "platform")) == warnings[0]["path"]

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """
        A cache entry that cannot be read is ignored.
        """
        cache = CollateralCache(tmp_path)
        cache.path_for(FMSPC, "platform").mkdir()
        assert cache.load(FMSPC, "platform", now=NOW) is None

    def test_naive_now(self, tmp_path: Path) -> None:
        """
        A naive datetime is refused as a time.
        """
        with pytest.raises(ValueError, match="time zone"):
            CollateralCache(tmp_path).load(
                FMSPC, "platform", now=datetime(2025, 9, 1)
            )


class _CountingSource:
    """
    A source counting its calls, answering after a delay.
    """

    def __init__(self) -> None:
        self.calls = 0

    def collateral_for(self, fmspc: bytes, ca: str) -> Deferred[Collateral]:
        self.calls += 1
        answer: Deferred[Collateral] = Deferred()
        reactor.callLater(0.05, answer.callback, bundle())
        return answer


class TestCachingCollateralSource:
    @pytest_twisted.ensureDeferred
    async def test_serves_until_next_update(
        self, pccs: RunningPCCS, tmp_path: Path
    ) -> None:
        """
        The first request fetches; later ones are served from the cache
        with no request until the earliest nextUpdate, when it fetches
        again.
        """
        clock = Clock()
        clock.advance(NOW)
        cache = CollateralCache(tmp_path / "cache")
        source = CachingCollateralSource(client_for(pccs), cache, clock)
        assert bundle() == await source.collateral_for(FMSPC, "platform")
        assert pccs.fake.count("tcb") == 1
        assert bundle() == await source.collateral_for(FMSPC, "platform")
        clock.advance(EARLIEST_NEXT_UPDATE - 1 - NOW)
        assert bundle() == await source.collateral_for(FMSPC, "platform")
        assert len(pccs.fake.requests) == 4
        clock.advance(1)
        assert bundle() == await source.collateral_for(FMSPC, "platform")
        assert pccs.fake.count("tcb") == 2
        assert len(pccs.fake.requests) == 8

    @pytest_twisted.ensureDeferred
    async def test_survives_restart(
        self, pccs: RunningPCCS, tmp_path: Path
    ) -> None:
        """
        A new source over the same directory serves what an earlier one
        stored, without fetching.
        """
        clock = Clock()
        clock.advance(NOW)
        cache = CollateralCache(tmp_path)
        first = CachingCollateralSource(client_for(pccs), cache, clock)
        await first.collateral_for(FMSPC, "platform")
        second = CachingCollateralSource(
            client_for(pccs), CollateralCache(tmp_path), clock
        )
        assert bundle() == await second.collateral_for(FMSPC, "platform")
        assert pccs.fake.count("tcb") == 1

    @pytest_twisted.ensureDeferred
    async def test_corrupt_cache_refetched(
        self, pccs: RunningPCCS, tmp_path: Path
    ) -> None:
        """
        A corrupt cache file is fetched again and replaced.
        """
        clock = Clock()
        clock.advance(NOW)
        cache = CollateralCache(tmp_path)
        cache.path_for(FMSPC, "platform").write_text("{not json")
        source = CachingCollateralSource(client_for(pccs), cache, clock)
        assert bundle() == await source.collateral_for(FMSPC, "platform")
        assert pccs.fake.count("tcb") == 1
        assert bundle() == cache.load(FMSPC, "platform", now=NOW)

    @pytest_twisted.ensureDeferred
    async def test_concurrent_requests_share_a_fetch(
        self, tmp_path: Path
    ) -> None:
        """
        Requests for a platform while its collateral is being fetched wait
        for that one fetch.
        """
        counting = _CountingSource()
        source = CachingCollateralSource(
            counting, CollateralCache(tmp_path), Clock()
        )
        first = source.collateral_for(FMSPC, "platform")
        second = source.collateral_for(FMSPC, "platform")
        assert bundle() == await first
        assert bundle() == await second
        assert counting.calls == 1

    @pytest_twisted.ensureDeferred
    async def test_failure_reaches_every_waiter(
        self, pccs: RunningPCCS, tmp_path: Path
    ) -> None:
        """
        A failed fetch fails every request waiting for it, and nothing is
        cached.
        """
        pccs.fake.faults["tcb_info"] = Fault("status", status=503)
        clock = Clock()
        cache = CollateralCache(tmp_path)
        source = CachingCollateralSource(client_for(pccs), cache, clock)
        first = source.collateral_for(FMSPC, "platform")
        second = source.collateral_for(FMSPC, "platform")
        for waiting in (first, second):
            with pytest.raises(CollateralHTTPError):
                await waiting
        assert pccs.fake.count("tcb") == 1
        assert not cache.path_for(FMSPC, "platform").exists()

    @pytest_twisted.ensureDeferred
    async def test_unwritable_cache(self, tmp_path: Path) -> None:
        """
        Collateral that cannot be stored is still served, and the failure
        is logged.
        """
        blocker = tmp_path / "file"
        blocker.write_text("")
        source = CachingCollateralSource(
            _CountingSource(), CollateralCache(blocker / "cache"), Clock()
        )
        with capturedLogs() as events:
            assert bundle() == await source.collateral_for(FMSPC, "platform")
        assert attestd_events(events, LogLevel.error)


class TestBundleCollateralSource:
    @pytest_twisted.ensureDeferred
    async def test_serves_bundle(self) -> None:
        """
        The bundle is served for its FMSPC and either CA.
        """
        source = BundleCollateralSource(AUTOMATA_BUNDLE)
        assert source.fmspc == FMSPC
        assert bundle() == await source.collateral_for(FMSPC, "platform")
        assert bundle() == await source.collateral_for(FMSPC, "processor")

    @pytest_twisted.ensureDeferred
    async def test_other_fmspc(self) -> None:
        """
        Another FMSPC is refused, naming the file and both FMSPCs.
        """
        source = BundleCollateralSource(DCAP_QVL_COLLATERAL)
        with pytest.raises(
            CollateralFMSPCMismatchError,
            match=re.escape(
                "sgx_quote_collateral.json holds TCB Info for FMSPC "
                "00a067110000, not 00606a000000"
            ),
        ):
            await source.collateral_for(FMSPC, "platform")

    @pytest.mark.parametrize(
        "content", [b"{}", b"[]", AUTOMATA_BUNDLE.read_bytes()[:500]]
    )
    def test_malformed(self, tmp_path: Path, content: bytes) -> None:
        """
        A file that is not a bundle is a parse error naming the file.
        """
        path = tmp_path / "bundle.json"
        path.write_bytes(content)
        with pytest.raises(CollateralParseError, match=r"bundle\.json"):
            BundleCollateralSource(path)

    def test_missing(self, tmp_path: Path) -> None:
        """
        A missing file is an I/O error.
        """
        with pytest.raises(FileNotFoundError):
            BundleCollateralSource(tmp_path / "absent.json")


class TestVerifyFetched:
    @pytest_twisted.ensureDeferred
    async def test_konvera_quote(self, pccs: RunningPCCS) -> None:
        """
        Collateral fetched from the fake PCCS verifies the konvera quote
        at 1755236700, with status OutOfDate.
        """
        from attestd._dcap import verify_quote

        collateral = await client_for(pccs).fetch(FMSPC, "platform")
        verdict = verify_quote(KONVERA_QUOTE.read_bytes(), collateral, now=NOW)
        assert verdict.status.value == "OutOfDate"
        assert verdict.fmspc == FMSPC
