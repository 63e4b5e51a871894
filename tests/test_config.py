"""Settings: env vars, the optional TOML file, and the one-line errors for mistakes."""

import re
from pathlib import Path

import pytest

from schedcp.runtime.config import ConfigError, known_env_vars, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("SCHEDCP_"):
            monkeypatch.delenv(name)


def test_env_overrides_defaults(monkeypatch):
    assert load_settings().nats_url == "nats://127.0.0.1:4222"
    monkeypatch.setenv("SCHEDCP_NATS_URL", "nats://10.1.2.3:4333")
    monkeypatch.setenv("SCHEDCP_RPC_TIMEOUT_S", "2.5")
    settings = load_settings()
    assert settings.nats_url == "nats://10.1.2.3:4333"
    assert settings.rpc_timeout_s == 2.5


def test_file_is_read_and_env_wins_over_it(monkeypatch, tmp_path):
    config = tmp_path / "schedcp.toml"
    config.write_text('log_level = "DEBUG"\nplanner_addr = "0.0.0.0:6000"\n')
    monkeypatch.setenv("SCHEDCP_CONFIG_FILE", str(config))
    monkeypatch.setenv("SCHEDCP_PLANNER_ADDR", "127.0.0.1:7000")
    settings = load_settings()
    assert settings.log_level == "DEBUG"
    assert settings.planner_addr == "127.0.0.1:7000"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SCHEDCP_LOG_LEVEL", "LOUD", r"SCHEDCP_LOG_LEVEL='LOUD' is invalid: .*'DEBUG'"),
        ("SCHEDCP_PLANNER_ADDR", "localhost", r"SCHEDCP_PLANNER_ADDR='localhost' is invalid: expected HOST:PORT"),
        ("SCHEDCP_HOST_ID", "web.prod", r"SCHEDCP_HOST_ID='web.prod' is invalid: .*NATS subject token"),
        ("SCHEDCP_NATS_URL", "http://x:1", r"SCHEDCP_NATS_URL='http://x:1' is invalid: expected nats://"),
        ("SCHEDCP_RPC_TIMEOUT_S", "-1", r"SCHEDCP_RPC_TIMEOUT_S='-1' is invalid: .*greater than 0"),
        ("SCHEDCP_PROFILE_INTERVAL_S", "0.01", r"SCHEDCP_PROFILE_INTERVAL_S='0.01' is invalid: must be 0 .*0.5"),
        ("SCHEDCP_OBSERVER_MODE", "ebpf", r"SCHEDCP_OBSERVER_MODE='ebpf' is invalid: .*'auto'"),
        ("SCHEDCP_NATS_ULR", "nats://x:1",
         r"SCHEDCP_NATS_ULR is not a schedcp setting \(did you mean SCHEDCP_NATS_URL\?\)"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings()
    assert "\n" not in str(caught.value)


def test_bad_config_file_is_reported(monkeypatch, tmp_path):
    config = tmp_path / "schedcp.toml"
    config.write_text('nats_ulr = "nats://x:1"\n')
    monkeypatch.setenv("SCHEDCP_CONFIG_FILE", str(config))
    with pytest.raises(ConfigError, match=r"unknown setting 'nats_ulr' \(did you mean nats_url\?\)"):
        load_settings()
    monkeypatch.setenv("SCHEDCP_CONFIG_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="cannot read it"):
        load_settings()


def test_docs_list_exactly_the_settings():
    documented = set(re.findall(r"`(SCHEDCP_[A-Z0-9_]+)`", (ROOT / "docs" / "configuration.md").read_text()))
    assert documented == set(known_env_vars())
