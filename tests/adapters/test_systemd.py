"""Whether the node is shutting down or rebooting, from systemd's queued jobs (the
``systemctl --full list-jobs`` layouts below are systemd 252's, Debian 12)."""

from __future__ import annotations

import pytest

from pvha.adapters.systemd import node_shutdown, parse_jobs

POWEROFF = """\
JOB UNIT                                 TYPE  STATE
1402 poweroff.target                     start waiting
1406 shutdown.target                     start waiting
1420 pvha-agent.service                  stop  running

3 jobs listed.
"""
REBOOT = """\
 JOB UNIT                   TYPE  STATE
 917 reboot.target          start waiting
 921 shutdown.target        start waiting
 935 pve-guests.service     stop  waiting

3 jobs listed.
"""


@pytest.mark.parametrize("text, expected", [
    (POWEROFF, (True, False)),
    (REBOOT, (True, True)),
    ("No jobs running.\n", (False, False)),
    ("JOB UNIT TYPE STATE\n12 pvha-agent.service restart running\n", (False, False)),
    ("12 shutdown.target.wants start waiting\n", (False, False)),  # not the unit itself
    ("", (False, False)),
])
def test_jobs_are_read_as_pve_ha_lrm_reads_them(text: str, expected: tuple[bool, bool]) -> None:
    assert parse_jobs(text) == expected


def test_the_probe_asks_systemctl_for_its_jobs() -> None:
    asked: list[list[str]] = []

    def run(argv: list[str]) -> str:
        asked.append(argv)
        return REBOOT

    assert node_shutdown(run) == (True, True)
    assert asked == [["systemctl", "--full", "list-jobs"]]
