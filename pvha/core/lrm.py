"""The LRM daemon role state machine and its executor logic (semantics §1.10, ``LRM.pm``).

One :class:`Lrm` per node; the shell calls :meth:`Lrm.do_one_iteration` with ``now``
each daemon round (False = exit). Resource commands run inline through the port's
resource operations (PVE's ``max_workers = 0`` path, which the simulator uses).
"""

from __future__ import annotations

from typing import Any

from pvha.core.crm import error_text as _msg
from pvha.core.crm import guarded_work
from pvha.core.executor import exec_resource_agent
from pvha.core.lrm_work import do_work, state_changes
from pvha.core.ports import CfsError, HaEnv
from pvha.core.states import ExitCode
from pvha.core.transitions import LRM, LrmEvent, next_state

_NOT_ACTIVE = ("stopped", "freeze", "error", "request_start")


class Lrm:
    def __init__(self, env: HaEnv, now: int) -> None:
        self.env = env
        self.now = now
        self.state = "startup"
        self.state_change_time = now
        self.workers: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.restart_tries: dict[str, int] = {}
        self.shutdown_request_time: int | None = None
        self.shutdown_errors = 0
        self.mode = "active"
        self.cluster_state_update = False
        self.active_idle_rounds = 0
        self.service_status: dict[str, dict[str, Any]] = {}
        self.node_status = "unknown"
        self.wd: str | None = None
        self.wrote_status_at_startup = False
        self.fire(LrmEvent.BOOT)

    def fire(self, event: LrmEvent) -> None:
        """The one setter of the LRM role: table-checked and logged."""
        new = next_state(LRM, self.state, event)
        if new == self.state:
            return
        self.env.log("info", f"status change {self.state} => {new}")
        self.state = new
        self.state_change_time = self.now

    # ------------------------------------------------------------------ shutdown
    def shutdown_request(self, now: int) -> None:
        """SIGTERM: apply the datacenter shutdown policy (§1.10 table)."""
        if self.shutdown_request_time is not None:
            return
        self.now = now
        env = self.env
        shutdown, reboot = env.is_node_shutdown()
        policy = (env.get_datacenter_settings().get("ha") or {}).get(
            "shutdown_policy"
        ) or "conditional"
        if shutdown:
            env.log("info", f"got shutdown request with shutdown policy '{policy}'")
        freeze_all = False
        maintenance = False
        if policy == "conditional":
            freeze_all = reboot
        elif policy == "freeze":
            freeze_all = True
        elif policy == "failover":
            freeze_all = False
        elif policy == "migrate":
            maintenance = True
        else:
            env.log("err", f"unknown shutdown policy '{policy}', fall back to conditional")
            freeze_all = reboot
        me = env.nodename()
        if not maintenance and shutdown:
            for sid in sorted(self.service_status):
                if self.service_status[sid].get("node") == me:
                    self.queue_resource_command(sid, None, "request_stop")
        self._apply_shutdown_mode(shutdown, reboot, policy, maintenance, freeze_all)
        self.shutdown_request_time = now
        try:
            if not self.update_lrm_status():
                raise CfsError("not quorate?")
        except CfsError as err:
            env.log("err", f"unable to update lrm status file - {_msg(err)}")

    def _apply_shutdown_mode(
        self, shutdown: bool, reboot: bool, policy: str, maintenance: bool, freeze_all: bool
    ) -> None:
        env = self.env
        if shutdown:
            kind = "reboot" if reboot else "shutdown"
            if self.mode == "maintenance":
                if maintenance:
                    env.log(
                        "info",
                        f"{kind} LRM, ignore maintenance policy, already in maintenance mode",
                    )
                else:
                    env.log(
                        "info",
                        f"{kind} LRM, ignore {policy} policy as manual maintenance mode is enabled",
                    )
            elif maintenance:
                env.log(
                    "info", f"{kind} LRM, doing maintenance, removing this node from active list"
                )
                self.mode = "maintenance"
            elif freeze_all:
                env.log("info", f"{kind} LRM, stop and freeze all services")
                self.mode = "restart"
            else:
                env.log("info", "shutdown LRM, stop all services")
                self.mode = "shutdown"
        elif self.mode == "maintenance":
            env.log(
                "info",
                "Restarting LRM in maintenance mode may be delayed until all services are moved",
            )
        else:
            env.log("info", "restart LRM, freeze all services")
            self.mode = "restart"

    # ------------------------------------------------------------------ status files
    def update_lrm_status(self) -> bool:
        if not self.env.quorate():
            return False
        status = {
            "state": self.state,
            "mode": self.mode,
            "results": dict(self.results),
            "timestamp": self.now,
        }
        try:
            self.env.write_lrm_status(status)
        except CfsError as err:
            self.env.log("err", f"unable to write lrm status file - {_msg(err)}")
            return False
        return True

    def update_service_status(self) -> bool:
        try:
            ms = self.env.read_manager_status()
        except CfsError as err:
            self.env.log("err", f"updating service status from manager failed: {_msg(err)}")
            return False
        self.service_status = ms.get("service_status") or {}
        me = self.env.nodename()
        self.node_status = (ms.get("node_status") or {}).get(me) or "unknown"
        if self.shutdown_request_time is None:
            request = (ms.get("node_request") or {}).get(me) or {}
            if request.get("maintenance"):
                self.mode = "maintenance"
            elif ms.get("disarm"):
                self.mode = "disarm"
            elif self.mode in ("maintenance", "disarm"):
                self.mode = "active"
        return True

    # ------------------------------------------------------------------ counting
    def active_service_count(self) -> int:
        me = self.env.nodename()
        count = 0
        for sd in self.service_status.values():
            if not sd.get("node"):
                continue
            if sd["node"] != me and sd.get("target") != me:
                continue
            state = sd.get("state")
            if state is None or state in _NOT_ACTIVE:
                continue
            count += 1
        return count

    def has_configured_service_on_local_node(self) -> bool:
        me = self.env.nodename()
        return any(sd.get("node") == me for sd in self.service_status.values())

    def get_protected_ha_agent_lock(self) -> bool:
        for _attempt in range(6):
            if self.env.get_ha_agent_lock():
                if self.wd is not None:
                    self.env.watchdog_update(self.wd)
                else:
                    self.wd = self.env.watchdog_open()
                return True
        return False

    def give_up_watchdog_protection(self) -> None:
        if self.wd is not None:
            self.env.watchdog_close(self.wd)
            self.wd = None

    # ------------------------------------------------------------------ round
    def do_one_iteration(self, now: int) -> bool:
        self.now = now
        self.cluster_state_update = self.env.cluster_state_update()
        return guarded_work(self.env, self.work)

    def work(self) -> bool:
        if not self.wrote_status_at_startup:
            if self.update_lrm_status():
                self.wrote_status_at_startup = True
            else:
                return self.shutdown_request_time is None
        self.update_service_status()
        state_changes(self)
        return do_work(self)

    # ------------------------------------------------------------------ workers
    def queue_resource_command(
        self, sid: str, uid: str | None, state: str, params: dict[str, Any] | None = None
    ) -> None:
        if state != "stopped" and uid and uid in self.results:
            return
        w = self.workers.get(sid)
        if w is not None:
            if w.get("pid"):
                return
            del self.workers[sid]
        self.workers[sid] = {
            "sid": sid,
            "uid": uid,
            "state": state,
            "params": params,
            "start_tries": 0,
        }

    def manage_resources(self) -> int:
        me = self.env.nodename()
        ss = self.service_status
        for sid in list(self.restart_tries):
            if sid not in ss:
                del self.restart_tries[sid]
        for sid in sorted(ss):
            sd = ss[sid]
            if not sd.get("node") or not sd.get("uid") or sd["node"] != me:
                continue
            state = sd.get("state")
            if state is None or state in ("recovery", "freeze", "request_start"):
                continue
            self.queue_resource_command(
                sid, sd["uid"], state, {"target": sd.get("target"), "timeout": sd.get("timeout")}
            )
        return self.run_workers()

    def run_workers(self) -> int:
        sc = self.env.read_service_config()
        workers = self.workers
        pending = sorted(
            (sid for sid, w in workers.items() if not w.get("pid")),
            key=lambda s: (-workers[s]["start_tries"], s),
        )
        for sid in pending:
            w = workers[sid]
            w["start_tries"] += 1
            try:
                res = exec_resource_agent(self, sid, sc.get(sid), w["state"], w.get("params") or {})
            except Exception as err:  # noqa: BLE001 - a failing worker reports, never kills the LRM
                self.env.log("err", str(err).rstrip("\n"))
                res = -1
            if w.get("uid") is not None:
                self.resource_command_finished(sid, w["uid"], res)
            else:
                self.stop_command_finished(sid, res)
        if pending:
            self._prune_results()
        return len(self.workers)

    def resource_command_finished(self, sid: str, uid: str, exit_code: int) -> None:
        w = self.workers.pop(sid, None)
        if w is None:
            return
        if exit_code == -1:
            self.env.log("err", f"resource agent {sid} finished - failed to execute")
        exit_code = self.handle_service_exitcode(sid, w["state"], exit_code)
        if exit_code == ExitCode.ETRY_AGAIN:
            return
        self.results[uid] = {"sid": w["sid"], "state": w["state"], "exit_code": int(exit_code)}

    def _prune_results(self) -> None:
        # PVE prunes after every finished command; the service status does not change
        # while workers run, so pruning once per batch keeps the same results in O(n).
        valid = {sd["uid"] for sd in self.service_status.values() if sd.get("uid")}
        self.results = {u: r for u, r in self.results.items() if u in valid}

    def stop_command_finished(self, sid: str, exit_code: int) -> None:
        if self.workers.pop(sid, None) is None:
            return
        if exit_code == -1:
            self.env.log("err", f"resource agent {sid} finished - failed to execute")
        if exit_code != 0:
            self.shutdown_errors += 1

    def handle_service_exitcode(self, sid: str, cmd: str, exit_code: int) -> int:
        sc = self.env.read_service_config()
        cd = sc.get(sid)
        max_restart = int(cd.get("max_restart", 1)) if cd else 0
        if cmd != "started":
            return exit_code
        if exit_code == ExitCode.SUCCESS:
            self.restart_tries[sid] = 0
            return exit_code
        if exit_code == ExitCode.ERROR:
            tries = self.restart_tries.setdefault(sid, 0)
            if tries >= max_restart:
                self.env.log(
                    "err", f"unable to start service {sid} on local node after {tries} retries"
                )
                self.restart_tries[sid] = 0
                return ExitCode.ERROR
            self.restart_tries[sid] = tries + 1
            self.env.log("warning", f"restart policy: retry number {tries + 1} for service '{sid}'")
            return ExitCode.ETRY_AGAIN
        return exit_code
