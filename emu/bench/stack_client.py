"""The pyscard side of ``ccidkit bench stack``: a client process that times
pyscard's ``SCardTransmit`` through a pcscd.

Run as ``python -m ccidkit.emu.bench.stack_client`` with PCSCLITE_CSOCK_NAME
pointing at the private pcscd, a JSON job on stdin::

    {"reader": "Virtual PCD 00 00", "protocol": 2, "wait_s": 20,
     "setup": ["00A4000C022F00"], "warmup": 20,
     "series": [{"name": "short", "apdu": "00B0000005", "count": 1000,
                 "expect": "00010203049000"}]}

and the result as JSON on stdout: for each series the wall time of every
round trip (ns, time.perf_counter_ns around the call) and this process's
CPU time for the series. A process of its own, so the card side (a thread
of the bench process) and this client do not share one interpreter lock.
"""

import json
import sys
import time


def _fail(msg):
    json.dump({"error": msg}, sys.stdout)
    sys.stdout.write("\n")
    return 1


def _wait_card(scard, ctx, reader, wait_s):
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        hr, states = scard.SCardGetStatusChange(ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        if hr == scard.SCARD_S_SUCCESS and states[0][1] & scard.SCARD_STATE_PRESENT:
            return True
        time.sleep(0.05)
    return False


def run(job):
    from smartcard import scard
    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != scard.SCARD_S_SUCCESS:
        return {"error": "SCardEstablishContext: %s" % scard.SCardGetErrorMessage(hr)}
    try:
        reader = job["reader"]
        if not _wait_card(scard, ctx, reader, float(job.get("wait_s", 20))):
            return {"error": "no card in %s" % reader}
        hr, hcard, proto = scard.SCardConnect(ctx, reader, scard.SCARD_SHARE_SHARED,
                                              int(job.get("protocol", scard.SCARD_PROTOCOL_T1)))
        if hr != scard.SCARD_S_SUCCESS:
            return {"error": "SCardConnect: %s" % scard.SCardGetErrorMessage(hr)}
        pci = scard.SCARD_PCI_T1 if proto == scard.SCARD_PROTOCOL_T1 else scard.SCARD_PCI_T0
        out = {"protocol": proto, "series": []}
        try:
            for a in job.get("setup", []):
                hr, resp = scard.SCardTransmit(hcard, pci, list(bytes.fromhex(a)))
                if hr != scard.SCARD_S_SUCCESS:
                    return {"error": "setup SCardTransmit: %s" % scard.SCardGetErrorMessage(hr)}
            for s in job["series"]:
                apdu = list(bytes.fromhex(s["apdu"]))
                expect = list(bytes.fromhex(s["expect"]))
                for _ in range(int(job.get("warmup", 0))):
                    hr, resp = scard.SCardTransmit(hcard, pci, apdu)
                times = []
                bad = 0
                now = time.perf_counter_ns
                c0 = time.process_time()
                for _ in range(int(s["count"])):
                    t0 = now()
                    hr, resp = scard.SCardTransmit(hcard, pci, apdu)
                    t1 = now()
                    times.append(t1 - t0)
                    if hr != scard.SCARD_S_SUCCESS or resp != expect:
                        bad += 1
                c1 = time.process_time()
                out["series"].append({"name": s["name"], "times_ns": times, "bad": bad,
                                      "client_cpu_s": c1 - c0})
        finally:
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
        return out
    finally:
        scard.SCardReleaseContext(ctx)


def main():
    try:
        job = json.load(sys.stdin)
    except ValueError as e:
        return _fail("bad job: %s" % e)
    try:
        res = run(job)
    except ImportError as e:
        return _fail("pyscard is not installed: %s" % e)
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")
    return 0 if "error" not in res else 1


if __name__ == "__main__":
    sys.exit(main())
