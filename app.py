"""The ASGI entry point: ``uvicorn app:app`` (``gonglun serve`` does the same with its options)."""

from gonglun.api import create_app

app = create_app()
