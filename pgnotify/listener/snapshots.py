"""PostgreSQL transaction snapshots ('xmin:xmax:xip,...'), parsed to test visibility in Python."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    text: str
    xmin: int
    xmax: int
    in_progress: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> "Snapshot":
        xmin, xmax, xip = text.split(":")
        return cls(text, int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def sees(self, txid: int) -> bool:
        """True when a transaction committed before this snapshot was taken (pg_visible_in_snapshot)."""
        return txid < self.xmin or (txid < self.xmax and txid not in self.in_progress)
