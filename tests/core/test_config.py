"""Configuration: TOML file, environment overrides, embedded defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from gonglun.config import Config, ConfigError


def test_embedded_default_with_nothing_set(tmp_path: Path) -> None:
    config = Config.load(environ={"GONGLUN_CONFIG": str(tmp_path / "absent.toml")})
    assert config.embedded
    assert config.database_url.startswith("sqlite:///")
    assert config.redis_url == ""
    assert config.disabled_plugins == []


def test_file_then_environment(tmp_path: Path) -> None:
    file = tmp_path / "gonglun.toml"
    file.write_text(
        '[database]\nurl = "postgresql://db/x"\n[plugins]\ndisabled = ["face"]\n'
        "[refund]\nsystem_fail_cap = 3\n",
        "utf-8",
    )
    config = Config.load(
        file,
        environ={
            "GONGLUN_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/",
            "GONGLUN_PLUGINS_DISABLED": "redpacket, face",
            "GONGLUN_REFUND__SYSTEM_FAIL_CAP": "5",
            "GONGLUN_SANDBOX__DIR": "/tmp/keys",
        },
    )
    assert config.database_url == "postgresql://db/x"
    assert not config.embedded
    assert config.disabled_plugins == ["redpacket", "face"]
    assert config.get("refund.system_fail_cap") == 5
    assert config.get("sandbox.dir") == "/tmp/keys"
    assert config.get("missing.key", "dflt") == "dflt"


def test_explicit_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Config.load(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[database\n", "utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        Config.load(bad, environ={})
