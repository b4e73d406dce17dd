"""
The gramine source: quotes obtained inside the enclave through Gramine's
C{/dev/attestation} pseudo-files (C{--attestation gramine}).

Gramine's attestation interface (C{libos/src/fs/dev/attestation.c};
project reference 1.6): C{attestation_type} reads C{none} or C{dcap};
writing up to 64 bytes to C{user_report_data} sets the report data
(shorter writes are zero-padded); reading C{quote} returns a DCAP quote
of this enclave with that report data, from the Quoting Enclave through
AESM (at most C{SGX_QUOTE_MAX_SIZE}, 8192 bytes).  The files are global
to the process, so every write-then-read pair is made under one lock.
"""

from __future__ import annotations

import threading
from pathlib import Path

from attestd._quote import Quote
from attestd.errors import AttestationSourceError, ParseError
from attestd.sources._base import InProcessSource

#: Where Gramine mounts its attestation interface.
DEFAULT_ATTESTATION_DIR = Path("/dev/attestation")

#: Gramine's C{SGX_QUOTE_MAX_SIZE}: no quote it returns is larger.
MAX_QUOTE_SIZE = 8192

#: Size of C{user_report_data}.
REPORT_DATA_SIZE = 64

#: Serialises every use of the attestation files in this process.
_DEVICE_LOCK = threading.Lock()


class GramineSource(InProcessSource):
    """
    Mints RA-TLS certificates and fresh quotes with the quotes Gramine
    gives through C{/dev/attestation}.

    @ivar root: The attestation directory (C{/dev/attestation} inside
        Gramine).
    """

    kind = "gramine"

    def __init__(self, root: Path = DEFAULT_ATTESTATION_DIR) -> None:
        """
        Check that the directory offers DCAP quotes.

        @param root: The attestation directory.
        @raise AttestationSourceError: If it does not exist, or its
            C{attestation_type} is not C{dcap}.
        """
        self.root = root
        self._check_type()

    def _check_type(self) -> None:
        path = self.root / "attestation_type"
        if not self.root.is_dir():
            msg = (
                f"{self.root} does not exist: --attestation gramine works "
                "only inside a Gramine enclave (or give --attestation-dir)"
            )
            raise AttestationSourceError(msg)
        try:
            with path.open("rb") as f:
                raw = f.read(64)
        except OSError as e:
            msg = f"cannot read {path}: {e.strerror or e}"
            raise AttestationSourceError(msg) from e
        kind = raw.strip(b"\0 \t\r\n").decode("ascii", "replace")
        if kind != "dcap":
            msg = (
                f"{path} says {kind!r}, not 'dcap': this enclave cannot "
                'make DCAP quotes (set sgx.remote_attestation = "dcap" '
                "in the manifest)"
            )
            raise AttestationSourceError(msg)

    def quote(self, report_data: bytes) -> bytes:
        """
        Write C{report_data} to C{user_report_data} and read C{quote}.

        @param report_data: 64 bytes.
        @return: The quote, checked to be well-formed and to carry
            C{report_data}.
        @raise AttestationSourceError: If the files cannot be used, or the
            quote is empty, too large, malformed or for other report
            data.
        """
        if len(report_data) != REPORT_DATA_SIZE:
            msg = (
                f"report data is {REPORT_DATA_SIZE} bytes, not "
                f"{len(report_data)}"
            )
            raise AttestationSourceError(msg)
        user_report_data = self.root / "user_report_data"
        quote_path = self.root / "quote"
        # XXX: only tested against the fake of tests/fakes/devattestation.py,
        # never inside a real Gramine enclave (no SGX here).
        with _DEVICE_LOCK:
            path = user_report_data
            try:
                with user_report_data.open("wb") as f:
                    f.write(report_data)
                path = quote_path
                with quote_path.open("rb") as f:
                    data = f.read(MAX_QUOTE_SIZE + 1)
            except OSError as e:
                msg = f"{path}: {e.strerror or e}"
                raise AttestationSourceError(msg) from e
        if not data:
            msg = f"{quote_path} gave an empty quote"
            raise AttestationSourceError(msg)
        if len(data) > MAX_QUOTE_SIZE:
            msg = f"{quote_path} gave more than {MAX_QUOTE_SIZE} bytes"
            raise AttestationSourceError(msg)
        try:
            parsed = Quote.from_bytes(data)
        except ParseError as e:
            msg = f"{quote_path} gave a malformed quote: {e}"
            raise AttestationSourceError(msg) from e
        if parsed.report.report_data != report_data:
            msg = (
                f"{quote_path} gave a quote for other report data than "
                f"was written to {user_report_data}"
            )
            raise AttestationSourceError(msg)
        return data
