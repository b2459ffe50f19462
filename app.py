"""The ASGI entry point: ``uvicorn app:app`` (``gonglun serve`` does the same with its options).

Relative paths in the configuration (the SQLite file, the sandbox keys, logs) are taken from this
folder, whatever the working directory uvicorn was started from (``GONGLUN_HOME`` overrides it).
"""

import os
from pathlib import Path

from gonglun.api import create_app
from gonglun.config import Config

os.umask(0o077)  # the SQLite file, logs and keys this process creates are private
config = Config.load(home=Path(__file__).resolve().parent)
app = create_app(config)
