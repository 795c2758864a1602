"""ccidkit.core: the portable USB CCID / ISO/IEC 7816-3 protocol core.

Every module here (except host/) is written in the restricted subset of
docs/subset.md: it runs unchanged on CPython and MicroPython and never touches
a socket, a file or a clock (sans-I/O).
"""

VERSION = "0.1.0"
