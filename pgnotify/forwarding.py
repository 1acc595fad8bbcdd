"""Forwarders: handlers that deliver change events to other systems (pgnotify.handlers.forwarding).

Each is imported on first use, so that only the one a project configures needs its client library:
`{"handler": "pgnotify.forwarding.Webhook", ...}` in PGNOTIFY["HANDLERS"]. docs/forwarding.md says
what every forwarder promises and what a consumer does.
"""

import importlib

# public name -> module under pgnotify.handlers.forwarding
_FORWARDERS = {
    "RedisStreamForwarder": "redis_streams",
    "Webhook": "webhook",
    "RabbitMQ": "rabbitmq",
    "JetStream": "jetstream",
}

__all__ = list(_FORWARDERS)


def __getattr__(name: str):
    if name in _FORWARDERS:
        module = importlib.import_module(f"pgnotify.handlers.forwarding.{_FORWARDERS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'pgnotify.forwarding' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
