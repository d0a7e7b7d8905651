"""Guest actions on the node that owns the guest: start, stop, shutdown, reboot, migrate.

Each runs on node ``node`` (the node named in the URL, after proxying), checks what PVE
checks synchronously (errors raised as :class:`PveError`, 500 unless noted), then creates
a task that completes after ``Timing.task_seconds`` (``migrate_seconds`` for migrations)
and fails with PVE's exit status where PVE fails inside the task. The texts and the
qemu/lxc asymmetries follow pve-api-notes §3.1 and §3.4. The caller holds the cluster
lock. A task whose node powers off before it completes never applies its effect.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from pvha.fakepve.cluster import Cluster, GuestConf, conf_rel
from pvha.fakepve.tasks import Task
from pvha.fakepve.wire import PveError, param_error

NO_QUORUM = "cluster not ready - no quorum?"
_TYPES = {("qemu", "start"): "qmstart", ("qemu", "stop"): "qmstop",
          ("qemu", "shutdown"): "qmshutdown", ("qemu", "reboot"): "qmreboot",
          ("lxc", "start"): "vzstart", ("lxc", "stop"): "vzstop",
          ("lxc", "shutdown"): "vzshutdown", ("lxc", "reboot"): "vzreboot",
          ("qemu", "migrate"): "qmigrate", ("lxc", "migrate"): "vzmigrate"}


def _missing(node: str, kind: str, vmid: int) -> str:
    sub = "qemu-server" if kind == "qemu" else "lxc"
    return f"Configuration file 'nodes/{node}/{sub}/{vmid}.conf' does not exist"


def _load(c: Cluster, node: str, kind: str, vmid: int) -> GuestConf:
    conf = c.config_on(node, kind, vmid)
    if conf is None:
        raise PveError(500, _missing(node, kind, vmid))
    return conf


def _word(kind: str) -> str:
    return "VM" if kind == "qemu" else "CT"


def guest_action(c: Cluster, node: str, kind: str, vmid: int, action: str, user: str,
                 params: Mapping[str, str]) -> str:
    """``POST .../status/<action>``: sync checks, then a task; returns the UPID.

    lxc checks the running state synchronously (``check_running`` needs no config, so
    a missing config only fails in the task); qemu's ``check_running`` loads the config.
    """
    running = c.is_running(vmid, node)
    if action == "start":
        if not c.quorate(node):
            raise PveError(500, NO_QUORUM)
        if kind == "lxc" and running:
            raise PveError(500, f"CT {vmid} already running")
    elif action in ("stop", "shutdown") and kind == "lxc" and not running:
        raise PveError(500, f"CT {vmid} not running")
    elif action == "reboot":
        if kind == "qemu" and c.config_on(node, kind, vmid) is None:
            raise PveError(500, f"unable to find configuration file for VM {vmid} on node "
                                f"'{node}'")
        if not running:
            raise PveError(500, f"VM {vmid} not running")  # "VM" for a CT too, as PVE
    task = c.new_task(node, _TYPES[(kind, action)], str(vmid), user)
    fault = c.rt(vmid).faults.pop(action, None)
    if fault == "fail":
        c.later(c.timing.task_seconds, node, lambda: task.finish(
            f"{action} failed: {'QEMU' if kind == 'qemu' else 'lxc'} exited with code 1",
            c.clock()))
    elif fault != "hang":
        c.later(c.timing.task_seconds, node, lambda: _finish(c, task, node, kind, vmid, action))
    return task.upid


def _finish(c: Cluster, task: Task, node: str, kind: str, vmid: int, action: str) -> None:
    """The task's work, done when it completes (under the cluster lock)."""
    if not task.running:
        return
    c.refresh()
    conf = c.config_on(node, kind, vmid)
    rt = c.rt(vmid)
    word = _word(kind)
    if conf is None:
        if action == "start" or kind == "lxc":
            return task.finish(_missing(node, kind, vmid), c.clock())
        return task.finish(f"unable to find configuration file for VM {vmid} on node "
                           f"'{node}'", c.clock())
    running = node in rt.running
    if action == "start":
        if running:
            return task.finish(f"{word} {vmid} already running", c.clock())
        if c.lock_of(conf):
            return task.finish(f"{word} is locked ({c.lock_of(conf)})", c.clock())
        task.log(f"starting {word} {vmid} on {node}")
        rt.running.add(node)
        rt.qmp = None
        rt.started_at = c.clock()
        rt.fresh_boot()
    elif action in ("stop", "shutdown"):
        if running and c.lock_of(conf):
            return task.finish(f"{word} is locked ({c.lock_of(conf)})", c.clock())
        if running:
            task.log(f"{'stopping' if action == 'stop' else 'shutting down'} {word} {vmid}")
            rt.running.discard(node)
    elif action == "reboot":
        if not running:
            return task.finish(f"VM {vmid} not running", c.clock())
        rt.started_at = c.clock()
    c.refresh()
    task.finish(None, c.clock())


