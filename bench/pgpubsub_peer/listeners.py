import time

import pgpubsub

from .channels import PeerOrderChannel

received = []  # perf_counter() of each callback


@pgpubsub.post_insert_listener(PeerOrderChannel)
def on_insert(old, new):
    received.append(time.perf_counter())
