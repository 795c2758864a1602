"""The MicroPython end of `ccidkit bench footprint` (a script, run by footprint.py).

    micropython footprint_mp.py import MODULE [MODULE ...]
        -> "IMPORT <us>": the time to import the modules (time.ticks_us)
    micropython footprint_mp.py heap t1_echo|phonebook RECORDING ARG sample|plain
        -> "HEAP key=value ...": gc.mem_alloc() after gc.collect() at start,
           after the kit's imports, after the harness's, and at the start of
           every USB transfer of the replayed workload (``sample``); ``plain``
           runs the workload without probes (the -X heapsize bisection).

Nothing from ccidkit is imported before the measurement starts. MICROPYPATH
holds the bundle under test and the folder of footprint_work.py.
"""

import sys
import time

try:
    import gc
except ImportError:       # CPython without gc is not a case; keeps the script importable
    gc = None


def _alloc():
    gc.collect()
    return gc.mem_alloc()


def time_imports(names):
    t0 = time.ticks_us()
    for n in names:
        __import__(n)
    return time.ticks_diff(time.ticks_us(), t0)


def heap(workload, path, arg, sampling):
    base = _alloc()
    import ccidkit.core.driver   # noqa: F401  (the minimal bundle's roots)
    import ccidkit.core.t1       # noqa: F401
    import ccidkit.core.apdu     # noqa: F401
    kit = _alloc()
    import footprint_work
    harness = _alloc()
    state = {"peak": harness, "phase": "setup", "exchange_peak": 0, "before": 0,
             "samples": 0}

    def sample():
        a = _alloc()
        state["samples"] += 1
        if a > state["peak"]:
            state["peak"] = a
        if state["phase"] == "exchange" and a > state["exchange_peak"]:
            state["exchange_peak"] = a

    def mark(label):
        if not sampling:
            return
        a = _alloc()
        if label == "connected":
            state["phase"] = "exchange"
            state["before"] = a
            state["exchange_peak"] = a
        elif label == "done":
            sample()
            state["phase"] = "after"

    with open(path) as f:
        t = footprint_work.ReplayTransport(f, sample if sampling else None)
        if workload == "t1_echo":
            out = footprint_work.t1_echo(t, mark, int(arg))
        else:
            out = footprint_work.phonebook(t, mark, int(arg))[0]
        transfers = t.transfers
    end = _alloc() if sampling else 0
    return ("HEAP base=%d kit=%d harness=%d peak=%d before=%d exchange_peak=%d end=%d "
            "samples=%d transfers=%d result=%d heap_total=%d"
            % (base, kit, harness, state["peak"], state["before"], state["exchange_peak"],
               end, state["samples"], transfers, out, gc.mem_alloc() + gc.mem_free()))


def main(argv):
    if len(argv) >= 2 and argv[0] == "import":
        print("IMPORT %d" % time_imports(argv[1:]))
        return 0
    if len(argv) == 5 and argv[0] == "heap" and argv[1] in ("t1_echo", "phonebook"):
        print(heap(argv[1], argv[2], argv[3], argv[4] == "sample"))
        return 0
    print("usage: footprint_mp.py import MODULE... | heap t1_echo|phonebook FILE ARG sample|plain")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
