"""gc_stress: MicroPython's GC must see every live object inside UEFI.

The wasm build's GC scans only linear memory; values a function keeps in
wasm locals are visible only because the builder rewrote the wasm with
binaryen's --spill-pointers. This app keeps many objects alive in the
locals of a deep call chain, allocates garbage and collects at the bottom,
then checks every object on the way back up; some iterations raise through
the whole chain instead (MicroPython's exceptions unwind with wasm
exception handling). Any lost object shows as a wrong value, a TypeError or
a trap.

    gc_stress [ITERATIONS [DEPTH [COLLECT_EVERY]]]   defaults 2000 24 100
"""

import gc
import sys

from ccidkit.core.errors import CcidkitError
from ccidkit.uefi.fw import efi


class StressError(CcidkitError):
    pass


class _Unwind(CcidkitError):
    pass


def _blob(i, d, n):
    return bytes(((i * 7 + d * 13 + k) & 0xFF) for k in range(n))


def _frame(i, d, depth, collect, garbage):
    # many live locals of different kinds, all derived from (i, d)
    b = _blob(i, d, 24 + (d % 5))
    ba = bytearray(b)
    ba[0] = (ba[0] + 1) & 0xFF
    s = "f%d-%d" % (i, d)
    lst = [i, d, s, (d, i)]
    dct = {"i": i, "d": d, "s": s}
    tup = (b, s, d)
    big = i * 1000003 + d * (1 << 70)
    # garbage in every frame too: automatic collections then start from
    # allocations deep in the chain, not only from gc.collect()
    scratch = bytearray(2048)
    scratch[d] = 1
    scratch = None
    if d < depth:
        below = _frame(i, d + 1, depth, collect, garbage)
    else:
        junk = []
        for k in range(garbage):
            junk.append(bytearray(64 + (k % 7) * 32))
            junk.append("g%d" % k)
        junk = None
        if collect:
            gc.collect()
        if i % 10 == 3:
            raise _Unwind("unwind at %d" % i)
        below = []
    # verify everything this frame held across the calls and collections
    if b != _blob(i, d, 24 + (d % 5)):
        raise StressError("bytes changed at iteration %d depth %d" % (i, d))
    if ba[0] != (b[0] + 1) & 0xFF or bytes(ba[1:]) != b[1:]:
        raise StressError("bytearray changed at iteration %d depth %d" % (i, d))
    if s != "f%d-%d" % (i, d) or lst != [i, d, s, (d, i)]:
        raise StressError("str/list changed at iteration %d depth %d" % (i, d))
    if dct["i"] != i or dct["d"] != d or dct["s"] != s or len(dct) != 3:
        raise StressError("dict changed at iteration %d depth %d" % (i, d))
    if tup[0] is not b or tup[1] != s or tup[2] != d:
        raise StressError("tuple changed at iteration %d depth %d" % (i, d))
    if big != i * 1000003 + d * (1 << 70):
        raise StressError("long int changed at iteration %d depth %d" % (i, d))
    below.append(d)
    return below


def run(iterations, depth, collect_every, out):
    t0 = efi.ticks_us()
    unwound = 0
    automatic = 0            # collections the allocator started by itself
    free = gc.mem_free()
    for i in range(iterations):
        collect = collect_every > 0 and i % collect_every == 0
        try:
            chain = _frame(i, 0, depth, collect, 8)
        except _Unwind:
            unwound += 1
            chain = None
        now = gc.mem_free()
        if now > free + 65536 and not collect:
            automatic += 1
        free = now
        if chain is None:
            continue
        if chain != list(range(depth, -1, -1)):
            raise StressError("call chain result wrong at iteration %d" % i)
        if i % 500 == 0:
            out("gc_stress: iteration %d, free %d\n" % (i, gc.mem_free()))
    return unwound, automatic, efi.ticks_us() - t0


def main(argv):
    iterations = int(argv[0]) if argv else 2000
    depth = int(argv[1]) if len(argv) > 1 else 24
    collect_every = int(argv[2]) if len(argv) > 2 else 100
    out = sys.stdout.write
    out("gc_stress: %d iterations, depth %d, gc.collect() every %d\n"
        % (iterations, depth, collect_every))
    try:
        unwound, automatic, us = run(iterations, depth, collect_every, out)
    except StressError as e:
        out("gc_stress: FAIL %s\n" % e)
        return 1
    out("gc_stress: PASS %d iterations (%d unwound by exceptions, %d automatic "
        "collections seen) in %d ms\n" % (iterations, unwound, automatic, us // 1000))
    return 0
