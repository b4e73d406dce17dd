"""
Bounded operations on an attestation device.

Reading Gramine's C{/dev/attestation} files can block for as long as the
quoting service behind them takes, and forever if it is stuck (or if the
files are FIFOs nobody serves).  A thread blocked in C{open} or C{read}
cannot be interrupted, so L{BoundedDevice} runs each operation in a
daemon thread of its own and waits for it with a deadline: the caller
gets an L{AttestationTimeoutError} naming the file the operation was
blocked on, and a stuck thread never keeps the process from exiting.

Operations on one device run one at a time.  While an operation that
timed out is still stuck, every later one fails at once with an
L{AttestationBusyError} rather than queueing behind it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from attestd.errors import (
    AttestationBusyError,
    AttestationSourceError,
    AttestationTimeoutError,
    ConfigurationError,
)

#: Default of C{--attestation-timeout}, in seconds.
DEFAULT_ATTESTATION_TIMEOUT = 30.0

#: Largest C{--attestation-timeout}: one hour.
MAX_ATTESTATION_TIMEOUT = 3600.0

_T = TypeVar("_T")


def check_timeout(timeout: float) -> float:
    """
    Check an attestation timeout.

    @param timeout: Seconds.
    @return: C{timeout}.
    @raise ConfigurationError: Unless it is finite, more than zero and at
        most L{MAX_ATTESTATION_TIMEOUT}.
    """
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_ATTESTATION_TIMEOUT):
        msg = (
            f"the attestation timeout must be more than 0 and at most "
            f"{MAX_ATTESTATION_TIMEOUT:g} seconds, not {timeout!r}"
        )
        raise ConfigurationError(msg)
    return timeout


class Progress:
    """
    Where an operation is: the file and the step it is blocked on, if it
    is.

    @ivar where: The file, as text.
    @ivar doing: The step (C{"opening"}, C{"reading"}, ...).
    """

    def __init__(self) -> None:
        self.where = "the attestation device"
        self.doing = "starting"

    def at(self, path: Path, doing: str) -> None:
        """
        Note that the operation now works on C{path}.

        @param path: The file.
        @param doing: What it does there.
        """
        self.where = str(path)
        self.doing = doing


class _Operation(Generic[_T]):
    """
    One operation's thread and outcome.

    @ivar progress: Where it is.
    @ivar finished: Whether its function returned or raised.
    @ivar result: What it returned.
    @ivar error: What it raised.
    @ivar started: When it began (monotonic seconds).
    """

    def __init__(self) -> None:
        self.progress = Progress()
        self.finished = False
        self.done = threading.Event()
        self.result: _T | None = None
        self.error: BaseException | None = None
        self.started = time.monotonic()


class _DeviceState:
    """
    What every L{BoundedDevice} of one directory shares.

    @ivar turn: Held from the start of an operation until its thread
        ends (taken by the caller, released by the thread).
    @ivar guard: Protects C{stuck}.
    @ivar stuck: The operation that timed out and has not ended since.
    """

    def __init__(self) -> None:
        self.turn = threading.Lock()
        self.guard = threading.Lock()
        self.stuck: _Operation[object] | None = None


_STATES: dict[str, _DeviceState] = {}
_STATES_LOCK = threading.Lock()


def _state_for(root: Path) -> _DeviceState:
    key = str(root.absolute())
    with _STATES_LOCK:
        state = _STATES.get(key)
        if state is None:
            state = _STATES[key] = _DeviceState()
        return state


class BoundedDevice:
    """
    Runs operations on one attestation directory one at a time, each in
    a daemon thread, waiting at most L{timeout} seconds for each.

    @ivar root: The directory.
    @ivar timeout: Seconds an operation (and a wait for its turn) may
        take.
    """

    def __init__(self, root: Path, timeout: float) -> None:
        """
        @param root: The directory.
        @param timeout: Seconds, see L{check_timeout}.
        @raise ConfigurationError: If C{timeout} is not acceptable.
        """
        self.root = root
        self.timeout = check_timeout(timeout)
        self._state = _state_for(root)

    def _refuse_if_stuck(self) -> None:
        with self._state.guard:
            stuck = self._state.stuck
        if stuck is not None:
            waited = time.monotonic() - stuck.started
            msg = (
                f"attestation device busy: an earlier operation has been "
                f"stuck {stuck.progress.doing} {stuck.progress.where} for "
                f"{waited:.0f} s"
            )
            raise AttestationBusyError(msg)

    def run(self, operation: Callable[[Progress], _T]) -> _T:
        """
        Run C{operation} in a daemon thread and wait for it.

        @param operation: Does the device I/O; it reports where it is on
            the L{Progress} it is given.
        @return: What C{operation} returned.
        @raise AttestationBusyError: If an earlier operation is stuck, or
            no turn came within the timeout.
        @raise AttestationTimeoutError: If C{operation} did not finish
            within the timeout; it goes on in its thread, and the device
            is busy until it ends.
        @raise BaseException: What C{operation} raised.
        """
        state = self._state
        self._refuse_if_stuck()
        if not state.turn.acquire(timeout=self.timeout):
            self._refuse_if_stuck()
            msg = (
                f"attestation device busy: {self.root} gave no turn "
                f"within {self.timeout:g} s"
            )
            raise AttestationBusyError(msg)
        job: _Operation[_T] = _Operation()

        def work() -> None:
            try:
                job.result = operation(job.progress)
            except BaseException as e:  # noqa: BLE001 (handed to the caller)
                job.error = e
            finally:
                with state.guard:
                    job.finished = True
                    if state.stuck is job:
                        state.stuck = None
                state.turn.release()
                job.done.set()

        thread = threading.Thread(
            target=work, name=f"attestd device {self.root}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as e:
            state.turn.release()
            msg = f"cannot start a thread for {self.root}: {e}"
            raise AttestationSourceError(msg) from e
        if not job.done.wait(self.timeout):
            with state.guard:
                timed_out = not job.finished
                if timed_out:
                    state.stuck = job  # type: ignore[assignment]
            if timed_out:
                progress = job.progress
                msg = (
                    f"{progress.where}: no answer within {self.timeout:g} s "
                    f"while {progress.doing} it (the attestation device is "
                    "stuck; see --attestation-timeout)"
                )
                raise AttestationTimeoutError(msg)
            job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]
