"""
Log events that say when the daemon's attestation is simulated.

Every event a daemon with simulated evidence emits through a
L{MarkedLogger} carries the field C{simulated=True}, and its text begins
with C{simulated: }, so that no line of its log can be taken for real
SGX attestation.
"""

from __future__ import annotations

from twisted.logger import Logger, LogLevel

#: What the text of every event of a simulated daemon begins with.
SIMULATED_PREFIX = "simulated: "


class MarkedLogger(Logger):
    """
    A logger whose events say "simulated" when the daemon's evidence is.

    @ivar simulated: Whether to mark the events.
    """

    def __init__(self, namespace: str, *, simulated: bool = False) -> None:
        """
        @param namespace: The events' namespace.
        @param simulated: Whether to mark them.
        """
        super().__init__(namespace=namespace)
        self.simulated = simulated

    def emit(
        self, level: LogLevel, format: str | None = None, **kwargs: object
    ) -> None:
        """
        Emit an event, marked when simulated.
        """
        if self.simulated:
            kwargs["simulated"] = True
            format = SIMULATED_PREFIX + (format or "")
        super().emit(level, format, **kwargs)