def agent_ping(c: Cluster, node: str, vmid: int) -> float:
    """``POST /nodes/{node}/qemu/{vmid}/agent/ping`` checks, as PVE's ``agent_cmd``: the
    config must enable the agent (``agent: 1`` or ``agent: enabled=1,...``), the VM must
    run, and its agent must answer. Returns 0 when it answers; else the seconds a hung
    agent keeps the request waiting before PVE's error (the caller waits, without the
    cluster lock, then answers ``QEMU guest agent is not running``). A paused or
    suspended VM's agent does not answer either."""
    conf = _load(c, node, "qemu", vmid)
    rt = c.rt(vmid)
    rt.pings += 1
    raw = conf.values.get("agent", "")
    enabled = raw.split(",")[0].removeprefix("enabled=") if raw else ""
    if enabled not in ("1", "on", "yes", "true"):
        raise PveError(500, "No QEMU guest agent configured")
    if node not in rt.running:
        raise PveError(500, f"VM {vmid} not running")
    if rt.agent != "ok" or rt.qmp is not None:
        return max(c.timing.agent_timeout, 0.0)
    return 0.0


def migrate(c: Cluster, node: str, kind: str, vmid: int, user: str,
            params: Mapping[str, str]) -> str:
    """``POST .../migrate``: sync checks as PVE, then a ``qmigrate``/``vzmigrate`` task."""
    target = params["target"]
    if target == node:
        raise param_error({"target": "target is local node."})
    if not c.quorate(node):
        raise PveError(500, NO_QUORUM)
    if target not in c.nodes:
        raise PveError(500, f"no such cluster node '{target}'")
    conf = _load(c, node, kind, vmid)
    rt = c.rt(vmid)
    if c.lock_of(conf) and kind == "qemu":  # lxc reports it in the task
        raise PveError(500, f"VM is locked ({c.lock_of(conf)})")
    running = node in rt.running
    online, restart = params.get("online") == "1", params.get("restart") == "1"
    if running and kind == "qemu" and not online:
        raise PveError(500, "can't migrate running VM without --online")
    if running and kind == "lxc" and not (online or restart):
        raise PveError(500, "can't migrate running container without --online or --restart")
    task = c.new_task(node, _TYPES[(kind, "migrate")], str(vmid), user)
    task.log(f"starting migration of {_word(kind)} {vmid} to node '{target}' "
             f"({c.nodes[target].ip})")
    if online and not running and kind == "qemu":
        task.log("VM isn't running. Doing offline migration instead.")
    locked = c.lock_of(conf)  # lxc: a locked CT fails inside the task
    if not locked:
        rt.lock = "migrate"
    fault = rt.faults.pop("migrate", None)
    if fault == "fail":
        def fail() -> None:
            if rt.lock == "migrate":
                rt.lock = None
            _abort(c, task, _duration(c.clock() - task.starttime), "injected failure")

        c.later(c.timing.migrate_seconds, node, fail)
    elif fault != "hang":  # a hung migration keeps the guest locked, as a real one
        c.later(c.timing.migrate_seconds, node, lambda: _finish_migrate(
            c, task, node, target, kind, vmid, online, restart, locked))
    return task.upid


def _finish_migrate(c: Cluster, task: Task, node: str, target: str, kind: str, vmid: int,
                    online: bool, restart: bool, locked: str | None) -> None:
    if not task.running:
        return
    c.refresh()
    rt = c.rt(vmid)
    if rt.lock == "migrate":
        rt.lock = None
    duration = _duration(c.clock() - task.starttime)
    running = node in rt.running
    if locked:
        return _abort(c, task, duration, f"CT is locked ({locked})")
    if not c.reachable(node, target):
        return _abort(c, task, duration, "Can't connect to destination address using public key")
    if running and kind == "lxc" and not restart:
        return _abort(c, task, duration, "lxc live migration is currently not implemented")
    try:  # the move_config_to_node rename, on the source node's view
        c.tree.rename(node, conf_rel(node, kind, vmid), conf_rel(target, kind, vmid))
    except OSError as exc:
        task.log(f"ERROR: moving config failed: {exc.strerror}")
        return task.finish("migration problems", c.clock())
    if running:
        rt.running.discard(node)
        rt.running.add(target)
        if kind == "lxc":  # restart mode: a fresh start on the target
            task.log(f"stopping CT {vmid} on {node}, starting on {target}")
            rt.started_at = c.clock()
    task.log(f"migration finished successfully (duration {duration})")
    c.refresh()
    task.finish(None, c.clock())


def _abort(c: Cluster, task: Task, duration: str, cause: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.clock()))
    task.log(f"{stamp} ERROR: migration aborted (duration {duration}): {cause}")
    task.finish("migration aborted", c.clock())


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def precondition(c: Cluster, node: str, kind: str, vmid: int,
                 params: Mapping[str, str]) -> dict[str, object]:
    """``GET .../migrate``: qemu snake_case keys, lxc kebab-case (PVE 9)."""
    if not c.quorate(node):
        raise PveError(500, NO_QUORUM)
    conf = _load(c, node, kind, vmid)
    rt = c.rt(vmid)
    if c.lock_of(conf):
        raise PveError(500, f"{_word(kind)} is locked ({c.lock_of(conf)})")
    others = [n for n in sorted(c.nodes) if n != node]
    running = int(node in rt.running)
    if kind == "qemu":
        return {"running": running, "allowed_nodes": others,
                "not_allowed_nodes": {n: {} for n in others}, "local_disks": [],
                "local_resources": [], "mapped-resources": [], "mapped-resource-info": {},
                "has-dbus-vmstate": 0}
    return {"running": running, "allowed-nodes": others, "not-allowed-nodes": {}}
