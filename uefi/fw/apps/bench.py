"""bench: CPU benchmark of the protocol core, without any I/O.

Two loops that run unchanged on CPython, the MicroPython binary and inside
UEFI, so their figures compare the platforms:

- t1: ECHO APDUs (``80 EE 00 00 Lc data Le``) through the reader-side T=1
  engine (core/t1.py) and the card side (emu/card/t1.py + MiniCard), chained
  at IFSC 32 both ways;
- crc16: the T=1 CRC over a 4 KiB buffer.

    bench [APDUS [SIZE]]      defaults 200 APDUs of 200 bytes
"""

import sys
import time

from ccidkit.core.t1 import T1Reader, crc16
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.card.t1 import T1Card


def _now_us():
    if hasattr(time, "ticks_us"):
        return time.ticks_us()
    return int(time.perf_counter() * 1000000)


def _elapsed_us(t0):
    if hasattr(time, "ticks_diff"):
        return time.ticks_diff(time.ticks_us(), t0)
    return _now_us() - t0


def bench_t1(apdus, size):
    card = T1Card(MiniCard(), ifsc=32)
    reader = T1Reader(ifsc=32)
    blocks = [0]

    def link(block, timeout_us):
        blocks[0] += 1
        return card.receive_block(block)

    data = bytes((i * 31 + 7) & 0xFF for i in range(size))
    apdu = b"\x80\xEE\x00\x00" + bytes((size,)) + data + b"\x00"
    expected = data + b"\x90\x00"
    t0 = _now_us()
    for _ in range(apdus):
        if reader.transceive(apdu, link) != expected:
            raise ValueError("ECHO answered wrongly")
    return _elapsed_us(t0), blocks[0]


def bench_crc(rounds):
    buf = bytes((i * 13) & 0xFF for i in range(4096))
    t0 = _now_us()
    acc = 0
    for _ in range(rounds):
        acc = crc16(buf)
    return _elapsed_us(t0), acc


def main(argv):
    apdus = int(argv[0]) if argv else 200
    size = int(argv[1]) if len(argv) > 1 else 200
    if not 1 <= size <= 255:
        sys.stdout.write("bench: SIZE must be 1..255\n")
        return 2
    us, blocks = bench_t1(apdus, size)
    sys.stdout.write("bench t1: %d APDUs of %d bytes, %d blocks, %d ms, %d APDU/s\n"
                     % (apdus, size, blocks, us // 1000, apdus * 1000000 // max(us, 1)))
    rounds = max(1, apdus // 10)
    us, acc = bench_crc(rounds)
    sys.stdout.write("bench crc16: %d x 4 KiB, %d ms, %d KiB/s (crc %04X)\n"
                     % (rounds, us // 1000, rounds * 4 * 1000000 // max(us, 1), acc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
