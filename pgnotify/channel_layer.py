"""pgnotify's PostgreSQL channel layer, for CHANNEL_LAYERS:
`"BACKEND": "pgnotify.channel_layer.PostgresChannelLayer"` (needs `pgnotify[postgres-layer]`)."""

from .web.layers.postgres import PostgresChannelLayer

__all__ = ["PostgresChannelLayer"]
