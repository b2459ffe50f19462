"""WeChat Pay notifications: ``TRANSACTION.SUCCESS`` and ``REFUND.*``, the resource encrypted
with the APIv3 key (AEAD_AES_256_GCM); the notifier signs them as the order's mode asks."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..common import now, wechat_nonce, wechat_time
from ..store import WXPAY, Refund, Trade
from .base import WxpayBase
from .wire import ORIGINAL_ACCOUNT, REFUND_SUMMARY


class WxpayNotifications(WxpayBase):
    """Encrypted notifications, queued on the sandbox's notifier."""

    def _encrypt(self, plain: dict[str, Any], ad: str) -> dict[str, str]:
        nonce = wechat_nonce(12)
        text = json.dumps(plain, ensure_ascii=False, separators=(",", ":"))
        ciphertext = AESGCM(self.apiv3_key).encrypt(nonce.encode(), text.encode(), ad.encode())
        return {
            "original_type": ad,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "associated_data": ad,
            "nonce": nonce,
        }

    def _send(self, *, url: str, event: str, summary_text: str, resource: dict[str, Any],
              original_type: str, mode: str, summary: dict[str, Any]) -> list[str]:
        ident = str(uuid.uuid4())
        body = json.dumps({
            "id": ident,
            "create_time": wechat_time(now()),
            "resource_type": "encrypt-resource",
            "event_type": event,
            "summary": summary_text,
            "resource": self._encrypt(resource, original_type),
        }, ensure_ascii=False, separators=(",", ":"))
        summary = {"event_type": event, **summary, "serial_mode": mode}
        return self.sb.notifier.enqueue(
            channel=WXPAY, event=event, url=url, body=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            summary=summary, notify_id=ident,
        )

    def notify_payment(self, trade: Trade) -> list[str] | None:
        if not trade.notify_url:
            return None
        return self._send(
            url=trade.notify_url, event="TRANSACTION.SUCCESS", summary_text="支付成功",
            resource=self.transaction_view(trade), original_type="transaction",
            mode=trade.serial_mode,
            summary={"out_trade_no": trade.out_trade_no, "transaction_id": trade.channel_no,
                     "trade_state": trade.state, "amount": trade.amount},
        )

    def notify_refund(self, trade: Trade, refund: Refund) -> list[str] | None:
        url = refund.notify_url or trade.notify_url
        if not url or refund.status not in REFUND_SUMMARY:
            return None
        resource: dict[str, Any] = {
            "mchid": self.mchid,
            "out_trade_no": trade.out_trade_no,
            "transaction_id": trade.channel_no,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": refund.status,
            "user_received_account": refund.extra.get("account", ORIGINAL_ACCOUNT),
            "amount": {"total": refund.total, "refund": refund.amount,
                       "payer_total": refund.total, "payer_refund": refund.amount},
        }
        if refund.success_at is not None:
            resource["success_time"] = wechat_time(refund.success_at)
        return self._send(
            url=url, event=f"REFUND.{refund.status}", summary_text=REFUND_SUMMARY[refund.status],
            resource=resource, original_type="refund", mode=refund.serial_mode,
            summary={"out_trade_no": trade.out_trade_no, "out_refund_no": refund.out_refund_no,
                     "refund_status": refund.status, "refund": refund.amount},
        )
