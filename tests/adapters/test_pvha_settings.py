"""Settings: precedence flag > env > file > default; secrets from file/env only, masked."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from pvha import settings as settings_mod
from pvha.adapters.pve_client import PveClient
from pvha.errors import ConfigError
from pvha.settings import DEFAULT_CFS_ROOT, Secret, load_settings

FP = "ab:" * 31 + "ab"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "settings.toml"
    p.write_text(text)
    return p


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(settings_mod, "DEFAULT_SETTINGS_PATH", tmp_path / "absent.toml")
    s = load_settings(env={"PVHA_PASSWORD": "pw"})
    assert s.api.hosts == ("localhost",) and s.api.port == 8006
    assert s.api.read_timeout >= 30 and s.api.connect_timeout == 5.0
    assert s.api.user == "root@pam" and not s.api.uses_token and s.api.attempts == 3
    assert s.api.ca_file is None and s.api.fingerprints == ()
    assert s.cfs.root == DEFAULT_CFS_ROOT and s.cfs.resolved_config_dir == Path("/etc/pve/pvha")
    assert s.source is None


def test_precedence_flag_over_env_over_file(tmp_path):
    path = write(tmp_path, """
[api]
hosts = ["f1", "f2"]
port = 8007
user = "pvha@pve"
read_timeout = 50
[cfs]
root = "/srv/cfs-file"
""")
    env = {"PVHA_PORT": "8008", "PVHA_CFS_ROOT": "/srv/cfs-env", "PVHA_PASSWORD": "pw"}
    s = load_settings(flags={"cfs_root": "/srv/cfs-flag", "hosts": None}, env=env, path=path)
    assert s.api.hosts == ("f1", "f2")  # file (flag None = not given)
    assert s.api.port == 8008  # env beats file
    assert s.cfs.root == Path("/srv/cfs-flag")  # flag beats env
    assert s.cfs.resolved_config_dir == Path("/srv/cfs-flag/pvha")
    assert s.api.read_timeout == 50.0 and s.source == path


def test_settings_file_from_env_and_env_lists(tmp_path):
    path = write(tmp_path, "[api]\nport = 8010\n")
    env = {"PVHA_SETTINGS": str(path), "PVHA_HOSTS": "a, b ,c", "PVHA_PASSWORD": "pw",
           "PVHA_FINGERPRINT": FP}
    s = load_settings(env=env)
    assert s.api.port == 8010 and s.api.hosts == ("a", "b", "c")
    assert s.api.fingerprints == (FP.upper(),)


def test_token_secret_from_file_is_masked_everywhere(tmp_path):
    secret_file = tmp_path / "token"
    secret_file.write_text("0b1c2d3e-SECRET-uuid\n")
    path = write(tmp_path, f'[api]\nuser = "pvha@pve!ha"\ntoken_secret_file = "{secret_file}"\n')
    s = load_settings(env={}, path=path)
    assert s.api.uses_token and s.api.user == "pvha@pve" and s.api.token_name == "ha"
    assert s.api.token_secret is not None
    assert s.api.token_secret.reveal() == "0b1c2d3e-SECRET-uuid"  # newline stripped
    for text in (repr(s), str(s), repr(s.api), f"{s.api.token_secret}"):
        assert "SECRET" not in text
    assert "SECRET" not in repr(PveClient(s.api))
    with pytest.raises(TypeError):
        pickle.dumps(s.api.token_secret)


def test_password_from_env(tmp_path):
    s = load_settings(env={"PVHA_PASSWORD": "hunter2-SECRET"}, path=write(tmp_path, ""))
    assert not s.api.uses_token and s.api.password == Secret("hunter2-SECRET")
    assert "hunter2" not in repr(s)


def test_secret_file_beats_secret_variable(tmp_path):
    f = tmp_path / "pw"
    f.write_text("from-file")
    s = load_settings(flags={"password_file": str(f)}, env={"PVHA_PASSWORD": "from-env"},
                      path=write(tmp_path, ""))
    assert s.api.password is not None and s.api.password.reveal() == "from-file"


def test_a_secret_variable_beats_a_secret_file_named_by_the_settings_file(tmp_path):
    """Precedence flag > environment > file, for secrets too."""
    f = tmp_path / "token"
    f.write_text("from-file\n")
    path = write(tmp_path, f'[api]\nuser = "pvha@pve!ha"\ntoken_secret_file = "{f}"\n')
    s = load_settings(env={"PVHA_TOKEN_SECRET": "from-env"}, path=path)
    assert s.api.token_secret is not None and s.api.token_secret.reveal() == "from-env"
    s = load_settings(env={}, path=path)
    assert s.api.token_secret is not None and s.api.token_secret.reveal() == "from-file"


@pytest.mark.parametrize("text", ['[api]\npassword = "x"\n', '[api]\ntoken_secret = "x"\n'])
def test_secrets_in_the_settings_file_are_refused(tmp_path, text):
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, path=write(tmp_path, text))
    assert "secrets do not belong" in str(err.value)
    assert '"x"' not in str(err.value)


def test_secrets_as_flags_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not accepted as flags"):
        load_settings(flags={"password": "x"}, env={}, path=write(tmp_path, ""))


def test_missing_secret_is_reported_when_the_client_is_built(tmp_path):
    s = load_settings(env={}, path=write(tmp_path, ""))
    with pytest.raises(ConfigError, match="no API password"):
        PveClient(s.api)


@pytest.mark.parametrize(
    "text, message",
    [("[api]\nread_timeout = 5\n", "shorter than PVE's 30 s"),
     ("[api]\nbogus = 1\n", "unknown setting"),
     ("[scheduler]\nx = 1\n", "unknown section"),
     ("[api]\nport = true\n", "expected a number"),
     ("[api]\nport = 0\n", "out of range"),
     ('[api]\nuser = "root"\n', "needs a realm"),
     ('[api]\nfingerprint = "AB:CD"\n', "not a SHA-256"),
     ('[api]\nca_file = "/x.pem"\nfingerprint = ["' + FP + '"]\n', "either ca_file"),
     ('[watch]\nshutdown_policy = "poweroff"\n', "is not one of conditional, freeze"),
     ("[cfs]\nroot = 5\n", "[cfs] root must be a string"),
     ("[api]\nca_file = true\n", "[api] ca_file must be a string"),
     ("[notify]\nurls_file = [\"/a\"]\n", "[notify] urls_file must be a string"),
     ("[api\n", "invalid TOML")],
)
def test_invalid_settings(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(env={"PVHA_PASSWORD": "pw"}, path=path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_cfs_settings_alone_resolve_as_load_settings_does(tmp_path, monkeypatch):
    """What the CLI's config-dir lookup reads (pvha.cli.fast.store_at): the same [cfs]
    as pvha watch, or None when nothing names it."""
    monkeypatch.setattr(settings_mod, "DEFAULT_SETTINGS_PATH", tmp_path / "absent.toml")
    assert settings_mod.cfs_settings(env={}) is None
    assert settings_mod.cfs_settings(env={"PVHA_CFS_ROOT": ""}) is None
    root_only = write(tmp_path, '[api]\nport = 8007\n[cfs]\nroot = "/srv/cfs"\n')
    cases = [
        ({}, Path("/srv/cfs/pvha")),
        ({"PVHA_CFS_ROOT": "/srv/env"}, Path("/srv/env/pvha")),  # env beats file
        ({"PVHA_CONFIG_DIR": "/srv/cfg"}, Path("/srv/cfg")),
    ]
    for env, expected in cases:
        full = load_settings(env={**env, "PVHA_PASSWORD": "pw"}, path=root_only).cfs
        assert settings_mod.cfs_settings(root_only, env) == full
        assert full.resolved_config_dir == expected
    api_only = tmp_path / "api.toml"
    api_only.write_text("[api]\nport = 8007\n")
    assert settings_mod.cfs_settings(api_only, {}) is None
    api_only.write_text("[cfs]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        settings_mod.cfs_settings(api_only, {})
    with pytest.raises(ConfigError, match="not found"):
        settings_mod.cfs_settings(tmp_path / "nope.toml", {})


def test_explicitly_named_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(env={}, path=tmp_path / "nope.toml")


def test_unreadable_secret_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read token file"):
        load_settings(flags={"token_name": "ha", "token_secret_file": str(tmp_path / "no")},
                      env={}, path=write(tmp_path, '[api]\nuser = "a@pve"\n'))


def test_settings_can_be_turned_into_plain_data_without_revealing(tmp_path):
    import dataclasses

    s = load_settings(env={"PVHA_PASSWORD": "hunter2-SECRET"}, path=write(tmp_path, ""))
    data = dataclasses.asdict(s)
    assert "hunter2" not in repr(data) and data["api"]["password"] == s.api.password


def test_max_answer_bytes_from_file_env_and_its_floor(tmp_path):
    from pvha.settings import DEFAULT_MAX_ANSWER_BYTES

    path = write(tmp_path, "[api]\nmax_answer_bytes = 67108864\n")
    assert load_settings(env={"PVHA_PASSWORD": "pw"}, path=path).api.max_answer_bytes == 64 << 20
    env = {"PVHA_PASSWORD": "pw", "PVHA_MAX_ANSWER_BYTES": "1048576"}
    assert load_settings(env=env, path=path).api.max_answer_bytes == 1 << 20  # env wins
    empty = write(tmp_path, "")
    assert load_settings(env={"PVHA_PASSWORD": "pw"}, path=empty).api.max_answer_bytes == (
        DEFAULT_MAX_ANSWER_BYTES)
    for bad, message in (("1000", "below 65536"), ("lots", "expected a number")):
        with pytest.raises(ConfigError, match=message):
            load_settings(env={"PVHA_PASSWORD": "pw", "PVHA_MAX_ANSWER_BYTES": bad}, path=empty)


def test_shutdown_policy_from_file_and_environment(tmp_path):
    path = write(tmp_path, '[watch]\nshutdown_policy = "freeze"\n')
    assert load_settings(env={"PVHA_PASSWORD": "pw"}, path=path).watch.shutdown_policy == "freeze"
    env = {"PVHA_PASSWORD": "pw", "PVHA_SHUTDOWN_POLICY": "migrate"}
    assert load_settings(env=env, path=path).watch.shutdown_policy == "migrate"
    assert load_settings(env={"PVHA_PASSWORD": "pw"},
                         path=write(tmp_path, "")).watch.shutdown_policy is None
