from dataclasses import dataclass

from pgpubsub.channel import TriggerChannel

from .models import PeerOrder


@dataclass
class PeerOrderChannel(TriggerChannel):
    model = PeerOrder
