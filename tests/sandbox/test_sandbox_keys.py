"""The keyset file: exact shape, usable keys, never silently replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from gonglun.sandbox import init_keyset, load_keyset
from gonglun.sandbox.keys import platform_certificate, public_pem_of, rsa_sign, rsa_verify

SHAPE = {
    "alipay": {"app_id", "app_private_key", "app_public_key", "alipay_private_key",
               "alipay_public_key"},
    "wxpay": {"mchid", "appid", "merchant_private_key", "merchant_serial_no",
              "platform_private_key", "platform_public_key", "public_key_id", "apiv3_key"},
    "tencentcloud": {"secret_id", "secret_key", "sms_sdk_app_id", "sms_sign_name",
                     "faceid_rule_id"},
    "wechat": {"appid", "secret"},
    "jpush": {"app_key", "master_secret"},
    "wechat_login": {"app", "pc", "mini"},  # each {"appid", "secret"}
}


def test_init_writes_exactly_the_documented_shape(tmp_path: Path) -> None:
    keyset = init_keyset(tmp_path)
    on_disk = json.loads((tmp_path / "sandbox.json").read_text(encoding="utf-8"))
    assert on_disk == keyset
    assert {k: set(v) for k, v in on_disk.items()} == SHAPE
    assert load_keyset(tmp_path) == keyset


def test_keys_are_rsa_2048_pem_pairs(keyset: dict) -> None:
    pairs = [
        (keyset["alipay"]["app_private_key"], keyset["alipay"]["app_public_key"]),
        (keyset["alipay"]["alipay_private_key"], keyset["alipay"]["alipay_public_key"]),
        (keyset["wxpay"]["platform_private_key"], keyset["wxpay"]["platform_public_key"]),
    ]
    for private, public in pairs:
        assert private.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8: wechatpayv3 needs it
        assert public.startswith("-----BEGIN PUBLIC KEY-----")
        key = serialization.load_pem_private_key(private.encode(), None)
        assert isinstance(key, RSAPrivateKey) and key.key_size == 2048
        assert public_pem_of(private) == public
        assert rsa_verify(public, "message", rsa_sign(private, "message"))
        assert not rsa_verify(public, "message!", rsa_sign(private, "message"))
    wx = keyset["wxpay"]
    assert len(wx["apiv3_key"]) == 32
    assert wx["public_key_id"].startswith("PUB_KEY_ID_")
    assert len(wx["merchant_serial_no"]) == 40
    assert wx["mchid"].isdigit() and keyset["alipay"]["app_id"].isdigit()


def test_init_keeps_an_existing_keyset(tmp_path: Path) -> None:
    first = init_keyset(tmp_path)
    assert init_keyset(tmp_path) == first
    assert init_keyset(tmp_path, overwrite=True) != first


def test_init_adds_newer_vendors_to_an_older_keyset_and_keeps_the_rest(tmp_path: Path) -> None:
    first = init_keyset(tmp_path)
    older = {k: first[k] for k in ("alipay", "wxpay")}
    (tmp_path / "sandbox.json").write_text(json.dumps(older), encoding="utf-8")
    upgraded = init_keyset(tmp_path)
    assert {k: upgraded[k] for k in older} == older
    assert {k: set(v) for k, v in upgraded.items()} == SHAPE
    assert load_keyset(tmp_path) == upgraded
    assert (tmp_path / "sandbox.json").stat().st_mode & 0o077 == 0


def test_load_reports_missing_fields(tmp_path: Path) -> None:
    keyset = init_keyset(tmp_path)
    del keyset["wxpay"]["apiv3_key"]
    (tmp_path / "sandbox.json").write_text(json.dumps(keyset), encoding="utf-8")
    with pytest.raises(ValueError, match="apiv3_key"):
        load_keyset(tmp_path)


def test_platform_certificate_is_stable_and_matches_the_key(keyset: dict) -> None:
    wx = keyset["wxpay"]
    serial, pem = platform_certificate(wx["platform_private_key"], wx["mchid"])
    platform_certificate.cache_clear()
    assert platform_certificate(wx["platform_private_key"], wx["mchid"]) == (serial, pem)
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert format(cert.serial_number, "X") == serial
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(serialization.Encoding.PEM, spki).decode() == \
        wx["platform_public_key"]
