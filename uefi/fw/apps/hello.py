"""hello: the default app; shows that MicroPython runs inside the firmware."""

import binascii
import sys

from ccidkit.uefi.fw import efi


def main(argv):
    w = sys.stdout.write
    v = sys.implementation.version
    w("hello from ccidkit: MicroPython %d.%d.%d inside UEFI\n" % (v[0], v[1], v[2]))
    t = efi.get_time()
    w("firmware time %04d-%02d-%02d %02d:%02d:%02d\n" % (t[0], t[1], t[2], t[3], t[4], t[5]))
    info = efi.runtime_info()
    w("tsc %s Hz, %s embedded files, started from %s\n" % (
        info.get("tsc_hz"), info.get("files"),
        "the shell" if info.get("from_shell") == "1" else "the boot manager"))
    try:
        w("random bytes from EFI_RNG_PROTOCOL: %s\n" % binascii.hexlify(efi.random_bytes(8)).decode())
    except efi.EfiError as e:
        w("no random bytes: %s\n" % e)
    if argv:
        w("argv: %s\n" % " ".join(argv))
    return 0
