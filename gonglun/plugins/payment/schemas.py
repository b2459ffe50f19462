"""JSON schemas of the payment requests, for the OpenAPI document."""

CREATE_SCHEMA = {
    "type": "object",
    "required": ["scene", "amount", "method"],
    "properties": {
        "scene": {"type": "string", "examples": ["recharge_money"]},
        "amount": {"type": "integer", "minimum": 1, "description": "fen"},
        "method": {"type": "string", "enum": ["money", "alipay", "wxpay"]},
        "channel": {"type": "string",
                    "enum": ["balance", "page", "wap", "app", "h5", "jsapi", "native"]},
        "title": {"type": "string", "maxLength": 128},
        "seller_id": {"type": "integer"},
        "openid": {"type": "string"},
        "return_url": {"type": "string"},
    },
}
