"""FaceID (慧眼) H5 verification, version 2018-03-01, as Tencent Cloud answers it.

``DetectAuth`` opens a session for a name and ID number and answers its ``BizToken`` and the
H5 ``Url``; ``GetDetectInfoEnhanced`` answers the session's ``Text``: ``ErrCode`` 17 while the
person has not finished, then 0 and a ``Sim`` (a string) on a pass, or the code of what failed.
The person in front of the camera is played through ``POST /sandbox/tencentcloud/faceid/
{BizToken}`` with ``{"result": ...}``: ``pass``; the billed failures ``not_alive`` (1002),
``id_mismatch`` (2006), ``not_same_person`` (2016); ``face_failed`` (1004, unbilled); the
service's failures ``engine_timeout``, ``id_database_error``, ``network_unstable``,
``compare_timeout``, ``identity_not_found``, ``source_upgrading`` (1001, 1006, 1008, 2001,
2005, 2017), after which the person may try again; ``abandon`` and ``expire``. Sessions live
7200 s; the rule id is the keyset's ``faceid_rule_id`` (default ``"1"``).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .tc3 import TcError

VERSION = "2018-03-01"
TOKEN_TTL_S = 7200
_ID = re.compile(r"^\d{17}[\dX]$", re.ASCII)
#: What the person did (or what failed under them) → (ErrCode, ErrMsg, Sim), the codes and
#: messages of Tencent Cloud's 人脸核身 Plus 版 H5 return-code page (1007/31082). Billed there:
#: 0, 1002 (``not_alive``), 2006 (``id_mismatch``), 2016 (``not_same_person``).
RESULTS: dict[str, tuple[int, str, str]] = {
    "pass": (0, "成功", "95.51"),
    "not_same_person": (2016, "无法判断为同一人,请确认身份后重试(相似度未达到通过阈值)", "32.17"),
    "not_alive": (1002, "疑似非真人录制", "0.00"),
    "id_mismatch": (2006, "姓名和身份证号不匹配,请核实身份后重试", "0.00"),
    "abandon": (17, "本次流程未完成", ""),
    "expire": (15, "Token 过期,请重试", ""),
}
#: The unbilled endings of an attempt: the person's face failed (1004), or the service did.
RESULTS.update({name: (code, text, "") for name, code, text in (
    ("face_failed", 1004, "人脸验证失败,请重试"), ("engine_timeout", 1001, "引擎超时,请稍后重试"),
    ("id_database_error", 1006, "证照库出错,请重试"),
    ("network_unstable", 1008, "用户活体过程网络不稳定,请切换网络环境后重试"),
    ("compare_timeout", 2001, "引擎超时,请稍后重试"),
    ("identity_not_found", 2005, "未查询到身份信息,请通过其他渠道验证"),
    ("source_upgrading", 2017, "权威数据源升级中,请稍后再试"))})
#: Results after which the person may try again on the same page (the service failed them).
RETRYABLE = frozenset({"face_failed", "engine_timeout", "id_database_error", "network_unstable",
                       "compare_timeout", "identity_not_found", "source_upgrading"})


@dataclass
class Session:
    token: str
    rule_id: str
    name: str
    id_card: str
    redirect_url: str
    extra: str
    created: float = field(default_factory=time.time)
    result: str | None = None
    reads: int = 0


class FaceId:
    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id
        self.sessions: dict[str, Session] = {}

    def reset(self) -> None:
        self.sessions.clear()

    def handle(self, action: str, params: dict[str, Any], host: str) -> dict[str, Any]:
        if action == "DetectAuth":
            return self.detect_auth(params, host)
        if action == "GetDetectInfoEnhanced":
            return self.detect_info(params)
        raise TcError("InvalidAction", f"接口 {action} 不存在")

    def _rule(self, params: dict[str, Any]) -> None:
        if not params.get("RuleId"):
            raise TcError("MissingParameter", "缺少参数 RuleId")
        if str(params["RuleId"]) != self.rule_id:
            raise TcError("InvalidParameterValue.RuleIdNotExist",
                          "RuleId不存在,请到人脸核身控制台申请")

    def detect_auth(self, params: dict[str, Any], host: str) -> dict[str, Any]:
        self._rule(params)
        id_card, name = params.get("IdCard") or "", params.get("Name") or ""
        if not isinstance(id_card, str) or not isinstance(name, str):
            raise TcError("InvalidParameter", "IdCard 和 Name 必须是字符串")
        if bool(id_card) != bool(name):
            raise TcError("InvalidParameterValue", "IdCard 与 Name 须同时传入")
        if id_card and not _ID.match(id_card):
            raise TcError("InvalidParameterValue", "身份证号码格式错误 (X 须大写)")
        if len(name) > 32:
            raise TcError("InvalidParameterValue", "Name 长度不能超过 32")
        for key, limit in (("RedirectUrl", 1024), ("Extra", 1024)):
            value = params.get(key) or ""
            if not isinstance(value, str) or len(value) > limit:
                raise TcError("InvalidParameterValue", f"{key} 长度不能超过 {limit}")
        token = str(uuid.uuid4()).upper()
        self.sessions[token] = Session(token, str(params["RuleId"]), name, id_card,
                                       str(params.get("RedirectUrl") or ""),
                                       str(params.get("Extra") or ""))
        return {"Url": f"http://{host}/sandbox/tencentcloud/faceid/{token}", "BizToken": token}

    def session(self, token: Any) -> Session:
        found = self.sessions.get(token) if isinstance(token, str) else None
        if found is None:
            raise TcError("InvalidParameterValue.BizTokenIllegal", "BizToken 不合法")
        return found

    def detect_info(self, params: dict[str, Any]) -> dict[str, Any]:
        self._rule(params)
        found = self.session(params.get("BizToken"))
        if time.time() - found.created > TOKEN_TTL_S and found.result is None:
            raise TcError("InvalidParameterValue.BizTokenExpired", "BizToken 已过期")
        found.reads += 1
        code, message, sim = RESULTS[found.result or "abandon"]
        done = found.result not in (None, "abandon", "expire")
        return {"Text": {
            "ErrCode": code, "ErrMsg": message, "IdCard": found.id_card if done else "",
            "Name": found.name if done else "", "OcrNation": None, "OcrAddress": None,
            "OcrBirth": None, "OcrAuthority": None, "OcrValidDate": None, "OcrName": None,
            "OcrIdCard": None, "OcrGender": None, "LiveStatus": code if done else None,
            "LiveMsg": message if done else None, "Comparestatus": code if done else None,
            "Comparemsg": message if done else None, "Sim": sim if done and sim else None,
            "Location": None, "Extra": found.extra, "LivenessDetail": [],
        }, "IdCardData": None, "BestFrame": None, "VideoData": None, "Encryption": None}

    def play(self, token: str, result: Any) -> Session:
        """The person in front of the camera did ``result``."""
        found = self.session(token)
        if result not in RESULTS:
            raise ValueError(f"result must be one of {', '.join(RESULTS)}")
        if found.result not in (None, "abandon", *RETRYABLE):
            raise ValueError("this session is already finished")
        found.result = result
        return found
