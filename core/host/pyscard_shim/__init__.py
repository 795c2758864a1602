"""A pyscard-compatible subset over ccidkit's PC/SC layer, importable as ``smartcard``
only while activated (see ccidkit.core.host.shim_loader and ``ccidkit pyscard-run``).

Modules: System (readers), CardConnection (connect, transmit, control, getATR),
scard (the flat SCard* functions and constants), util (toHexString, toBytes,
toASCIIString), Exceptions, Card, CardType, CardRequest, CardMonitoring,
CardConnectionObserver, ATR. Behaviour follows pyscard 2.x for what is there.
"""

from .System import listReaders

__all__ = ["listReaders"]
