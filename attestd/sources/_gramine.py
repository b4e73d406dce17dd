"""
The gramine source: quotes obtained inside the enclave through Gramine's
C{/dev/attestation} pseudo-files (C{--attestation gramine}).

Gramine's attestation interface (C{libos/src/fs/dev/attestation.c};
project reference 1.6): C{attestation_type} reads C{none} or C{dcap};
writing up to 64 bytes to C{user_report_data} sets the report data
(shorter writes are zero-padded); reading C{quote} returns a DCAP quote
of this enclave with that report data, from the Quoting Enclave through
AESM (at most C{SGX_QUOTE_MAX_SIZE}, 8192 bytes).  The files are global
to the process, so every write-then-read pair is made alone, and each
is bounded by the attestation timeout (L{attestd.sources._device}).
The files are opened as they are, never created: a missing one is
reported as missing.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from attestd._quote import Quote
from attestd.errors import AttestationSourceError, ParseError
from attestd.sources._base import InProcessSource
from attestd.sources._device import (
    DEFAULT_ATTESTATION_TIMEOUT,
    BoundedDevice,
    Progress,
)

#: Where Gramine mounts its attestation interface.
DEFAULT_ATTESTATION_DIR = Path("/dev/attestation")

#: Gramine's C{SGX_QUOTE_MAX_SIZE}: no quote it returns is larger.
MAX_QUOTE_SIZE = 8192

#: Size of C{user_report_data}.
REPORT_DATA_SIZE = 64

#: Bound on what C{attestation_type} is read for.
_TYPE_SIZE = 64


def _open(path: Path, flags: int, progress: Progress) -> int:
    """
    Open an existing attestation file (never create it).

    @raise AttestationSourceError: If it is missing or cannot be opened.
    """
    progress.at(path, "opening")
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENOENT:
            msg = (
                f"{path} is missing: this is not Gramine's attestation "
                "interface (is sgx.remote_attestation set in the manifest?)"
            )
        else:
            msg = f"{path}: {e.strerror or e}"
        raise AttestationSourceError(msg) from e


def _read(path: Path, limit: int, progress: Progress) -> bytes:
    """
    Read up to C{limit} bytes of C{path}, until its end.

    @raise AttestationSourceError: If it cannot be read.
    """
    fd = _open(path, os.O_RDONLY, progress)
    progress.at(path, "reading")
    parts: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = os.read(fd, limit - size)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    except OSError as e:
        msg = f"{path}: {e.strerror or e}"
        raise AttestationSourceError(msg) from e
    finally:
        os.close(fd)
    return b"".join(parts)


def _write(path: Path, data: bytes, progress: Progress) -> None:
    """
    Write C{data} to the existing file C{path}.

    @raise AttestationSourceError: If it cannot be written.
    """
    fd = _open(path, os.O_WRONLY, progress)
    progress.at(path, "writing")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        msg = f"{path}: {e.strerror or e}"
        raise AttestationSourceError(msg) from e
    finally:
        os.close(fd)


class GramineSource(InProcessSource):
    """
    Mints RA-TLS certificates and fresh quotes with the quotes Gramine
    gives through C{/dev/attestation}.

    @ivar root: The attestation directory (C{/dev/attestation} inside
        Gramine).
    @ivar device: Runs the operations on it, bounded by the timeout.
    """

    kind = "gramine"

    def __init__(
        self,
        root: Path = DEFAULT_ATTESTATION_DIR,
        *,
        timeout: float = DEFAULT_ATTESTATION_TIMEOUT,
    ) -> None:
        """
        Check that the directory offers DCAP quotes.

        @param root: The attestation directory.
        @param timeout: Seconds each operation on it may take (more than
            zero, finite).
        @raise AttestationSourceError: If it does not exist, its
            C{attestation_type} is not C{dcap}, or reading it timed out.
        @raise attestd.errors.ConfigurationError: If C{timeout} is not
            acceptable.
        """
        self.root = root
        self.device = BoundedDevice(root, timeout)
        self._check_type()

    def _check_type(self) -> None:
        path = self.root / "attestation_type"
        if not self.root.is_dir():
            msg = (
                f"{self.root} does not exist: --attestation gramine works "
                "only inside a Gramine enclave (or give --attestation-dir)"
            )
            raise AttestationSourceError(msg)
        raw = self.device.run(lambda p: _read(path, _TYPE_SIZE, p))
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
        @raise AttestationSourceError: If the files are missing or cannot
            be used, or the quote is empty, too large, malformed or for
            other report data.
        @raise attestd.errors.AttestationTimeoutError: If the device did
            not answer within the timeout.
        @raise attestd.errors.AttestationBusyError: If an earlier
            operation is still stuck.
        """
        if len(report_data) != REPORT_DATA_SIZE:
            msg = (
                f"report data is {REPORT_DATA_SIZE} bytes, not "
                f"{len(report_data)}"
            )
            raise AttestationSourceError(msg)
        user_report_data = self.root / "user_report_data"
        quote_path = self.root / "quote"

        def exchange(progress: Progress) -> bytes:
            _write(user_report_data, report_data, progress)
            return _read(quote_path, MAX_QUOTE_SIZE + 1, progress)

        # XXX: only tested against the fake of tests/fakes/devattestation.py,
        # never inside a real Gramine enclave (no SGX here).
        data = self.device.run(exchange)
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
