"""Built-in feature plugins. Each is registered like a third-party plugin (see hooks.manager)."""
