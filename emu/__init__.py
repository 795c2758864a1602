"""ccidkit.emu: virtual smart cards, emulated CCID readers and their bridges."""
