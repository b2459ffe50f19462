"""Every error id raised anywhere is in the catalogue and docs/errors.md; English on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from falcon import testing

from gonglun.errorcodes import catalog, english, prefers_english, render, scan

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_every_raised_id_is_described() -> None:
    raised, described = set(scan()), set(catalog())
    assert sorted(raised - described) == [], "add these to gonglun/errors.toml"
    assert sorted(described - raised) == [], "no code raises these any more"
    for error, info in catalog().items():
        assert info.get("meaning") and info.get("en"), error


def test_the_reference_page_is_current() -> None:
    assert DOC.read_text("utf-8") == render(), (
        "run: python -m gonglun.errorcodes > docs/errors.md")


def test_language_preference() -> None:
    assert prefers_english("en-US,en;q=0.9")
    assert prefers_english("zh;q=0.5, en")
    assert not prefers_english("zh-CN,zh;q=0.9,en;q=0.8")
    assert not prefers_english(None) and not prefers_english("fr")
    assert english("request.too_large", {"max_bytes": 10}) == (
        "Request body too large (limit 10 bytes)")
    assert english("request.missing_field", {}) == "Missing parameter: "


def test_english_messages_over_http(rt: Any, client: testing.TestClient) -> None:
    zh = client.simulate_post("/v1/sessions", json={"login": "nobody", "password": "x" * 9})
    assert zh.json["msg"] == "账号或密码错误"
    en = client.simulate_post("/v1/sessions", json={"login": "nobody", "password": "x" * 9},
                              headers={"Accept-Language": "en"})
    assert en.status_code == 401 and en.json["error"] == "auth.invalid_credentials"
    assert en.json["msg"] == "Wrong login or password"
    missing = client.simulate_get("/v1/nothing-here", headers={"Accept-Language": "en"})
    assert missing.json == {"code": 1, "error": "route.not_found", "msg": "Not found"}
    field = client.simulate_post("/v1/sessions", json={"password": "x"},
                                 headers={"Accept-Language": "en-GB"})
    assert field.json["msg"] == "Missing parameter: login"
