"""What the two daemons (CRM and LRM, semantics §1.9-§1.10) share, below both of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pvha.core.ports import HaEnv


def guarded_work(env: HaEnv, work: Callable[[], bool]) -> bool:
    """Run one daemon round's ``work``; an exception is logged and the daemon goes on.

    PVE's simulator would abort the whole run here (e.g. a cfs error in the
    role-transition part); a daemon that keeps running is the safer choice.
    """
    try:
        return work()
    except Exception as err:  # noqa: BLE001 - the loop logs and goes on
        env.log("err", f"got unexpected error - {error_text(err)}")
        return True


def error_text(err: BaseException) -> str:
    """An error as PVE logs it: its message without the trailing newline."""
    return str(err).rstrip("\n")


def count_fenced_services(ss: Mapping[str, Mapping[str, Any]] | None, node: str) -> int:
    """How many services of ``ss`` (a service status, may be None) on ``node`` wait in
    ``fence``: a node with any must not act (no manager lock, no agent lock)."""
    return sum(
        1 for sd in (ss or {}).values() if sd.get("node") == node and sd.get("state") == "fence"
    )
