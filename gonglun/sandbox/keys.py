"""The sandbox keyset: every key both sides of both channels need, in one JSON file.

The application's channel configuration and the sandbox read the same ``sandbox.json``, so a
freshly initialised directory gives a working merchant and a working gateway at once. Private
keys are PKCS#8 PEM because wechatpayv3 only accepts that wrapping (it re-adds the
``BEGIN PRIVATE KEY`` armour itself); python-alipay-sdk accepts it too.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import string
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.x509.oid import NameOID

KEYSET_FILE = "sandbox.json"

Keyset = dict[str, dict[str, str]]


def new_keypair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def _digits(n: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(n))


def new_keyset() -> Keyset:
    """Generate a complete keyset (four RSA-2048 keypairs and the identifiers around them)."""
    app_private, app_public = new_keypair()
    gw_private, gw_public = new_keypair()
    mch_private, _ = new_keypair()
    plat_private, plat_public = new_keypair()
    alphabet = string.ascii_letters + string.digits
    return {
        "alipay": {
            "app_id": "2021" + _digits(12),
            "app_private_key": app_private,
            "app_public_key": app_public,
            "alipay_private_key": gw_private,
            "alipay_public_key": gw_public,
        },
        "wxpay": {
            "mchid": "19" + _digits(8),
            "appid": "wx" + secrets.token_hex(8),
            "merchant_private_key": mch_private,
            "merchant_serial_no": secrets.token_hex(20).upper(),
            "platform_private_key": plat_private,
            "platform_public_key": plat_public,
            "public_key_id": "PUB_KEY_ID_01" + _digits(30),
            "apiv3_key": "".join(secrets.choice(alphabet) for _ in range(32)),
        },
        **_vendor_keys(),
    }


def _vendor_keys() -> Keyset:
    """Keys of the provider emulators (notifications): Tencent Cloud, WeChat official account,
    JPush. Shaped like the vendors' own: an AKID secret id, a 32-character secret key..."""
    alphabet = string.ascii_letters + string.digits
    return {
        "tencentcloud": {
            "secret_id": "AKID" + "".join(secrets.choice(alphabet) for _ in range(32)),
            "secret_key": "".join(secrets.choice(alphabet) for _ in range(32)),
            "sms_sdk_app_id": "1400" + _digits(6),
            "sms_sign_name": "宫论",
            "faceid_rule_id": "1",
        },
        "wechat": {"appid": "wx" + secrets.token_hex(8), "secret": secrets.token_hex(16)},
        "jpush": {"app_key": secrets.token_hex(12), "master_secret": secrets.token_hex(12)},
        # WeChat sign-in apps besides the official account ("wechat"): mobile app, website
        # (PC) and mini program, each with its own appid (so its own openids).
        "wechat_login": {platform: {"appid": "wx" + secrets.token_hex(8),
                                    "secret": secrets.token_hex(16)}
                         for platform in ("app", "pc", "mini")},
    }


def init_keyset(directory: str | os.PathLike[str], *, overwrite: bool = False) -> Keyset:
    """Write ``directory/sandbox.json`` (created if missing) and return the keyset.

    An existing file is kept and returned unless ``overwrite`` is true: re-running ``init``
    must never silently invalidate the keys a running application was configured with. A file
    written before a vendor emulator existed gains that vendor's keys; nothing else changes.
    """
    path = Path(directory) / KEYSET_FILE
    if path.exists() and not overwrite:
        keyset = load_keyset(directory)
        missing = {k: v for k, v in _vendor_keys().items() if k not in keyset}
        if not missing:
            return keyset
        keyset = {**keyset, **missing}
    else:
        keyset = new_keyset()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(keyset, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)  # private keys inside
    tmp.replace(path)
    return keyset


REQUIRED = {
    "alipay": ("app_id", "app_private_key", "app_public_key", "alipay_private_key",
               "alipay_public_key"),
    "wxpay": ("mchid", "appid", "merchant_private_key", "merchant_serial_no",
              "platform_private_key", "platform_public_key", "public_key_id", "apiv3_key"),
}


