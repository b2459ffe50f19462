"""The ``gonglun`` command line's commands, one module per kind: ``base`` (what every command
and the plugins' ``register_commands`` share), ``serve`` (the long-running processes),
``maintenance`` (migrate, users add, audit, doctor, outbox) and ``listing`` (plugins, hooks,
jobs, config show). ``gonglun.cli`` builds the parser from them and runs one; nothing here
imports ``gonglun.cli``."""
