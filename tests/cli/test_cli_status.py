"""``pvha status``: the pure entry builder (semantics 7.2, as pvha runs it) and the command
on status files (no API here: tests/fakepve/test_fakepve_status.py has the API side)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from pvha.config.faults import ConfigFault
from pvha.core.model import HAConfig, Resource
from pvha.status import (
    EXIT_API_FAILED,
    EXIT_NO_MANAGER,
    EXIT_NO_QUORUM,
    EXIT_OK,
    EXIT_QUORUM_UNKNOWN,
    EXIT_UNREADABLE,
    Fencing,
    Quorum,
    format_status_text,
    perl_localtime,
    status_entries,
    status_report,
    verbose_state,
)

NOW = 1_000_000.0
QUORATE = Quorum("node1", True)


def _t(ts: float) -> str:
    return f"T{int(NOW - ts)}"


def _config(*resources: Resource) -> HAConfig:
    return HAConfig(resources={r.sid: r for r in resources})


def _lines(*args: object, **kw: object) -> list[str]:
    kw.setdefault("now", NOW)
    kw.setdefault("fmt_time", _t)
    return format_status_text(status_entries(*args, **kw)).splitlines()  # type: ignore[arg-type]


MANAGER = {
    "master_node": "node1",
    "timestamp": NOW - 5,
    "node_status": {"node2": "online", "node1": "online", "node3": "maintenance"},
    "service_status": {
        "vm:101": {"state": "started", "node": "node1", "running": 1, "uid": "a"},
        "vm:102": {"state": "started", "node": "node2", "uid": "b"},
        "vm:103": {"state": "stopped", "node": "node2", "uid": "c"},
        "vm:104": {"state": "error", "node": "node1", "uid": "d"},
    },
}
LRM = {
    "node1": {"state": "active", "mode": "active", "timestamp": NOW - 3},
    "node2": {"state": "wait_for_agent_lock", "mode": "active", "timestamp": NOW - 40},
    "node3": {"state": "maintenance", "mode": "maintenance", "timestamp": NOW - 1},
}
CONFIG = _config(
    Resource("vm:101"),
    Resource("vm:102", state="stopped"),
    Resource("vm:103"),
    Resource("vm:104", state="disabled"),
    Resource("vm:105"),
    Resource("vm:106", state="ignored"),
)


def test_status_lines_like_ha_manager_with_pvha_fencing() -> None:
    report = status_report(MANAGER, LRM, CONFIG, now=NOW, quorum=QUORATE, fmt_time=_t)
    assert format_status_text(report.entries) == (
        "quorum OK\n"
        "master node1 (active, T5)\n"
        "fencing armed (fence-ack only for every node)\n"
        "lrm node1 (active, fence-ack only, T3)\n"
        "lrm node2 (old timestamp - dead?, fence-ack only, T40)\n"
        "lrm node3 (maintenance mode, fence-ack only, T1)\n"
        "service vm:101 (node1, started)\n"
        "service vm:102 (node2, starting)\n"
        "service vm:103 (node2, starting)\n"
        "service vm:104 (node1, clearing error flag)\n"
        "service vm:105 (---, queued)\n"
        "service vm:106 (---, ignored)\n"
    )
    assert report.exit_code == EXIT_OK
    service = next(e for e in report.entries if e["id"] == "service:vm:104")
    assert service["crm_state"] == "error" and service["request_state"] == "disabled"


def test_an_offline_node_is_not_shown_active_from_its_last_status() -> None:
    manager = {**MANAGER, "node_status": {"node1": "online", "node2": "unknown",
                                          "node3": "fence"}}
    lrm = {n: {"state": "active", "mode": "active", "timestamp": NOW - 3} for n in LRM}
    lines = format_status_text(status_report(manager, lrm, CONFIG, now=NOW, quorum=QUORATE,
                                             fmt_time=_t).entries).splitlines()
    assert "lrm node1 (active, fence-ack only, T3)" in lines
    assert "lrm node2 (executor not running: node offline, fence-ack only, T3)" in lines
    assert "lrm node3 (executor not running: node being fenced, fence-ack only, T3)" in lines


def test_the_word_watchdog_appears_nowhere() -> None:
    disarmed = {**MANAGER, "disarm": {"mode": "freeze", "state": "disarmed"}}
    lrm = {**LRM, "node1": {"state": "wait_for_agent_lock", "mode": "disarm",
                            "timestamp": NOW - 1}}
    for ms in (MANAGER, {**MANAGER, "timestamp": NOW - 500}, disarmed, {}):
        for fencing in (None, Fencing({"node1": ("ipmi",)})):
            entries = status_entries(ms, lrm, CONFIG, now=NOW, quorum=QUORATE, fencing=fencing)
            text = format_status_text(entries) + json.dumps(entries)
            assert "watchdog" not in text, text


def test_fencing_in_force_per_node() -> None:
    fencing = Fencing({"node1": ("ipmi",), "node3": ("ipmi", "pdu")})
    lines = _lines(MANAGER, LRM, CONFIG, quorum=QUORATE, fencing=fencing)
    assert lines[2] == ("fencing armed (fence device ipmi for node1; fence-ack only for node2; "
                        "fence devices ipmi then pdu for node3)")
    assert lines[3:6] == [
        "lrm node1 (active, fence device ipmi, T3)",
        "lrm node2 (old timestamp - dead?, fence-ack only, T40)",
        "lrm node3 (maintenance mode, fence devices ipmi then pdu, T1)",
    ]
    every = Fencing({n: ("ipmi",) for n in ("node1", "node2", "node3")})
    assert _lines(MANAGER, LRM, CONFIG, quorum=QUORATE, fencing=every)[2] == (
        "fencing armed (fence device ipmi for every node)")
    entries = status_entries(MANAGER, LRM, CONFIG, now=NOW, quorum=QUORATE, fencing=fencing)
    by_id = {e["id"]: e for e in entries}
    assert by_id["fencing"]["fencing"] == {"node1": "fence device ipmi",
                                           "node2": "fence-ack only",
                                           "node3": "fence devices ipmi then pdu"}
    assert by_id["lrm:node2"]["fencing"] == "fence-ack only"
    invalid = _lines(MANAGER, LRM, CONFIG, quorum=QUORATE, fencing=Fencing(invalid=True))
    assert invalid[3] == "lrm node1 (active, fence.cfg invalid, T3)"
    assert status_report(MANAGER, LRM, CONFIG, now=NOW, quorum=QUORATE,
                         fencing=Fencing(invalid=True)).exit_code == EXIT_UNREADABLE


def test_stopped_manager_says_so_and_the_nodes_are_not_dead() -> None:
    stopped = {**MANAGER, "pvha": {"stopped_at": NOW - 4, "master_since": NOW - 900}}
    report = status_report(stopped, LRM, CONFIG, now=NOW, quorum=QUORATE, fmt_time=_t)
    lines = format_status_text(report.entries).splitlines()
    assert lines[1:6] == [
        "master node1 (no pvha manager running since T4)",
        "fencing standby (fence-ack only for every node)",
        "lrm node1 (executor not running, fence-ack only, T3)",
        "lrm node2 (executor not running, fence-ack only, T40)",
        "lrm node3 (executor not running, fence-ack only, T1)",
    ]
    assert "dead?" not in "".join(lines)
    assert report.exit_code == EXIT_NO_MANAGER
    master = report.entries[1]
    assert master["running"] == 0 and master["manager_state"] == "stopped"
    assert master["stopped_at"] == NOW - 4


def test_stale_manager_and_the_round_interval_rule() -> None:
    stale = {**MANAGER, "timestamp": NOW - 31}
    report = status_report(stale, LRM, CONFIG, now=NOW, quorum=QUORATE, fmt_time=_t)
    assert format_status_text(report.entries).splitlines()[1] == (
        "master node1 (no pvha manager running since T31)")
    assert report.exit_code == EXIT_NO_MANAGER
    # rounds every 20 s: a manager is dead only after 3 missed rounds (60 s)
    slow = {**MANAGER, "timestamp": NOW - 50,
            "pvha": {"round_interval": 20, "master_since": NOW - 3600, "uid_seq": 7,
                     "last_online": {"node1": 1}}}
    lrm = {**LRM, "node1": {**LRM["node1"], "timestamp": NOW - 45}}
    report = status_report(slow, lrm, CONFIG, now=NOW, quorum=QUORATE, fmt_time=_t)
    lines = format_status_text(report.entries).splitlines()
    assert lines[1] == "master node1 (active, T50) - master since T3600"
    assert lines[3] == "lrm node1 (active, fence-ack only, T45)"
    assert report.exit_code == EXIT_OK
    assert report.entries[1]["master_since"] == NOW - 3600
    gone = {**slow, "timestamp": NOW - 61}
    assert status_report(gone, lrm, CONFIG, now=NOW, quorum=QUORATE).exit_code == EXIT_NO_MANAGER


def test_no_manager_status_at_all() -> None:
    report = status_report({}, {}, _config(Resource("vm:100")), now=NOW, quorum=QUORATE)
    assert format_status_text(report.entries).splitlines() == [
        "quorum OK",
        "master --- (no pvha manager running, no manager status found)",
        "fencing standby (fence-ack only)",
        "service vm:100 (---, queued)",
    ]
    assert report.exit_code == EXIT_NO_MANAGER


def test_never_quorum_ok_from_files_alone() -> None:
    for quorum in (None, Quorum.no_api(), Quorum.failed()):
        report = status_report(MANAGER, LRM, CONFIG, now=NOW, quorum=quorum)
        text = format_status_text(report.entries)
        assert "quorum OK" not in text
        assert report.entries[0]["quorate"] is None
    assert _lines(MANAGER, LRM, CONFIG, quorum=Quorum.no_api())[0] == (
        "quorum unknown (no API configured)")
    assert _lines(MANAGER, LRM, CONFIG, quorum=Quorum.failed())[0] == (
        "quorum unknown (cluster API failed)")
    codes = {q: status_report(MANAGER, LRM, CONFIG, now=NOW, quorum=q).exit_code
             for q in (Quorum.no_api(), Quorum.failed(), Quorum("node9", False))}
    assert codes == {Quorum.no_api(): EXIT_QUORUM_UNKNOWN, Quorum.failed(): EXIT_API_FAILED,
                     Quorum("node9", False): EXIT_NO_QUORUM}


def test_exit_code_priority() -> None:
    stopped = {**MANAGER, "pvha": {"stopped_at": NOW}}
    assert status_report(stopped, LRM, CONFIG, now=NOW, quorum=Quorum.failed(),
                         fencing=Fencing(invalid=True)).exit_code == EXIT_UNREADABLE
    assert status_report(stopped, LRM, CONFIG, now=NOW,
                         quorum=Quorum.failed()).exit_code == EXIT_API_FAILED
    assert status_report(stopped, LRM, CONFIG, now=NOW,
                         quorum=Quorum("n", False)).exit_code == EXIT_NO_QUORUM


def test_no_quorum_line_and_unreadable_lrm() -> None:
    manager = {**MANAGER, "service_status": {}}
    lines = _lines(manager, {}, _config(), quorum=Quorum("node9", False))
    assert lines[:4] == [
        "quorum No quorum on node 'node9'!",
        "master node1 (active, T5)",
        "fencing armed (fence-ack only for every node)",
        "lrm node1 (unable to read lrm status)",
    ]


def test_idle_master_and_disarmed_stack() -> None:
    manager = {
        "master_node": "node1",
        "timestamp": NOW - 50,
        "node_status": {},
        "disarm": {"mode": "ignore", "state": "disarmed"},
        "service_status": {"vm:101": {"state": "started", "node": "node1", "running": 1}},
    }
    report = status_report(manager, {}, _config(), now=NOW, quorum=QUORATE, fmt_time=_t,
                           crs_mode="static")
    assert format_status_text(report.entries).splitlines()[1:] == [
        "master node1 (idle, T50) - disarmed, resource mode: ignore - static load CRS",
        "fencing disarmed, resource mode: ignore (no fencing while disarmed)",
        "service vm:101 (node1, ignore)",
    ]
    assert report.exit_code == EXIT_OK  # idle: nothing configured, nothing to protect
    disarming = {**MANAGER, "disarm": {"mode": "freeze", "state": "disarming"}}
    lrm = {**LRM, "node1": {"state": "active", "mode": "disarm", "timestamp": NOW - 1}}
    lines = _lines(disarming, lrm, CONFIG, quorum=QUORATE)
    assert lines[1:4] == [
        "master node1 (active, T5) - disarming, resource mode: freeze",
        "fencing disarming, resource mode: freeze (fence-ack only for every node)",
        "lrm node1 (disarm mode, fencing disarmed, T1)",
    ]


def test_degraded_lines_from_config_faults_and_the_manager() -> None:
    fault = ConfigFault("resources.cfg", 12, "vm:102", "section 'vm:102' skipped: bad")
    manager = {**MANAGER, "pvha": {"degraded": [str(fault), "rules.cfg:3: other"]}}
    report = status_report(manager, LRM, CONFIG, now=NOW, quorum=QUORATE, faults=[fault])
    lines = format_status_text(report.entries).splitlines()
    assert lines[3:5] == [
        "HA degraded: resources.cfg:12: section 'vm:102' skipped: bad",
        "HA degraded: rules.cfg:3: other",
    ]
    assert lines[5].startswith("lrm node1 ")
    assert report.exit_code == EXIT_OK  # degraded but readable is operating
    first = report.entries[3]
    assert first == {"id": "degraded:1", "type": "degraded", "status": str(fault),
                     "source": "config", "file": "resources.cfg", "line": 12,
                     "key": "vm:102", "message": "section 'vm:102' skipped: bad"}
    assert report.entries[4]["source"] == "manager"
    # a stopped manager's list is history, not the state now
    stopped = {**manager, "pvha": {**manager["pvha"], "stopped_at": NOW - 1}}
    lines = _lines(stopped, LRM, CONFIG, quorum=QUORATE)
    assert [ln for ln in lines if ln.startswith("HA degraded")] == []


def test_defensive_reads_of_odd_files() -> None:
    odd = {**MANAGER, "pvha": "not a dict", "timestamp": "yesterday"}
    lines = _lines(odd, LRM, CONFIG, quorum=QUORATE)
    assert lines[1] == "master --- (no pvha manager running, no manager status found)"
    extra = {**LRM, "node1": {**LRM["node1"], "workers": {"vm:101": "UPID:x"},
                              "restart_counts": {"vm:101": 2}}}
    assert _lines(MANAGER, extra, CONFIG, quorum=QUORATE)[3] == (
        "lrm node1 (active, fence-ack only, T3)")
    weird = {**MANAGER, "pvha": {"round_interval": True, "stopped_at": "soon",
                                 "degraded": "x"}}
    assert _lines(weird, LRM, CONFIG, quorum=QUORATE)[1] == "master node1 (active, T5)"


def test_verbose_state_rules() -> None:
    res = Resource("vm:1", state="stopped")
    assert verbose_state(None, None, None, True) == "deleting"
    assert verbose_state(None, Resource("vm:1", state="ignored"), None, True) == "ignored"
    assert verbose_state({"state": "started"}, res, None, True) == "not found"
    assert verbose_state({"state": "started", "running": 1}, res, "n1", True) == "stopping"
    assert (
        verbose_state({"state": "started"}, res, "n1", True) == "starting"
    )  # running flag overrides
    assert (
        verbose_state({"state": "stopped"}, Resource("vm:1", state="disabled"), "n1", True)
        == "disabled"
    )
    assert verbose_state({"state": "migrate"}, res, "n1", True) == "migrate"


def test_guest_nodes_give_not_found_and_config_node() -> None:
    entries = status_entries(
        {},
        {},
        _config(Resource("vm:100"), Resource("vm:101")),
        now=NOW,
        guest_nodes={"vm:100": "node2"},
    )
    assert [e["status"] for e in entries if e["type"] == "service"] == [
        "vm:100 (node2, queued)", "vm:101 (---, not found)"]


def test_perl_localtime_shape() -> None:
    assert re.fullmatch(
        r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \d{4}", perl_localtime(1775152693)
    )


# --- the command, on files (no API configured: quorum unknown, exit 5 at best) -----------


@pytest.fixture(autouse=True)
def _no_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PVHA_HOSTS", "PVHA_SETTINGS", "PVHA_CONFIG_DIR", "PVHA_CFS_ROOT"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "empty-settings.toml"
    empty.touch()
    monkeypatch.setenv("PVHA_SETTINGS", str(empty))


def _write_status(cfg_dir: Path, *, pvha: dict[str, object] | None = None,
                  age: float = 0.0) -> float:
    now = time.time()
    manager = {
        "master_node": "node1",
        "timestamp": int(now - age),
        "node_status": {"node1": "online", "node2": "online"},
        "service_status": {"vm:101": {"state": "started", "node": "node1", "running": 1}},
        "pvha": pvha if pvha is not None else {"master_since": now - 100, "round_interval": 10},
    }
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "manager_status").write_text(json.dumps(manager))
    (cfg_dir / "lrm_status").mkdir(exist_ok=True)
    for node in ("node1", "node2"):
        (cfg_dir / "lrm_status" / node).write_text(json.dumps(
            {"state": "active", "mode": "active", "timestamp": int(now - age),
             "results": {}, "workers": {}}))
    return now


def test_status_command_reads_status_files(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "vm:101").exit_code == 0
    _write_status(cfg_dir)
    result = run("status")
    assert result.exit_code == EXIT_QUORUM_UNKNOWN, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "quorum unknown (no API configured)"
    assert re.fullmatch(r"master node1 \(active, .+\) - master since .+", lines[1])
    assert lines[2] == "fencing armed (fence-ack only for every node)"
    assert re.fullmatch(r"lrm node1 \(active, fence-ack only, .+\)", lines[3])
    assert lines[5:] == ["service vm:101 (node1, started)"]
    assert "quorum OK" not in result.stdout and "watchdog" not in result.stdout
    rows = json.loads(run("status", "--output-format", "json").stdout)
    assert [r["id"] for r in rows] == ["quorum", "master", "fencing", "lrm:node1", "lrm:node2",
                                       "service:vm:101"]
    assert rows[0]["quorate"] is None and rows[0]["reason"] == "no API configured"
    assert rows[1]["running"] == 1 and rows[1]["round_interval"] == 10
    assert yaml.safe_load(run("status", "--output-format", "yaml").stdout) == rows
    verbose = run("status", "--verbose").stdout
    assert 'full cluster state:\n{\n   "lrm_status" : {' in verbose


def test_status_fencing_wording_with_and_without_fence_cfg(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "vm:101").exit_code == 0
    _write_status(cfg_dir)
    before = run("status").stdout
    assert "fencing armed (fence-ack only for every node)\n" in before
    assert re.search(r"^lrm node2 \(active, fence-ack only, ", before, re.MULTILINE)
    (cfg_dir / "fence.cfg").write_text(
        "device ipmi fence_ipmilan ip=10.0.0.1 username=admin password=secret\n"
        "connect ipmi node=node1 ipport=623\n")
    result = run("status")
    assert "fencing armed (fence device ipmi for node1; fence-ack only for node2)\n" in \
        result.stdout, result.stdout
    assert re.search(r"^lrm node1 \(active, fence device ipmi, ", result.stdout, re.MULTILINE)
    assert re.search(r"^lrm node2 \(active, fence-ack only, ", result.stdout, re.MULTILINE)
    assert "secret" not in result.output
    rows = {r["id"]: r for r in json.loads(run("status", "--output-format", "json").stdout)}
    assert rows["lrm:node1"]["fencing"] == "fence device ipmi"
    (cfg_dir / "fence.cfg").write_text("device ipmi fence_ipmilan\nconnect pdu node=node1\n")
    broken = run("status")
    assert broken.exit_code == EXIT_UNREADABLE, broken.output
    assert re.search(r"^HA degraded: fence\.cfg:2: ", broken.stdout, re.MULTILINE), broken.stdout
    assert re.search(r"^lrm node1 \(active, fence\.cfg invalid, ", broken.stdout, re.MULTILINE)


def test_status_of_a_stopped_manager(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "vm:101").exit_code == 0
    now = _write_status(cfg_dir, pvha={"stopped_at": time.time() - 5, "round_interval": 10})
    result = run("status")
    assert result.exit_code != 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == f"master node1 (no pvha manager running since {perl_localtime(now - 5)})"
    assert lines[2] == "fencing standby (fence-ack only for every node)"
    assert re.fullmatch(r"lrm node1 \(executor not running, fence-ack only, .+\)", lines[3])
    assert "dead?" not in result.stdout


def test_status_of_a_manager_that_stopped_writing(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "vm:101").exit_code == 0
    now = _write_status(cfg_dir, age=600)
    result = run("status")
    assert result.exit_code != 0, result.output
    assert f"master node1 (no pvha manager running since {perl_localtime(int(now - 600))})" \
        in result.stdout.splitlines()
    assert "dead?" not in result.stdout


def test_status_shows_a_bad_section_and_every_other_resource(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    for sid in ("vm:100", "vm:101", "vm:102"):
        assert run("add", sid).exit_code == 0
    text = (cfg_dir / "resources.cfg").read_text()
    assert "vm: 101\n" in text
    (cfg_dir / "resources.cfg").write_text(text.replace("vm: 101\n", "vm: 101\n\tstate bogus\n"))
    line = text.splitlines().index("vm: 101") + 2  # the bad property line
    _write_status(cfg_dir)
    result = run("status")
    assert result.exit_code == EXIT_QUORUM_UNKNOWN, result.output  # degraded is no failure
    degraded = [ln for ln in result.stdout.splitlines() if ln.startswith("HA degraded")]
    assert len(degraded) == 1
    assert degraded[0].startswith(f"HA degraded: resources.cfg:{line}: section 'vm:101' skipped: ")
    assert "service vm:100 (---, queued)" in result.stdout
    assert "service vm:102 (---, queued)" in result.stdout
    # not "deleting": nobody removed it; the manager may still run it on its last settings
    assert "service vm:101 (node1, config invalid)" in result.stdout
    rows = json.loads(run("status", "--output-format", "json").stdout)
    fault = next(r for r in rows if r["type"] == "degraded")
    assert (fault["file"], fault["line"], fault["key"]) == ("resources.cfg", line, "vm:101")
    service = next(r for r in rows if r["id"] == "service:vm:101")
    assert service["config_fault"] == fault["status"] and service["crm_state"] == "started"
    # the CLI's writes stay strict
    assert run("add", "vm:103").exit_code == 1


def test_status_without_manager_status(run) -> None:  # type: ignore[no-untyped-def]
    assert run("add", "vm:100").exit_code == 0
    result = run("status")
    assert result.exit_code != 0, result.output
    assert result.stdout == (
        "quorum unknown (no API configured)\n"
        "master --- (no pvha manager running, no manager status found)\n"
        "fencing standby (fence-ack only)\n"
        "service vm:100 (---, queued)\n"
    )


def test_status_of_a_missing_config_dir(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("status")
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert "does not exist" in result.stderr and result.stdout == ""


def test_status_with_corrupt_manager_status(run, cfg_dir: Path) -> None:  # type: ignore[no-untyped-def]
    cfg_dir.mkdir()
    (cfg_dir / "manager_status").write_text("{not json")
    result = run("status")
    assert result.exit_code == 1 and "invalid JSON" in result.stderr, result.output


def test_agent_leases_in_the_fencing_per_node() -> None:
    fencing = Fencing({"node1": ("ipmi",)},
                      agents={"node1": "active", "node2": "lost", "node3": "stopped"})
    lines = _lines(MANAGER, LRM, CONFIG, quorum=QUORATE, fencing=fencing)
    assert lines[3:6] == [
        "lrm node1 (active, fence device ipmi or agent lease, T3)",
        "lrm node2 (old timestamp - dead?, agent lease (lost: node resetting), T40)",
        "lrm node3 (maintenance mode, fence-ack only (agent stopped), T1)",
    ]
    every = Fencing(agents=dict.fromkeys(("node1", "node2", "node3"), "active"))
    assert _lines(MANAGER, LRM, CONFIG, quorum=QUORATE, fencing=every)[2] == (
        "fencing armed (agent lease for every node)")


def test_the_lrm_line_says_when_the_lease_was_renewed() -> None:
    fencing = Fencing(agents=dict.fromkeys(("node1", "node2", "node3"), "active"),
                      renewed_ago={"node1": 2.2, "node2": 61.0})
    lines = _lines(MANAGER, LRM, CONFIG, quorum=QUORATE, fencing=fencing)
    assert lines[2] == "fencing armed (agent lease for every node)"
    assert lines[3:5] == ["lrm node1 (active, agent lease (renewed 2 s ago), T3)",
                          "lrm node2 (old timestamp - dead?, agent lease (renewed 61 s ago), T40)"]


def test_a_node_shutdown_in_the_fencing_per_node() -> None:
    fencing = Fencing(agents={"node1": "shutting-down", "node2": "stopped for node shutdown",
                              "node3": "active"}, renewed_ago={"node1": 1.0})
    lines = _lines(MANAGER, LRM, CONFIG, quorum=QUORATE, fencing=fencing)
    assert lines[3:5] == [
        "lrm node1 (active, agent lease (renewed 1 s ago, node shutting down), T3)",
        "lrm node2 (old timestamp - dead?, fence-ack only (agent stopped for node shutdown),"
        + " T40)"]