def load_keyset(directory: str | os.PathLike[str]) -> Keyset:
    """Read ``directory/sandbox.json``; a missing field is a clear error, not a KeyError later."""
    path = Path(directory) / KEYSET_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    validate_keyset(data)
    return data


def validate_keyset(data: Any) -> None:
    if not isinstance(data, dict):
        raise ValueError("keyset must be a JSON object")
    for section, fields in REQUIRED.items():
        block = data.get(section)
        if not isinstance(block, dict):
            raise ValueError(f"keyset has no {section!r} section")
        missing = [f for f in fields if not block.get(f)]
        if missing:
            raise ValueError(f"keyset {section!r} lacks {', '.join(missing)}")
    if len(data["wxpay"]["apiv3_key"].encode()) != 32:
        raise ValueError("wxpay apiv3_key must be 32 bytes (AES-256)")


# --- RSA helpers shared by both channels -------------------------------------------------


@lru_cache(maxsize=32)
def private_key(pem: str) -> RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, RSAPrivateKey)
    return key


@lru_cache(maxsize=32)
def public_key(pem: str) -> RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, RSAPublicKey)
    return key


def public_pem_of(private_pem: str) -> str:
    return (
        private_key(private_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def rsa_sign(private_pem: str, message: str, *, sha1: bool = False) -> str:
    """PKCS#1 v1.5 signature, base64 on one line (RSA2 = SHA-256; Alipay's legacy RSA = SHA-1)."""
    algorithm: hashes.HashAlgorithm = hashes.SHA1() if sha1 else hashes.SHA256()
    raw = private_key(private_pem).sign(message.encode("utf-8"), padding.PKCS1v15(), algorithm)
    return base64.b64encode(raw).decode()


def rsa_verify(public_pem: str, message: str, signature: str, *, sha1: bool = False) -> bool:
    algorithm: hashes.HashAlgorithm = hashes.SHA1() if sha1 else hashes.SHA256()
    try:
        raw = base64.b64decode(signature, validate=False)
        public_key(public_pem).verify(raw, message.encode("utf-8"), padding.PKCS1v15(), algorithm)
    except Exception:
        return False
    return True



def rsa_oaep_decrypt(private_pem: str, ciphertext: str) -> str | None:
    """Decrypt a base64 RSA-OAEP (SHA-1) field, as WeChat encrypts sensitive request fields
    with its platform or public key; None when it does not decrypt."""
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(),
                        label=None)
    try:
        raw = private_key(private_pem).decrypt(base64.b64decode(ciphertext, validate=True), oaep)
        return raw.decode("utf-8")
    except Exception:
        return None

# --- the WeChat platform certificate -----------------------------------------------------

#: Fixed validity so the certificate is byte-identical on every start: a cert_dir seeded
#: once keeps matching the serial the sandbox signs with.
CERT_NOT_BEFORE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
CERT_NOT_AFTER = dt.datetime(2049, 12, 31, tzinfo=dt.UTC)


@lru_cache(maxsize=8)
def platform_certificate(platform_private_pem: str, mchid: str) -> tuple[str, str]:
    """A self-signed X.509 certificate for the platform key: ``(serial_hex, pem)``.

    Real WeChat issues platform certificates from its own CA; merchants in certificate mode only
    need the serial and the public key inside, so a deterministic self-signed one serves. The
    serial is derived from the key (152 bits, so always a positive 20-octet DER integer) and
    printed as WeChat prints serials: uppercase hex.
    """
    key = private_key(platform_private_pem)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    serial = int.from_bytes(hashlib.sha256(spki).digest()[:19], "big") | (1 << 150)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gonglun WeChat Pay sandbox"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, mchid),
            x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (sandbox)"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(CERT_NOT_BEFORE)
        .not_valid_after(CERT_NOT_AFTER)
        .sign(key, hashes.SHA256())
    )
    return format(serial, "X"), cert.public_bytes(serialization.Encoding.PEM).decode()
