"""django-pgpubsub's listen loop draining `count` trigger notifications (one INSERT of `count`
rows while it listens), in the peer venv:

    DJANGO_SETTINGS_MODULE=bench.pgpubsub_peer.settings python -m bench.pgpubsub_peer.drain COUNT
    # prints {"events_per_s": ...}
"""

import json
import os
import select
import sys
import threading
import time

import django
import psycopg


def main() -> None:
    os.environ["PGPUBSUB_USE_PSYCOPG_V3"] = "True"
    django.setup()
    from pgpubsub.listen import listen_to_channels, process_notifications

    from .channels import PeerOrderChannel
    from .listeners import received

    count = int(sys.argv[1])
    wrapper = listen_to_channels([PeerOrderChannel])

    def insert():
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("INSERT INTO pgpubsub_peer_peerorder (status, quantity, total) "
                         "SELECT 'new', 1, 0 FROM generate_series(1, %s)", [count])

    threading.Thread(target=insert).start()
    deadline = time.monotonic() + 300
    while len(received) < count and time.monotonic() < deadline:  # pgpubsub's own listen loop, bounded
        if select.select([wrapper.connection], [], [], 1) != ([], [], []):
            process_notifications(wrapper)
    elapsed = received[-1] - received[0]
    print(json.dumps({"received": len(received), "events_per_s": round((len(received) - 1) / elapsed)}))


if __name__ == "__main__":
    main()
