"""SMS ``SendSms`` (version 2021-01-11) as Tencent Cloud answers it.

Request-level faults answer the ``Error`` envelope; per-number outcomes sit in
``SendStatusSet`` (``Code`` "Ok" or the number's error code) while the call itself succeeds,
as the real service does. Templates must be approved: the catalog's two are, more can be
approved through ``POST /sandbox/tencentcloud/templates``. Verification-code templates take
0–6 digit variables only; the parameter count must match the template's.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

from .tc3 import TcError

VERSION = "2021-01-11"
MAX_NUMBERS = 200
_MAINLAND = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$", re.ASCII)
_E164 = re.compile(r"^\+[1-9]\d{6,14}$", re.ASCII)
_CODE_VALUE = re.compile(r"^\d{0,6}$", re.ASCII)
#: Country calling code → ``IsoCode`` as ``SendStatus`` names it (ISO 3166-1 alpha-2; +1 is
#: "US" for the whole North American plan). A number whose code is not here answers "DEF", as
#: Tencent Cloud does for a country or region it does not recognise.
ISO_CODES = {
    "1": "US", "7": "RU", "20": "EG", "27": "ZA", "30": "GR", "31": "NL", "32": "BE",
    "33": "FR", "34": "ES", "36": "HU", "39": "IT", "40": "RO", "41": "CH", "43": "AT",
    "44": "GB", "45": "DK", "46": "SE", "47": "NO", "48": "PL", "49": "DE", "51": "PE",
    "52": "MX", "54": "AR", "55": "BR", "56": "CL", "57": "CO", "58": "VE", "60": "MY",
    "61": "AU", "62": "ID", "63": "PH", "64": "NZ", "65": "SG", "66": "TH", "81": "JP",
    "82": "KR", "84": "VN", "86": "CN", "90": "TR", "91": "IN", "92": "PK", "94": "LK",
    "95": "MM", "212": "MA", "213": "DZ", "234": "NG", "254": "KE", "351": "PT", "352": "LU",
    "353": "IE", "358": "FI", "380": "UA", "852": "HK", "853": "MO", "855": "KH", "856": "LA",
    "880": "BD", "886": "TW", "960": "MV", "966": "SA", "971": "AE", "972": "IL", "974": "QA",
    "977": "NP",
}
UNKNOWN_ISO = "DEF"


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    text: str  #: with ``{1}``, ``{2}``... placeholders
    params: int
    code: bool = False  #: a verification-code template (variables of 0–6 digits)

    def render(self, values: list[str]) -> str:
        text = self.text
        for i, value in enumerate(values, 1):
            text = text.replace("{" + str(i) + "}", value)
        return text


#: The templates the catalog names (NTF-07, NTF-13), approved from the start.
CATALOG = (
    Template("2207734", "支付订单退款通知",
             "尊敬的用户,您购买的商品 ({1}) 已完成退款,退款金额为 {2} 。"
             "支付金额已原路退回,请注意查收。如有任何疑问,请联系客户服务。感谢您的理解与支持。",
             2),
    Template("1667287", "微信公众号注册验证码",
             "您的注册验证码:{1},如非本人操作,请忽略本短信!", 1, True),
)


def template_from(spec: Any) -> Template:
    """A template approved through the control API: ``{"id", "params", "name"?, "text"?,
    "code"?}``."""
    if not isinstance(spec, dict):
        raise ValueError("body must be a JSON object")
    tid, params = spec.get("id"), spec.get("params")
    if not isinstance(tid, str) or not tid.isdigit() or len(tid) > 16:
        raise ValueError("id must be a numeric string (Tencent template ids are numbers)")
    if isinstance(params, bool) or not isinstance(params, int) or not 0 <= params <= 20:
        raise ValueError("params must be the number of variables, 0..20")
    text = spec.get("text") or " ".join("{" + str(i) + "}" for i in range(1, params + 1))
    if not isinstance(text, str) or len(text) > 500:
        raise ValueError("text must be a string of at most 500 characters")
    return Template(tid, str(spec.get("name") or tid)[:64], text, params, bool(spec.get("code")))


def _numbers(params: dict[str, Any]) -> list[str]:
    numbers = params.get("PhoneNumberSet")
    if not numbers:
        raise TcError("MissingParameter.EmptyPhoneNumberSet", "传入的号码列表为空")
    if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
        raise TcError("InvalidParameter", "PhoneNumberSet 必须是字符串数组")
    if len(numbers) > MAX_NUMBERS:
        raise TcError("LimitExceeded.PhoneNumberCountLimit", "单次请求的号码数超过 200 个")
    return numbers


def _normalise(number: str) -> tuple[str, str] | None:
    """``(E.164 number, IsoCode)``; mainland numbers may come without ``+86``."""
    found = _MAINLAND.match(number.strip())
    if found:
        return "+86" + found.group(1), "CN"
    if _E164.match(number.strip()):
        return number.strip(), iso_code(number.strip())
    return None


def iso_code(e164: str) -> str:
    """The ``IsoCode`` of an E.164 number: its calling code (1 to 3 digits) or "DEF"."""
    digits = e164.lstrip("+")
    for size in (1, 2, 3):
        found = ISO_CODES.get(digits[:size])
        if found is not None:
            return found
    return UNKNOWN_ISO


def send_sms(sms: Any, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Answer one ``SendSms`` call for the emulator ``sms`` (keys, templates, faults): the
    response payload and the text the handsets would show."""
    if params.get("SmsSdkAppId") != sms.sdk_app_id:
        raise TcError("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId 不存在")
    tid = params.get("TemplateId")
    if not tid:
        raise TcError("MissingParameter", "缺少参数 TemplateId")
    template = sms.templates.get(str(tid))
    if template is None:
        raise TcError("FailedOperation.TemplateIncorrectOrUnapproved", "模板未审批或内容不匹配")
    numbers = _numbers(params)
    normalised = [_normalise(n) for n in numbers]
    domestic = {n[1] == "CN" for n in normalised if n is not None}
    if len(domestic) > 1:
        raise TcError("UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
                      "号码中同时包含国内和国际号码")
    sign = params.get("SignName")
    if domestic == {True} and sign != sms.sign_name:
        raise TcError("FailedOperation.SignatureIncorrectOrUnapproved", "签名未审批或内容不匹配")
    values = params.get("TemplateParamSet") or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TcError("InvalidParameter", "TemplateParamSet 必须是字符串数组")
    if len(values) != template.params:
        raise TcError("FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                      "模板参数个数与审批通过的模板不一致")
    if template.code and not all(_CODE_VALUE.match(v) for v in values):
        raise TcError("InvalidParameterValue.TemplateParameterFormatError",
                      "验证码模板参数格式错误, 验证码类模板的变量只能是 0-6 位数字")
    context = params.get("SessionContext") or ""
    if not isinstance(context, str) or len(context.encode("utf-8")) > 512:
        raise TcError("InvalidParameterValue.ContentLengthLimit", "SessionContext 超过 512 字节")
    text = f"【{sign}】{template.render(values)}" if sign else template.render(values)
    fee = 1 if len(text) <= 70 else math.ceil(len(text) / 67)
    statuses = []
    for given, norm in zip(numbers, normalised, strict=True):
        fault = sms.faults.take("status") if norm is not None else None
        if norm is None:
            code, message = "InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number"
        elif fault is not None:
            code, message = str(fault.value), "the number was refused (sandbox fault)"
        else:
            code, message = "Ok", "send success"
        statuses.append({
            "SerialNo": f"2433:{secrets.randbelow(10**19):019d}" if code == "Ok" else "",
            "PhoneNumber": norm[0] if norm else given,
            "Fee": fee if code == "Ok" else 0,
            "SessionContext": context,
            "Code": code,
            "Message": message,
            "IsoCode": norm[1] if norm else UNKNOWN_ISO,
        })
    return {"SendStatusSet": statuses}, text
