"""SMS through Tencent Cloud (NTF-07, NTF-13) with ``tencentcloud-sdk-python``'s ``SendSms``.

``[notify.tencentcloud]``: ``secret_id``, ``secret_key``, ``sms_sdk_app_id``, ``sms_sign_name``
required; ``region`` (default ap-guangzhou), ``endpoint`` (default sms.tencentcloudapi.com),
``timeout`` (s). The template id and parameters come from the scene (``template_id`` of its
``sms`` channel) and its ``sms.j2``. Per-number failures arrive inside ``SendStatusSet`` while
the call succeeds; both kinds are sorted into transient and permanent by code.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from sqlalchemy.orm import Session

from gonglun.accounts.contacts import mainland_phone
from gonglun.plugins.notify.providers.base import (
    DeliveryError,
    Outbound,
    PermanentError,
    Provider,
    TransientError,
)
from gonglun.vendors import bounded, host_of, tencent_client, vendor_settings

REQUIRED = ("secret_id", "secret_key", "sms_sdk_app_id", "sms_sign_name")
LIVE_ENDPOINT = "sms.tencentcloudapi.com"
#: Codes worth retrying, with the vendor's window where it has one (seconds).
TRANSIENT: dict[str, float | None] = {
    "RequestLimitExceeded": 1.0,
    "LimitExceeded.PhoneNumberThirtySecondLimit": 30.0,
    "LimitExceeded.PhoneNumberOneHourLimit": 3600.0,
    "LimitExceeded.DeliveryFrequencyLimit": 60.0,
    "LimitExceeded.GlobalSmsSendingRateLimit": 5.0,
    "ServerNetworkError": None,
    "ClientNetworkError": None,
    "FailedOperation.FailResolvePacket": None,
}


def phone_e164(phone: str | None) -> str | None:
    """A bound phone as Tencent Cloud wants it: ``+86`` and the mainland number."""
    if not phone:
        return None
    number = mainland_phone(phone)
    if number:
        return "+86" + number
    return phone.strip() if re.fullmatch(r"\+[1-9][0-9]{6,14}", phone.strip(), re.ASCII) else None


def classify(code: str, message: str) -> DeliveryError:
    if code in TRANSIENT or code.startswith(("InternalError", "RequestLimitExceeded")):
        return TransientError(code, message, retry_after=TRANSIENT.get(code))
    return PermanentError(code, message)


class TencentSmsProvider(Provider):
    channel = "sms"
    name = "tencentcloud"
    needs_template = True

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        if settings.get("gateway"):
            self.protocol, self.endpoint = host_of(settings["gateway"])
        else:
            self.protocol, self.endpoint = "https", str(settings.get("endpoint") or LIVE_ENDPOINT)
        self.region = str(settings.get("region") or "ap-guangzhou")
        self.timeout = int(bounded(settings.get("timeout"), "notify.tencentcloud.timeout",
                                   10, 1, 60))
        self._local = threading.local()

    @classmethod
    def from_config(cls, rt: Any) -> TencentSmsProvider:
        return cls(vendor_settings(rt, "tencentcloud", REQUIRED))

    def describe(self) -> str:
        return f"tencentcloud sms {self.protocol}://{self.endpoint}"

    def client(self) -> Any:
        """One SDK client per thread: the SDK keeps a connection object per client."""
        from tencentcloud.sms.v20210111 import sms_client

        return tencent_client(self._local, sms_client, "SmsClient", self.settings,
                              endpoint=self.endpoint, protocol=self.protocol,
                              region=self.region, timeout=self.timeout)

    def address(self, session: Session, user: Any) -> str | None:
        return phone_e164(user.phone)

    def send(self, rt: Any, message: Outbound) -> str:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        from tencentcloud.sms.v20210111 import models

        request = models.SendSmsRequest()
        request.from_json_string(json.dumps({
            "PhoneNumberSet": [message.address],
            "SmsSdkAppId": self.settings["sms_sdk_app_id"],
            "SignName": self.settings["sms_sign_name"],
            "TemplateId": message.template_id,
            "TemplateParamSet": [str(p) for p in message.content.get("params", [])],
            "SessionContext": message.key[:200],
        }))
        try:
            response = self.client().SendSms(request)
        except TencentCloudSDKException as exc:
            raise classify(str(exc.get_code()), str(exc.get_message())) from None
        except Exception as exc:  # the SDK lets requests' connection errors through
            raise TransientError("ClientNetworkError", f"{type(exc).__name__}: {exc}") from None
        statuses = response.SendStatusSet or []
        if not statuses:
            # An error the SDK failed to parse comes back as an empty response (providers.md).
            raise TransientError("EmptyResponse", "SendSms answered no SendStatusSet")
        status = statuses[0]
        if status.Code != "Ok":
            raise classify(str(status.Code), str(status.Message))
        return str(status.SerialNo)
