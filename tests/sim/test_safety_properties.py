"""Safety under random fault sequences: a guest never runs on two nodes at once, and a
service is only recovered after its node's agent lock was taken (design.md §4 rule 1)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from pvha.sim.hardware import Hardware, SimulationError
from pvha.sim.runner import Simulator
from pvha.sim.scenario import load_scenario

NODES = ("node1", "node2", "node3")
SIDS = ("vm:101", "vm:102", "ct:103", "vm:104")

node_cmd = st.builds(
    "{} {} {}".format,
    st.sampled_from(["power", "network"]),
    st.sampled_from(NODES),
    st.sampled_from(["on", "off"]),
) | st.builds(
    "{} {}".format, st.sampled_from(["reboot", "shutdown", "restart-lrm"]), st.sampled_from(NODES)
)
svc_cmd = st.builds(
    "service {} {}".format,
    st.sampled_from(SIDS),
    st.sampled_from(["started", "stopped", "disabled", "ignored"]),
) | st.builds(
    "service {} {} {}".format,
    st.sampled_from(SIDS),
    st.sampled_from(["migrate", "relocate"]),
    st.sampled_from(NODES),
)
maint_cmd = st.builds(
    "crm {} {}".format,
    st.sampled_from(NODES),
    st.sampled_from(["enable-node-maintenance", "disable-node-maintenance"]),
)
batches = st.lists(st.lists(node_cmd | svc_cmd | maint_cmd, max_size=3), min_size=1, max_size=6)


def _scenario_dir(tmp: Path, cmdlist: list[list[str]], policy: str) -> Path:
    d = tmp / "prop"
    d.mkdir(exist_ok=True)
    first = [f"power {n} on" for n in NODES]
    (d / "cmdlist").write_text(json.dumps([first, *cmdlist]))
    (d / "hardware_status").write_text(
        json.dumps({n: {"power": "off", "network": "off"} for n in NODES})
    )
    services = {sid: {"node": NODES[i % 3], "state": "started"} for i, sid in enumerate(SIDS)}
    (d / "service_config").write_text(json.dumps(services))
    (d / "manager_status").write_text("{}")
    (d / "datacenter.cfg").write_text(json.dumps({"ha": {"shutdown_policy": policy}}))
    return d


def _never_twice(hw: Hardware) -> None:
    for sid in SIDS:
        running = [n for n in NODES if hw.service_status.get(n, {}).get(sid)]
        assert len(running) <= 1, f"{sid} runs on {running} at t={hw.cur_time}"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(cmdlist=batches, policy=st.sampled_from(["conditional", "freeze", "failover", "migrate"]))
def test_guest_never_runs_twice(tmp_path: Path, cmdlist: list[list[str]], policy: str) -> None:
    sim = Simulator(load_scenario(_scenario_dir(tmp_path, cmdlist, policy)))
    sim.observers.append(_never_twice)
    try:
        log = sim.run()
    except SimulationError as err:
        # combinations PVE's simulator refuses as well (e.g. restart-lrm during a reboot)
        assert "not implemented" in str(err)
        reject()
    assert log.endswith("hardware: exit simulation - done\n")
    assert "got unexpected error" not in log
    # recovery only ever follows an acknowledged fence of the same node
    fenced: set[str] = set()
    for line in log.splitlines():
        if "fencing: acknowledged - got agent lock for node '" in line:
            fenced.add(line.rsplit("'", 2)[1])
        if "recover service '" in line and "from fenced node '" in line:
            node = line.split("from fenced node '")[1].split("'")[0]
            assert node in fenced, line
