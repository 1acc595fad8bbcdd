from django.apps import AppConfig


class PeerConfig(AppConfig):
    name = "bench.pgpubsub_peer"
    label = "pgpubsub_peer"

    def ready(self):
        from . import listeners  # noqa: F401 - registers the callback and its trigger
