"""The real clock behind the ``Clock`` port (the simulator has a virtual one)."""

from __future__ import annotations

import time


class SystemClock:
    """Wall time, monotonic time and sleeping, straight from the operating system."""

    __slots__ = ()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
