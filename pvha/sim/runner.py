"""The simulation loop and command vocabulary (PVE ``Sim::TestHardware``, semantics §8.3-8.4)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pvha.core.crm import Crm
from pvha.core.lrm import Lrm
from pvha.sim.commands import node_cmd, service_cmd
from pvha.sim.env import SimEnv
from pvha.sim.hardware import Hardware, SimulationError
from pvha.sim.log import SimLog
from pvha.sim.scenario import Scenario

MAX_TIME = 10000
_SID = re.compile(r"^(vm|ct|fa):\d+$")


@dataclass
class NodeDaemons:
    crm_env: SimEnv
    lrm_env: SimEnv
    crm: Crm | None = None
    lrm: Lrm | None = None
    lrm_restart: bool = False
    crm_stop: bool = False


class Simulator:
    def __init__(self, scenario: Scenario) -> None:
        self.log = SimLog()
        self.hw = Hardware(scenario, self.log)
        self.cmdlist = [list(batch) for batch in scenario.cmdlist]
        self.d: dict[str, NodeDaemons] = {
            n: NodeDaemons(SimEnv(n, self.hw, "crm"), SimEnv(n, self.hw, "lrm"))
            for n in self.hw.nodes
        }
        self.loop_count = 0
        self.skip_rounds = {"crm": 0, "lrm": 0}
        # called after every node's daemon steps with the hardware (invariant checks in tests)
        self.observers: list[Callable[[Hardware], None]] = []
        # called after every single step that may change the simulated world, with the
        # hardware and the step's origin: ``<node>/crm`` or ``<node>/lrm`` (one daemon
        # iteration, including what its exit set off), ``hardware`` (the watchdog and BMC
        # checks after each node) and ``cmdlist`` (one executed command); pvha.sim.chaos
        # checks its invariants here. Hooks only look: a run logs the same with or without.
        self.step_hooks: list[Callable[[Hardware, str], None]] = []
        if self.hw.fencing is not None:
            self.hw.fencing.power_off_now = lambda n: self.hardware_cmd(f"power {n} off", "bmc")

    # ------------------------------------------------------------------ main loop
    def run(self) -> str:
        hw = self.hw
        hw.log("info", "starting simulation")
        last_cmd_time = 0
        next_cmd_at = 0
        while True:
            start = hw.cur_time
            nodes = sorted(self.d)
            looptime = max(hw.pvha.round_interval, 2 * len(nodes))
            if looptime >= 60:
                raise SimulationError("unable to simulate so many nodes")
            skip_crm, skip_lrm = self.skip_rounds["crm"] > 0, self.skip_rounds["lrm"] > 0
            if skip_crm:
                hw.log("info", "skipping CRM round", "run-loop")
            if skip_lrm:
                hw.log("info", "skipping LRM round", "run-loop")
            for node in nodes:
                if not skip_crm:
                    self._run_crm(node)
                    self._step(f"{node}/crm")
                if not skip_lrm:
                    self._run_lrm(node)
                    self._step(f"{node}/lrm")
                self._check_watchdogs(nodes)
                self._check_bmcs()
                self._step("hardware")
                for observe in self.observers:
                    observe(hw)
            for what in ("crm", "lrm"):
                if self.skip_rounds[what] > 0:
                    self.skip_rounds[what] -= 1
            if hw.cur_time - start < looptime:
                hw.cur_time = start + looptime
            if hw.cur_time > MAX_TIME:
                raise SimulationError("simulation end")
            for nd in self.d.values():
                nd.lrm_env.loop_start_hook(hw.cur_time)
                nd.crm_env.loop_start_hook(hw.cur_time)
            if hw.cur_time < next_cmd_at:
                continue
            if self.loop_count % 5 == 0:
                if not self.cmdlist:
                    if hw.cur_time - last_cmd_time > 500:
                        hw.log("info", "exit simulation - done")
                        return self.log.text()
                    batch: list[str] = []
                else:
                    batch = self.cmdlist.pop(0)
                for cmd in batch:
                    last_cmd_time = hw.cur_time
                    delay = re.match(r"^delay\s+(\d+)\s*$", cmd)
                    if delay:
                        hw.log("info", f"execute {cmd}", "cmdlist")
                        next_cmd_at = hw.cur_time + int(delay.group(1))
                        continue
                    skip = re.match(r"^skip-round\s+(crm|lrm)(?:\s+(\d+))?\s*$", cmd)
                    if skip:
                        hw.log("info", f"execute {cmd}", "cmdlist")
                        self.skip_rounds[skip.group(1)] = int(skip.group(2) or 1)
                        continue
                    self.hardware_cmd(cmd, "cmdlist")
                    self._step("cmdlist")
            self.loop_count += 1

    def _step(self, origin: str) -> None:
        for hook in self.step_hooks:
            hook(self.hw, origin)

    def _iterate(self, daemon: Crm | Lrm, env: SimEnv) -> bool:
        """One daemon iteration at the hardware clock (which it may push forward);
        False, logged, when the daemon asked to exit."""
        env.loop_start_hook(self.hw.cur_time)
        keep = daemon.do_one_iteration(env.cur_time)
        env.loop_end_hook()
        self.hw.cur_time = max(self.hw.cur_time, env.cur_time)
        if not keep:
            env.log("info", "exit (loop end)")
        return keep

    def _run_crm(self, node: str) -> None:
        nd = self.d[node]
        hw = self.hw
        if nd.crm is None or self._iterate(nd.crm, nd.crm_env):
            return
        nd.crm = None
        shutdown = hw.status[node].get("shutdown") or ""
        if shutdown == "reboot":
            self.hardware_cmd(f"power {node} off", "reboot")
            self.hardware_cmd(f"power {node} on", "reboot")
        elif shutdown == "shutdown":
            self.hardware_cmd(f"power {node} off", "shutdown")
        elif not nd.crm_stop:
            raise SimulationError("unexpected CRM exit - not implemented")
        nd.crm_stop = False

    def _run_lrm(self, node: str) -> None:
        nd = self.d[node]
        hw = self.hw
        if nd.lrm is None or self._iterate(nd.lrm, nd.lrm_env):
            return
        nd.lrm = None
        shutdown = hw.status[node].get("shutdown") or ""
        if nd.lrm_restart:
            if shutdown:
                raise SimulationError("lrm restart during shutdown - not implemented")
            nd.lrm_restart = False
            nd.lrm = Lrm(nd.lrm_env, nd.lrm_env.cur_time)
        elif shutdown in ("reboot", "shutdown"):
            self.hardware_cmd(f"crm {node} stop", shutdown)
        else:
            raise SimulationError("unexpected LRM exit - not implemented")

    def _check_watchdogs(self, nodes: list[str]) -> None:
        for n in nodes:
            if not self.hw.watchdog_check(n):
                self.hardware_cmd(f"power {n} off", "watchdog")
                self.hw.log("info", f"server '{n}' stopped by poweroff (watchdog)")
                self.d[n].crm = None
                self.d[n].lrm = None

    def _check_bmcs(self) -> None:
        """pvha extension: execute the off commands BMCs received (pvha.sim.fencing)."""
        if self.hw.fencing is None:
            return
        for n in self.hw.fencing.due(self.hw.cur_time):
            self.hardware_cmd(f"power {n} off", "bmc")

    # ------------------------------------------------------------------ commands
    def hardware_cmd(self, cmdstr: str, logid: str) -> None:
        parts = cmdstr.split()
        if len(parts) < 2:
            raise SimulationError(
                f"sim_hardware_cmd: no node or service for command specified: {cmdstr}"
            )
        cmd, objid, action, params = (
            parts[0],
            parts[1],
            (parts[2] if len(parts) > 2 else None),
            parts[3:],
        )
        if cmd == "service":
            if not _SID.match(objid):
                raise SimulationError(f"invalid resource id '{objid}'")
        elif objid not in self.d:
            raise SimulationError(f"sim_hardware_cmd: no such node '{objid}'")
        self.hw.log("info", f"execute {cmdstr}", logid)
        if cmd == "service":
            service_cmd(self, objid, action, params)
        else:
            node_cmd(self, cmd, objid, action, params)


def run_scenario(scenario: Scenario) -> str:
    """Run one scenario and return its log text."""
    return Simulator(scenario).run()
