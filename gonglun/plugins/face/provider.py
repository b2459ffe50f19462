"""Face providers: an adapter chosen by the ``face_provider`` hook (decision 25).

A provider starts a check for a name and ID number (the user opens the answered URL, the
vendor's H5 page, and is sent back) and later tells the verdict. The built-in one is Tencent
Cloud FaceID (慧眼) through ``tencentcloud-sdk-python-faceid``: ``DetectAuth`` then
``GetDetectInfoEnhanced``; the provider compares the face with the ID photo of the name and
number it was given. ``[face.tencentcloud]`` names the keys (``secret_id``, ``secret_key``,
``rule_id``); without them the keys come from ``face.keyset`` or the bundled sandbox, exactly
as notify's providers do.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

REQUIRED = ("secret_id", "secret_key")
LIVE_ENDPOINT = "faceid.tencentcloudapi.com"
#: Return codes of a finished session and what Tencent Cloud bills for them (document
#: 1007/31082, 人脸核身 Plus 版 微信 H5 返回码): a pass, a spoofed recording, a name that does
#: not match the number and a face below the similarity threshold are billed; nothing else is.
BILLED = frozenset({0, 1002, 2006, 2016})
#: The service failed, not the person (call and service errors, WeChat, engine timeouts, the ID
#: photo database, the user's network, the authority source being upgraded): the check ends
#: ``error``, unbilled, and the person may start another one.
OUTAGE = frozenset({1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 201, 202, 203, 204, 1001, 1006, 1007,
                    1008, 2001, 2005, 2007, 2008, 2017})
NOT_FINISHED, EXPIRED = 17, 15


class ProviderError(Exception):
    """The provider could not be reached or refused the call: nothing is billed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Started:
    token: str
    url: str


@dataclass(frozen=True)
class Verdict:
    #: ``pending`` (not finished yet), ``pass``, ``fail`` (compared, refused), ``abandoned``
    #: (the session expired unfinished), ``error`` (the service failed; not billed).
    outcome: str
    code: int | None
    message: str
    sim: float | None = None
    name: str | None = None
    id_number: str | None = None
    extra: str | None = None
    #: The provider bills this verdict; None: every ``pass`` and ``fail`` (a provider that
    #: does not say).
    billed: bool | None = None

    @property
    def completed(self) -> bool:
        """The provider billed the check: one unit of quota is used (FACE-06)."""
        if self.outcome not in ("pass", "fail"):
            return False
        return True if self.billed is None else self.billed


class FaceProvider:
    name = "provider"

    def start(self, *, name: str, id_number: str, redirect_url: str, extra: str) -> Started:
        raise NotImplementedError

    def verdict(self, token: str) -> Verdict:
        raise NotImplementedError


def classify(code: int | None, message: str, sim: float | None, min_sim: float) -> str:
    if code is None or code == NOT_FINISHED:
        return "pending"
    if code == EXPIRED:
        return "abandoned"
    if code == 0:
        return "pass" if sim is not None and sim >= min_sim else "fail"
    if code in OUTAGE:
        return "error"
    return "fail"  # the person failed (billed or not: ``BILLED`` says)


class TencentFaceProvider(FaceProvider):
    name = "tencentcloud"

    def __init__(self, settings: dict[str, Any]) -> None:
        from gonglun.vendors import bounded, host_of

        self.settings = settings
        if settings.get("gateway"):
            self.protocol, self.endpoint = host_of(settings["gateway"])
        else:
            self.protocol = "https"
            self.endpoint = str(settings.get("endpoint") or LIVE_ENDPOINT)
        self.region = str(settings.get("region") or "")
        self.rule_id = str(settings.get("rule_id") or settings.get("faceid_rule_id") or "")
        self.min_sim = float(bounded(settings.get("min_similarity"),
                                     "face.tencentcloud.min_similarity", 70, 0, 100))
        self.timeout = int(bounded(settings.get("timeout"), "face.tencentcloud.timeout",
                                   10, 1, 60))
        self._local = threading.local()

    @classmethod
    def from_config(cls, rt: Any) -> TencentFaceProvider:
        from gonglun.vendors import vendor_settings

        return cls(vendor_settings(rt, "tencentcloud", REQUIRED, plugin="face"))

    def client(self) -> Any:
        from tencentcloud.faceid.v20180301 import faceid_client

        from gonglun.vendors import tencent_client

        return tencent_client(self._local, faceid_client, "FaceidClient", self.settings,
                              endpoint=self.endpoint, protocol=self.protocol,
                              region=self.region, timeout=self.timeout)

    def _call(self, action: str, params: dict[str, Any]) -> Any:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        from tencentcloud.faceid.v20180301 import models

        request = getattr(models, f"{action}Request")()
        request.from_json_string(json.dumps(params))
        try:
            return getattr(self.client(), action)(request)
        except TencentCloudSDKException as exc:
            raise ProviderError(str(exc.get_code()), str(exc.get_message())) from None
        except Exception as exc:  # the SDK lets requests' connection errors through
            raise ProviderError("ClientNetworkError", f"{type(exc).__name__}: {exc}") from None

    def start(self, *, name: str, id_number: str, redirect_url: str, extra: str) -> Started:
        answer = self._call("DetectAuth", {"RuleId": self.rule_id, "IdCard": id_number,
                                           "Name": name, "RedirectUrl": redirect_url,
                                           "Extra": extra})
        if not answer.BizToken or not answer.Url:
            # An error the SDK failed to parse comes back as an empty response (providers.md).
            raise ProviderError("EmptyResponse", "DetectAuth answered no BizToken")
        return Started(str(answer.BizToken), str(answer.Url))

    def verdict(self, token: str) -> Verdict:
        answer = self._call("GetDetectInfoEnhanced", {"BizToken": token,
                                                      "RuleId": self.rule_id, "InfoType": "1"})
        text = answer.Text
        if text is None:
            raise ProviderError("EmptyResponse", "GetDetectInfoEnhanced answered no Text")
        try:
            sim = float(text.Sim) if text.Sim not in (None, "") else None
        except ValueError:
            sim = None
        code = int(text.ErrCode) if text.ErrCode is not None else None
        message = str(text.ErrMsg or "")
        return Verdict(classify(code, message, sim, self.min_sim), code, message[:255], sim,
                       text.Name, text.IdCard, text.Extra, billed=code in BILLED)


def get_provider(rt: Any) -> FaceProvider:
    """The provider the ``face_provider`` hook answers, built once per runtime."""
    provider = rt.__dict__.get("_face_provider")
    if provider is None:
        provider = rt.hooks.decide("face_provider")
        if provider is None:
            raise ProviderError("Unavailable", "no face provider")
        rt.__dict__["_face_provider"] = provider
    return provider
