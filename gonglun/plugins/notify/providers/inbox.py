"""The inbox / service-account channel (NTF-04, NTF-05): a stored message per delivery."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from gonglun.db import insert_ignore_returning_id
from gonglun.plugins.notify.models import Message
from gonglun.plugins.notify.providers.base import Outbound, Provider


class InboxProvider(Provider):
    channel = "inbox"
    name = "inbox"

    def send(self, rt: Any, message: Outbound) -> str:
        c, extra = message.content, message.extra
        user_id = self.recipient(message)
        with rt.db.write() as session:
            values = {
                "user_id": user_id, "delivery_id": message.delivery_id,
                "scene": message.scene, "category": str(extra.get("category", ""))[:32],
                "account": str(extra.get("account", ""))[:32],
                "account_name": str(extra.get("account_name", ""))[:64],
                "title": str(c.get("title", ""))[:255], "first": str(c.get("first", ""))[:255],
                "body": str(c.get("body", "")),
                "rows": json.dumps(c.get("rows", []), ensure_ascii=False),
                "remark": str(c.get("remark", ""))[:512], "link": str(c.get("link", ""))[:512],
                "created_at": extra["at"], "read_at": None,
            }
            found = insert_ignore_returning_id(session, Message.__table__, values)
            if found is None:  # a retry after the insert committed: the same message
                found = session.scalar(
                    select(Message.id).where(Message.delivery_id == message.delivery_id))
        return f"message:{found}"
