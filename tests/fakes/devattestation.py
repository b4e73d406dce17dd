"""
A stand-in for Gramine's C{/dev/attestation} (C{libos/src/fs/dev/
attestation.c}), driven by a simulated quoting enclave, so that attestd's
gramine source runs here unchanged against a directory of its own.

The directory holds:

  - C{attestation_type}: a regular file, C{dcap} (or what the test
    asks for);
  - C{user_report_data}: a FIFO.  Whatever a writer puts there between
    two quote reads becomes the report data, cut to 64 bytes or
    zero-padded to 64 as Gramine does;
  - C{quote}: a FIFO.  Each time it is opened for reading, a background
    thread writes a quote of the simulated enclave carrying the current
    report data, then closes it (end of file).

The fake keeps the read end of C{user_report_data} open all along, so a
writer never waits; the data a writer has written and closed is in the
pipe before it can open C{quote}, so the quote always carries it.  Unlike
Gramine, two writes with no quote read between them are taken as one
(concatenated), C{user_report_data} cannot be read back, and a second
quote read with no write before it may end early (see
L{FakeAttestationDevice._next_reader}); attestd does none of these.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from types import TracebackType

from attestd._simulated import SimulatedQuotingEnclave

#: Size of Gramine's report data.
REPORT_DATA_SIZE = 64


class FakeAttestationDevice:
    """
    A fake C{/dev/attestation} directory, served while it is entered as a
    context manager (or between L{start} and L{stop}).

    @ivar root: The directory.
    @ivar quoting_enclave: Signs the quotes.
    @ivar attestation_type: What C{attestation_type} says.
    @ivar quotes_served: How many quotes were written.
    @ivar report_data_seen: The report data of each quote served.
    """

    def __init__(
        self,
        root: Path,
        quoting_enclave: SimulatedQuotingEnclave,
        *,
        attestation_type: str = "dcap",
    ) -> None:
        self.root = root
        self.quoting_enclave = quoting_enclave
        self.attestation_type = attestation_type
        self.quotes_served = 0
        self.report_data_seen: list[bytes] = []
        self._report_data = bytes(REPORT_DATA_SIZE)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._report_fd: int | None = None

    @property
    def quote_path(self) -> Path:
        return self.root / "quote"

    @property
    def user_report_data_path(self) -> Path:
        return self.root / "user_report_data"

    def start(self) -> None:
        """
        Make the directory and its files, and serve quotes.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "attestation_type").write_text(self.attestation_type)
        os.mkfifo(self.user_report_data_path, 0o600)
        os.mkfifo(self.quote_path, 0o600)
        self._report_fd = os.open(
            self.user_report_data_path, os.O_RDONLY | os.O_NONBLOCK
        )
        self._thread = threading.Thread(
            target=self._serve, name="fake /dev/attestation", daemon=True
        )
        self._thread.start()

    def _take_report_data(self) -> bool:
        """
        Take what was written to C{user_report_data} since the last quote
        as the report data (cut or zero-padded to 64 bytes).

        @return: Whether anything was written.
        """
        assert self._report_fd is not None
        parts = []
        while True:
            try:
                chunk = os.read(self._report_fd, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            parts.append(chunk)
        written = b"".join(parts)
        if written:
            self._report_data = written[:REPORT_DATA_SIZE].ljust(
                REPORT_DATA_SIZE, b"\0"
            )
        return bool(written)

    def _serve(self) -> None:
        fd: int | None = None
        while not self._stopping.is_set():
            if fd is None:
                # Blocks until a reader opens the quote (or stop() does).
                fd = os.open(self.quote_path, os.O_WRONLY)
                if self._stopping.is_set():
                    os.close(fd)
                    return
                self._take_report_data()
            self._write_quote(fd)
            fd = self._next_reader()

    def _write_quote(self, fd: int) -> None:
        """
        Write the quote for the current report data to C{fd} and close
        it: the reader then sees the end of the quote.
        """
        try:
            quote = self.quoting_enclave.quote_for(self._report_data)
            self.report_data_seen.append(self._report_data)
            self.quotes_served += 1
            view = memoryview(quote)
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BrokenPipeError:
                    break
        finally:
            os.close(fd)

    def _next_reader(self) -> int | None:
        """
        Wait until the reader of the quote just served has left, or the
        next reader has come.

        A writer that opened the FIFO again while that reader still had
        it open would be joined to it, and the reader would never see the
        end of the quote.  So the FIFO is opened without blocking: ENXIO
        means no reader is left (the next open blocks for the next one).
        A reader that is there is the next one if new report data was
        written since (quotes are read one at a time after a write, as
        the source's lock ensures): it is served on this descriptor.
        Otherwise it is the old reader, and the descriptor is closed at
        once, which only lets its read end sooner.

        @return: A descriptor for the next reader, or L{None}.
        """
        while not self._stopping.is_set():
            try:
                probe = os.open(self.quote_path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    return None
                raise
            if self._take_report_data():
                os.set_blocking(probe, True)
                return probe
            os.close(probe)
            self._stopping.wait(0.001)
        return None

    def stop(self) -> None:
        """
        Stop serving and close the read end of C{user_report_data}.
        """
        self._stopping.set()
        if self._thread is not None:
            # Opening the quote for reading wakes the serving thread if it
            # waits for a reader; it then sees the stop and leaves.
            try:
                fd = os.open(self.quote_path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
            else:
                self._thread.join(10)
                os.close(fd)
            self._thread = None
        if self._report_fd is not None:
            os.close(self._report_fd)
            self._report_fd = None

    def __enter__(self) -> FakeAttestationDevice:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
