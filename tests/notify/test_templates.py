"""Templates: money as yuan with 元, overrides from configuration, escaping, the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from gonglun.plugins.notify.render import Renderer, RenderError, yuan
from tests.notify.conftest import REFUND_DATA

CONTEXT = {**REFUND_DATA, "notice": {"scene": "payment_refund", "scene_name": "退款通知",
                                     "role": "user", "user": {"id": 1, "nickname": "n"}}}


@pytest.mark.parametrize(("fen", "text"), [
    (1, "0.01元"), (10, "0.1元"), (100, "1元"), (3320, "33.2元"), (1234, "12.34元"),
    (0, "0元"), (-150, "-1.5元"), (100_000_000_00, "100000000元"),
])
def test_yuan(fen: int, text: str) -> None:
    assert yuan(fen) == text


@pytest.mark.parametrize("bad", [12.5, "1234", True, None])
def test_yuan_refuses_what_is_not_fen(bad: object) -> None:
    with pytest.raises(RenderError):
        yuan(bad)


def test_html_is_escaped_and_headers_stay_one_line() -> None:
    hostile = {**CONTEXT, "title": '<script>alert(1)</script>"><img src=x>',
               "reason": "a\r\nBcc: victim@example.com"}
    email = Renderer().render("payment_refund", "email", hostile, "")
    assert "<script>" not in email["html"] and "&lt;script&gt;" in email["html"]
    assert "<img" not in email["html"]
    sms = Renderer().render("payment_refund", "sms", hostile, "")
    assert sms["params"][0] == '<script>alert(1)</script>"><img src=x>'  # text stays text


def test_links_are_relative_to_the_base_or_absolute_http() -> None:
    renderer = Renderer(link_base="https://m.example.com/")
    assert renderer.link("/pay_details.php?order={{ payment_order | urlencode }}",
                         {"payment_order": "1 & 2"}) == (
        "https://m.example.com/pay_details.php?order=1%20%26%202")
    assert renderer.link("https://x.example/{{ a }}", {"a": "b"}) == "https://x.example/b"
    assert renderer.link("javascript:alert(1)", {}) == ""
    assert renderer.link("{{ url }}", {"url": "data:text/html,x"}) == ""


def test_configuration_overrides_one_template(tmp_path: Path) -> None:
    (tmp_path / "payment_refund").mkdir()
    (tmp_path / "payment_refund" / "email.j2").write_text(
        "{% block subject %}退款 {{ amount | yuan }}{% endblock %}"
        "{% block text %}自定义正文{% endblock %}", "utf-8")
    renderer = Renderer(str(tmp_path))
    email = renderer.render("payment_refund", "email", CONTEXT, "")
    assert (email["subject"], email["text"]) == ("退款 33.2元", "自定义正文")
    inbox = renderer.render("payment_refund", "inbox", CONTEXT, "")
    assert inbox["title"] == "💰 订单退款通知"  # the rest keep the defaults


def test_templates_run_sandboxed_and_strict(tmp_path: Path) -> None:
    (tmp_path / "payment_refund").mkdir()
    (tmp_path / "payment_refund" / "inbox.j2").write_text(
        "{% block title %}{{ ''.__class__.__mro__[1].__subclasses__() }}{% endblock %}", "utf-8")
    with pytest.raises(RenderError):
        Renderer(str(tmp_path)).render("payment_refund", "inbox", CONTEXT, "")
    with pytest.raises(RenderError, match="undefined"):
        Renderer().render("payment_refund", "inbox", {"notice": CONTEXT["notice"]}, "")
    with pytest.raises(RenderError, match="no template"):
        Renderer().render("identify_close", "sms", CONTEXT, "")
