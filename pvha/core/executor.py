"""What an LRM worker does for one command (semantics §1.10 ``exec_resource_agent``).

The guest operations themselves are port calls; the decision logic and exit codes
live here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pvha.core.states import ExitCode

if TYPE_CHECKING:
    from pvha.core.lrm import Lrm


def exec_resource_agent(
    lrm: Lrm, sid: str, cd: dict[str, Any] | None, cmd: str, params: dict[str, Any]
) -> int:
    env = lrm.env
    rtype = sid.split(":", 1)[0]
    if not env.resource_type_known(rtype):
        env.log("err", f"service type '{rtype}' not implemented")
        return ExitCode.EUNKNOWN_SERVICE_TYPE
    if not cd:
        env.log("err", f"missing resource configuration for '{sid}'")
        return ExitCode.EUNKNOWN_SERVICE
    if cmd == "error":
        env.log(
            "err",
            f"service {sid} is in an error state and needs manual intervention."
            " Look up 'ERROR RECOVERY' in the documentation.",
        )
        return ExitCode.SUCCESS
    if cd.get("node") != env.nodename():
        env.log("err", f"service '{sid}' not on this node")
        return ExitCode.EWRONG_NODE
    running = env.check_running(sid)
    if cmd == "started":
        if running:
            return ExitCode.SUCCESS
        env.log("info", f"starting service {sid}")
        env.start(sid)
        if env.check_running(sid):
            env.log("info", f"service status {sid} started")
            return ExitCode.SUCCESS
        env.log("warning", f"unable to start service {sid}")
        return ExitCode.ERROR
    if cmd in ("request_stop", "stopped"):
        if not running:
            return ExitCode.SUCCESS
        timeout = params.get("timeout")
        if timeout is not None:
            env.log("info", f"stopping service {sid} (timeout={timeout})")
        else:
            env.log("info", f"stopping service {sid}")
        env.shutdown(sid, timeout)
        if not env.check_running(sid):
            env.log("info", f"service status {sid} stopped")
            return ExitCode.SUCCESS
        env.log("info", f"unable to stop service {sid} (still running)")
        return ExitCode.ERROR
    if cmd in ("migrate", "relocate", "request_start_balance"):
        target = params.get("target")
        if target is None:
            raise ValueError(f"{cmd} '{sid}' failed - missing target")
        if cd.get("node") == target:
            return ExitCode.SUCCESS
        if cmd == "request_start_balance" and running:
            env.log("info", f"ignoring rebalance-on-start for service {sid} - already running")
            return ExitCode.IGNORED
        if not env.migrate(sid, target, cmd == "migrate"):
            env.log("err", f"service {sid} not moved (migration error)")
            return ExitCode.ERROR
        return ExitCode.SUCCESS
    env.log("err", f"implement me (cmd '{cmd}')")
    return ExitCode.EUNKNOWN_COMMAND
