"""The WAL source: change events decoded by logical decoding (pgoutput) from a replication slot.

psycopg's libpq layer and the standard library only, like the rest of the listener core.
"""

from .changes import WalTable, WalTarget
from .source import WalListener

__all__ = ["WalListener", "WalTable", "WalTarget"]
