"""The fence-agent runner against small fake agents (real processes, no BMC)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import pytest

from pvha.errors import FenceDeviceConfigError, FenceDeviceError, FenceTimeoutError
from pvha.fence.agent import AgentRunner, FenceAgentDevice, agent_stdin, find_agent
from pvha.fence.config import parse_fence_config
from pvha.fence.device import PowerState, redact, resolve_secrets
from pvha.fence.fencer import FencePolicy, Fencer

SECRET = "s3cr3t-Pa55"

# A fake agent: records argv and stdin, then behaves as its options say. It echoes the
# password on failure, like a careless agent would, to prove pvha redacts it.
FAKE_AGENT = f"""#!{sys.executable}
import json, os, subprocess, sys, time
data = sys.stdin.read()
opts = dict(l.split("=", 1) for l in data.splitlines() if "=" in l)
with open(os.environ["FAKE_RECORD"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "stdin": data}}) + "\\n")
mode = opts.get("mode", "ok")
if mode == "hang":
    child = subprocess.Popen(["sleep", "60"])
    open(os.environ["FAKE_RECORD"] + ".child", "w").write(str(child.pid))
    time.sleep(60)
if mode == "fail":
    print("Failed: login with password " + opts.get("password", "?") + " refused")
    sys.exit(1)
if opts["action"] == "status":
    sys.exit(2 if os.path.exists(os.environ["FAKE_RECORD"] + ".off") else 0)
if opts["action"] == "off":
    open(os.environ["FAKE_RECORD"] + ".off", "w").close()
    print("Success: Powered OFF")
"""


@pytest.fixture()
def agent_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    agent = bindir / "fence_fake"
    agent.write_text(FAKE_AGENT)
    agent.chmod(0o755)
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record"))
    return bindir


def _records(agent_dir: Path) -> list[dict[str, object]]:
    path = agent_dir.parent / "record"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _device(agent_dir: Path, extra: str = "") -> FenceAgentDevice:
    cfg = parse_fence_config(
        f"device d fence_fake ip=1.2.3.4 password={SECRET} action=reboot"
        f"\nconnect d node=n1 plug=7 lanplus {extra}\n"
    )
    (level,) = cfg.levels("n1")
    return FenceAgentDevice(level.targets[0], AgentRunner(search_path=str(agent_dir)))


def test_off_then_status_via_stdin_only(agent_dir: Path) -> None:
    device = _device(agent_dir)
    assert device.power_status(10) is PowerState.ON
    device.power_off(10)
    assert device.power_status(10) is PowerState.OFF
    records = _records(agent_dir)
    assert [r["argv"] for r in records] == [[str(agent_dir / "fence_fake")]] * 3
    stdin = str(records[1]["stdin"]).splitlines()
    assert stdin == ["ip=1.2.3.4", f"password={SECRET}", "plug=7", "lanplus=1", "action=off"]


def test_failure_message_and_logs_hide_password(
    agent_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    device = _device(agent_dir, "mode=fail")
    with pytest.raises(FenceDeviceError) as info:
        device.power_off(10)
    assert "exit 1" in str(info.value) and "***" in str(info.value)
    assert SECRET not in str(info.value)
    config = parse_fence_config(
        f"device d fence_fake password={SECRET}\nconnect d node=n1 mode=fail\n"
    )
    fencer = Fencer(
        config,
        device_factory=lambda t: FenceAgentDevice(t, AgentRunner(search_path=str(agent_dir))),
        policy=FencePolicy(attempts=2, backoff=0.01, call_timeout=10),
    )
    result = fencer.fence("n1")
    assert not result.ok and result.attempts == 2
    assert SECRET not in repr(result) and SECRET not in caplog.text


def test_password_file_is_read_at_call_time(agent_dir: Path, tmp_path: Path) -> None:
    secret_file = tmp_path / "bmc.pw"
    secret_file.write_text("from-file\n")
    cfg = parse_fence_config(
        f"device d fence_fake password_file={secret_file}\nconnect d node=n1\n"
    )
    device = FenceAgentDevice(
        cfg.levels("n1")[0].targets[0], AgentRunner(search_path=str(agent_dir))
    )
    secret_file.write_text("changed\n")
    device.power_status(10)
    assert "password=changed\n" in str(_records(agent_dir)[0]["stdin"])
    secret_file.unlink()
    with pytest.raises(FenceDeviceConfigError, match="cannot read password file"):
        device.power_status(10)


def test_timeout_kills_agent_and_its_helpers(agent_dir: Path) -> None:
    device = _device(agent_dir, "mode=hang")
    with pytest.raises(FenceTimeoutError, match="gave no answer within 1 s"):
        device.power_status(1)
    child_file = agent_dir.parent / "record.child"
    pid = int(child_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid), "the agent's helper process outlived the timeout"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_agent_names_and_lookup(agent_dir: Path) -> None:
    with pytest.raises(FenceDeviceConfigError, match="not a fence agent name"):
        find_agent("/bin/sh")
    with pytest.raises(FenceDeviceConfigError, match="not installed"):
        find_agent("fence_nonexistent_xyz", str(agent_dir))
    assert find_agent("fence_fake", str(agent_dir)) == str(agent_dir / "fence_fake")


def test_stdin_and_redaction_helpers() -> None:
    opts = resolve_secrets(
        (("passwd", "pw1"), ("community", "pub"), ("ip", "h"), ("action", "reboot"), ("x", None)),
        label="d:1",
    )
    assert set(opts.secrets) == {"pw1", "pub"} and "pw1" not in repr(opts)
    assert agent_stdin(opts.values, "off") == b"passwd=pw1\ncommunity=pub\nip=h\nx=1\naction=off\n"
    assert redact("bad pw1 and pub\n", opts.secrets) == "bad *** and ***"
