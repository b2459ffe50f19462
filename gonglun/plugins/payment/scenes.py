"""Payment scenes as configuration (PAY-01, PAY-02, DECISIONS.md 6).

A scene is a key plus settings; its success is handled by whichever plugin registered it. The
defaults ship ``recharge_money``, ``face_number`` and ``tao`` so every flow can be tried on the
embedded default. Operators override or add scenes in ``[payment.scenes.<key>]``; plugins add
theirs through the ``register_payment_scenes`` filter. A new scene needs configuration plus one
``payment_success`` implementation, nothing else.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gonglun.errors import GonglunError

METHOD_CHANNELS: dict[str, tuple[str, ...]] = {
    "money": ("balance",),
    "alipay": ("page", "wap", "app"),
    "wxpay": ("native", "jsapi", "app", "h5"),
}
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Scene:
    key: str
    name: str
    #: Exactly two characters, shown on many pages (PAY-02).
    title: str
    color: str = "#46c47c"
    close_minutes: int = 30
    methods: tuple[str, ...] = ("money", "alipay", "wxpay")
    refundable: bool = True
    #: The plugin whose ``payment_success`` implementation gives the scene its effect.
    handler: str = "payment"
    seller_required: bool = False
    #: The seller may close (and sync) the unpaid order, as its buyer may.
    seller_close: bool = False
    guest_allowed: bool = False
    min_amount: int = 1
    max_amount: int = 1_000_000_00  # one million yuan, in fen
    description: str = ""
    #: Where the money goes when paid (docs/ledger.md): ``topup`` → the payer's wallet (a
    #: recharge); ``settle`` → ``escrow`` until settled to the seller; neither → ``income``.
    topup: bool = False
    settle: bool = False
    #: The platform's cut of a settlement, in basis points (500 = 5%); the seller keeps the
    #: fen lost to rounding down.
    commission: int = 0
    #: Settle automatically this many days after payment (0: only by hand or by the host app).
    settle_after_days: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def funds(self) -> str:
        """``payer``, ``escrow`` or ``income``: the account kind a payment's money goes to."""
        return "payer" if self.topup else "escrow" if self.settle else "income"

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data["methods"] = list(self.methods)
        # The commission rate would tell anyone the platform's income on every order (PAY-22).
        data.pop("commission")
        return data


DEFAULT_SCENES: dict[str, Scene] = {
    "recharge_money": Scene(
        "recharge_money", "账户余额充值", "充值", methods=("alipay", "wxpay"), topup=True,
    ),
    "face_number": Scene(
        "face_number", "人脸识别验证费用", "人脸", close_minutes=10, refundable=False,
        handler="face", guest_allowed=True, max_amount=100_00,
        description=(
            "进行人脸识别时,需要支付实名认证SDK的接口调用费用。只要完成了人脸识别对比,无论识别结果"
            "是否成功,系统都会扣除费用。然而,如果在过程中途退出或因接口故障导致识别失败,则不会产生"
            "计费。充值成功后,账户中的人脸识别验证次数将增加1次。该付费选项不支持退款,并且会在实际"
            "使用人脸识别SDK进行验证时自动扣除。"
        ),
    ),
    "tao": Scene("tao", "淘货商品", "淘货", seller_required=True, settle=True),
}


def validate(scene: Scene) -> Scene:
    problems = []
    if len(scene.title) != 2:
        problems.append("title must be exactly two characters")
    if not COLOR.match(scene.color):
        problems.append("color must be #rrggbb")
    if scene.close_minutes <= 0:
        problems.append("close_minutes must be positive")
    unknown = [m for m in scene.methods if m not in METHOD_CHANNELS]
    if unknown or not scene.methods:
        problems.append(f"unknown methods {unknown}")
    if not 0 < scene.min_amount <= scene.max_amount:
        problems.append("amount bounds are inconsistent")
    problems.extend(_funds_problems(scene))
    if problems:
        raise ValueError(f"payment scene {scene.key!r}: " + "; ".join(problems))
    return scene


def _funds_problems(scene: Scene) -> list[str]:
    problems = []
    if scene.topup and scene.settle:
        problems.append("a scene cannot both top up the payer and settle to a seller")
    if scene.topup and ("money" in scene.methods or scene.guest_allowed):
        problems.append("a top-up is paid through a channel by a logged-in payer")
    if scene.settle and not scene.seller_required:
        problems.append("settle needs seller_required")
    if not isinstance(scene.commission, int) or not 0 <= scene.commission <= 10_000:
        problems.append("commission is basis points, 0-10000")
    if not isinstance(scene.settle_after_days, int) or scene.settle_after_days < 0:
        problems.append("settle_after_days must be a non-negative integer")
    if (scene.commission or scene.settle_after_days) and not scene.settle:
        problems.append("commission and settle_after_days need settle")
    return problems


def from_config(key: str, values: dict[str, Any], base: Scene | None) -> Scene:
    known = {f.name for f in fields(Scene)}
    data = asdict(base) if base else {"key": key, "name": key, "title": key[:2]}
    for name, value in values.items():
        if name in known:
            data[name] = tuple(value) if name == "methods" else value
        else:
            data.setdefault("extra", {})[name] = value
    data["key"] = key
    return Scene(**data)


def load_scenes(rt: Any) -> dict[str, Scene]:
    """Defaults, then ``[payment.scenes.*]``, then plugins' ``register_payment_scenes``."""
    scenes: dict[str, Scene] = dict(DEFAULT_SCENES)
    for key, values in (rt.config.get("payment.scenes") or {}).items():
        if values is False or (isinstance(values, dict) and values.get("enabled") is False):
            scenes.pop(key, None)
            continue
        scenes[key] = from_config(key, dict(values), scenes.get(key))
    scenes = rt.hooks.apply_filters("register_payment_scenes", scenes)
    return {key: validate(scene) for key, scene in scenes.items()}


def scenes_for(rt: Any) -> dict[str, Scene]:
    cached = getattr(rt, "_payment_scenes", None)
    if cached is None:
        cached = rt._payment_scenes = load_scenes(rt)
    return cached


def get_scene(rt: Any, key: str) -> Scene:
    scene = scenes_for(rt).get(key)
    if scene is None:
        raise GonglunError("payment.unknown_scene", f"支付场景不存在: {key}")
    return scene
