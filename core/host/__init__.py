"""CPython-only adapters of the core (pyusb transport, pyscard shim)."""
