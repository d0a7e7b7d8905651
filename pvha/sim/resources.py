"""Simulated guests (PVE ``Sim::Resources``, ``VirtVM``, ``VirtCT``, ``VirtFail``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pvha.sim.env import SimEnv


class VirtVM:
    def is_locked(self, env: SimEnv, sid: str) -> str | None:
        cd = env.hw.service_config.get(sid) or {}
        return cd.get("lock")

    def check_running(self, env: SimEnv, sid: str) -> bool:
        return bool(env.hw.read_service_status(env.node).get(sid))

    def start(self, env: SimEnv, sid: str) -> None:
        lock = self.is_locked(env, sid)
        if lock:
            env.log("err", f"service '{sid}' locked ({lock}), unable to start!")
            return
        ss = env.hw.read_service_status(env.node)
        ss[sid] = 1
        env.hw.write_service_status(env.node, ss)

    def shutdown(self, env: SimEnv, sid: str, timeout: Any = None) -> None:
        lock = self.is_locked(env, sid)
        if lock:
            env.log("err", f"service '{sid}' locked ({lock}), unable to shutdown!")
            return
        ss = env.hw.read_service_status(env.node)
        ss[sid] = 0
        env.hw.write_service_status(env.node, ss)

    def migrate(self, env: SimEnv, sid: str, target: str, online: bool) -> bool:
        lock = self.is_locked(env, sid)
        if lock:
            env.log("err", f"service '{sid}' locked ({lock}), unable to migrate!")
            return False
        cmd = "migrate" if online else "relocate"
        env.log("info", f"service {sid} - start {cmd} to node '{target}'")
        if not online and self.check_running(env, sid):
            env.log("info", f"stopping service {sid} (relocate)")
            self.shutdown(env, sid)
            env.log("info", f"service status {sid} stopped")
        env.hw.change_service_location(sid, env.node, target)
        env.log("info", f"service {sid} - end {cmd} to node '{target}'")
        ss = env.hw.read_service_status(env.node)
        ss.pop(sid, None)
        env.hw.write_service_status(env.node, ss)
        return True


class VirtCT(VirtVM):
    def migrate(self, env: SimEnv, sid: str, target: str, online: bool) -> bool:
        if online and self.check_running(env, sid):
            env.log("warn", "unable to live migrate running container, fallback to relocate")
            online = False
        return super().migrate(env, sid, target, online)


_FA = re.compile(r"^\d(\d)(\d)?(\d)?(\d)?(\d)?")


def _decode(sid: str) -> tuple[int, int, int, int, int]:
    m = _FA.match(sid.split(":", 1)[1])
    groups = m.groups() if m else (None,) * 5
    start, mig, stop, exists, limit = groups
    return (
        int(start or 0),
        int(mig or 0),
        int(stop or 0),
        int(exists) if exists is not None else 1,
        int(limit or 0),
    )


class VirtFail(VirtVM):
    """``fa:abcdef``: b failing starts, c failing migrations, d unstoppable, f node limit."""

    def _fails(self, env: SimEnv, sid: str, kind: str, count: int, limit: int) -> bool:
        if limit == 0 or env.node == f"node{limit}":
            tries = env.hw.failure_tries[kind]
            tries[sid] = tries.get(sid, 0) + 1
            if count >= tries[sid]:
                return True
        env.hw.failure_tries[kind][sid] = 0
        return False

    def start(self, env: SimEnv, sid: str) -> None:
        start, _mig, _stop, _exists, limit = _decode(sid)
        if self._fails(env, sid, "start", start, limit):
            return
        super().start(env, sid)

    def shutdown(self, env: SimEnv, sid: str, timeout: Any = None) -> None:
        if _decode(sid)[2]:
            return
        super().shutdown(env, sid, timeout)

    def migrate(self, env: SimEnv, sid: str, target: str, online: bool) -> bool:
        _start, mig, _stop, _exists, limit = _decode(sid)
        if self._fails(env, sid, "migrate", mig, limit):
            return False
        return super().migrate(env, sid, target, online)


_PLUGINS = {"vm": VirtVM(), "ct": VirtCT(), "fa": VirtFail()}


def plugin_for(sid: str) -> VirtVM:
    return _PLUGINS[sid.split(":", 1)[0]]
