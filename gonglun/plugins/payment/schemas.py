"""JSON schemas of the payment requests, for the OpenAPI document."""

INT64 = 2**63 - 1

CREATE_SCHEMA = {
    "type": "object",
    "required": ["scene", "amount", "method"],
    "properties": {
        "scene": {"type": "string", "maxLength": 32, "examples": ["recharge_money"]},
        "amount": {"type": "integer", "minimum": 1, "maximum": INT64, "description": "fen"},
        "method": {"type": "string", "enum": ["money", "alipay", "wxpay"]},
        "channel": {"type": "string",
                    "enum": ["balance", "page", "wap", "app", "h5", "jsapi", "native"]},
        "title": {"type": "string", "maxLength": 128},
        "seller_id": {"type": "integer", "minimum": 1, "maximum": INT64},
        "openid": {"type": "string", "maxLength": 128},
        "return_url": {"type": "string", "maxLength": 512,
                       "description": "http(s) on a host of server.return_hosts"},
    },
}

LOOKUP_SCHEMA = {
    "type": "object",
    "required": ["order"],
    "properties": {"order": {"type": "string", "pattern": "^[0-9]{1,32}$"}},
}
