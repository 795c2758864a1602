"""Fuzz targets and campaigns: every decoder and state machine a peer can feed.

For each target the only allowed outcomes of one input are a value or the
documented exception of core/contract.py (the ``allowed`` classes below);
anything else — another exception, a hang past the per-input guard, an
allocation error — is a finding.

Engines: ``random`` (always available: seeded mutation of a corpus of valid
messages plus random bytes, in process) and ``atheris`` (coverage-guided
libFuzzer, when the atheris package is installed; run in a child process
since libFuzzer owns its process).
"""

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time

from ccidkit.core import atr as A, ccid as C, t1 as T1, apdu as AP
from ccidkit.emu import vicc, vscard, usbredir
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.card.t1 import T1Card

TARGETS = ("atr", "ccid", "t1", "apdu", "vicc", "vscard", "usbredir")
PER_INPUT_SECONDS = 2.0      # the hang guard for one input
MAX_INPUT = 4096
MAX_T1_STEPS = 200           # blocks one T=1 exchange may take from the fuzzer


class Hang(Exception):
    """An input ran past PER_INPUT_SECONDS."""


def _chunks(data):
    """Split data at positions given by its first byte (partial reads)."""
    if not data:
        return [b""]
    step = (data[0] % 7) + 1
    return [data[i:i + step] for i in range(1, len(data), step)] or [b""]


# -- targets: data -> anything; raise only the allowed classes -----------------

def _t_atr(data):
    a = A.parse_atr(data)
    a.explain()
    a.as_dict()


def _t_ccid(data):
    try:
        C.decode_message(data, slots=8)
    except C.CCIDError:
        pass
    r = C.BulkInReassembler(max_packet_size=64)
    for piece in _chunks(data):
        r.feed(piece)


def _t1_blocks(data):
    out = []
    pos = 0
    while pos < len(data) and len(out) < MAX_T1_STEPS:
        n = (data[pos] % 12) + 1
        out.append(data[pos + 1:pos + 1 + n])
        pos += 1 + n
    return out


def _t_t1(data):
    try:
        T1.decode_block(data)
    except T1.T1Error:
        pass
    card = T1Card(MiniCard())
    card.receive_block(data)
    blocks = _t1_blocks(data)
    it = iter(blocks)

    def link(block, timeout_us):
        card_answer = card.receive_block(block)
        try:
            forged = next(it)
        except StopIteration:
            return card_answer
        return forged if forged else None
    eng = T1.T1Reader(max_wtx=8)
    eng.transceive(b"\x00\xB0\x00\x00\x10", link)


_USIM = []


def _t_apdu(data):
    for raw in (data, data[:5 + (data[4] if len(data) > 4 else 0)]):
        try:
            AP.CommandAPDU.parse(raw)
        except AP.APDUError:
            pass
    rsp = MiniCard().process_apdu(data)
    if len(rsp) < 2:
        raise AssertionError("card answered %r" % (rsp,))
    if not _USIM:
        from ccidkit.emu.cards import make_card
        _USIM.append(make_card("usim"))
    rsp = _USIM[0].process_apdu(data)
    if len(rsp) < 2:
        raise AssertionError("usim answered %r" % (rsp,))
    AP.ResponseAPDU.parse(data)


def _t_vicc(data):
    d = vicc.Decoder()
    for piece in _chunks(data):
        d.feed(piece)


def _t_vscard(data):
    d = vscard.Decoder()
    for piece in _chunks(data):
        for m in d.feed(piece):
            if m.type == vscard.VSC_Init:
                vscard.decode_init(m.payload)
            elif m.type == vscard.VSC_Error:
                vscard.decode_error(m.payload)


def _guest_hello():
    return struct.pack("<III", usbredir.HELLO, 68, 0) + b"qemu".ljust(64, b"\0") + \
        struct.pack("<I", 0xFFFF)


def _t_usbredir(data):
    c = usbredir.Codec("host")
    if data[:1] == b"\x00":
        c.feed(_guest_hello())
        data = data[1:]
    for piece in _chunks(data):
        c.feed(piece)


TARGET_FN = {"atr": _t_atr, "ccid": _t_ccid, "t1": _t_t1, "apdu": _t_apdu,
             "vicc": _t_vicc, "vscard": _t_vscard, "usbredir": _t_usbredir}

ALLOWED = {
    "atr": (A.ATRError,),
    "ccid": (C.CCIDError,),
    "t1": (T1.T1Error,),
    "apdu": (AP.APDUError,),
    "vicc": (vicc.ViccError,),
    "vscard": (vscard.VSCardError,),
    "usbredir": (usbredir.UsbredirError,),
}


def seeds(target):
    """Valid messages to mutate from."""
    if target == "atr":
        return [MiniCard().atr, bytes.fromhex("3B9F96801FC78031E073FE211B63F100AD830F9000C7"),
                bytes.fromhex("3F")]
    if target == "ccid":
        return [bytes.fromhex("80 05000000 00 01 00 00 00 6F01029000"),
                bytes.fromhex("81 00000000 01 02 01 00 00"), bytes.fromhex("50 03"),
                bytes.fromhex("51 00 01 02")]
    if target == "t1":
        return [T1.i_block(0, False, b"\x90\x00").encode(), T1.r_block(1).encode(),
                T1.s_block(T1.S_WTX, False, b"\x02").encode(),
                T1.s_block(T1.S_IFS, False, b"\x20").encode()]
    if target == "apdu":
        return [bytes.fromhex("00A4040009F0636369646B69740100"), bytes.fromhex("00B0000010"),
                bytes.fromhex("80EE000000000301020300 00".replace(" ", "")),
                bytes.fromhex("A0A4000002 3F00".replace(" ", ""))]
    if target == "vicc":
        return [vicc.encode_control(1), vicc.encode_frame(bytes.fromhex("00A4040000")),
                vicc.encode_control(4)]
    if target == "vscard":
        return [vscard.encode_init(), vscard.encode(vscard.VSC_APDU, 0, b"\x00\xA4\x04\x00"),
                vscard.encode_error(0)]
    return [b"\x00" + struct.pack("<IIQ", usbredir.RESET, 0, 1),
            b"\x00" + struct.pack("<IIQ", usbredir.SET_CONFIGURATION, 1, 2) + b"\x01",
            _guest_hello()]


def mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randint(0, 5)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b.insert(rng.randint(0, len(b)), rng.randrange(256))
        elif op == 2 and b:
            del b[rng.randrange(len(b))]
        elif op == 3 and len(b) >= 4:
            # a big length field somewhere (4 GB announcements)
            i = rng.randrange(len(b) - 3)
            b[i:i + 4] = rng.choice((b"\xFF\xFF\xFF\xFF", b"\x00\x00\x01\x00", b"\xFF\xFF\x00\x00"))
        elif op == 4:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(0, 16)))
        else:
            b = b[:rng.randint(0, len(b))]
    return bytes(b[:MAX_INPUT])


def _on_alarm(signum, frame):
    raise Hang("input ran past %.1f s" % PER_INPUT_SECONDS)


def run_one(target, data):
    """None when the input ended with a value or an allowed exception, else the
    finding (a string)."""
    fn = TARGET_FN[target]
    allowed = ALLOWED[target]
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, PER_INPUT_SECONDS)
    try:
        fn(data)
    except allowed:
        return None
    except Hang as e:
        return "hang: %s" % e
    except MemoryError:
        return "MemoryError"
    except Exception as e:          # noqa: the campaign records whatever escaped
        return "%s: %s" % (type(e).__name__, e)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return None


def campaign_random(target, seconds, seed=0, max_findings=10):
    rng = random.Random(seed)
    corpus = seeds(target)
    t_end = time.monotonic() + seconds
    execs = 0
    findings = []
    while time.monotonic() < t_end:
        if rng.random() < 0.1:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        else:
            data = mutate(rng, rng.choice(corpus))
        execs += 1
        f = run_one(target, data)
        if f is not None and len(findings) < max_findings:
            findings.append({"finding": f, "input": data[:64].hex()})
        elif f is None and rng.random() < 0.01 and len(corpus) < 256:
            corpus.append(data)
    return {"target": target, "engine": "random", "seconds": seconds, "seed": seed,
            "executions": execs, "findings": len(findings), "examples": findings}


def atheris_available():
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def campaign_atheris(target, seconds):
    """Run libFuzzer through atheris in a child; executions from its final stats."""
    workdir = os.path.join("build", "fuzz", target)
    os.makedirs(workdir, exist_ok=True)
    corpus = os.path.join(workdir, "corpus")
    os.makedirs(corpus, exist_ok=True)
    for i, s in enumerate(seeds(target)):
        with open(os.path.join(corpus, "seed%d" % i), "wb") as f:
            f.write(s)
    cmd = [sys.executable, "-m", "ccidkit.scripts.fuzz", target,
           "-max_total_time=%d" % seconds, "-timeout=%d" % max(1, int(PER_INPUT_SECONDS)),
           "-rss_limit_mb=1024", "-artifact_prefix=%s/" % workdir, corpus]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    execs = 0
    for line in p.stderr.splitlines():
        if line.startswith("Done ") and " runs in " in line:
            execs = int(line.split()[1])
    crashes = [n for n in os.listdir(workdir) if n.startswith(("crash-", "timeout-", "oom-"))]
    return {"target": target, "engine": "atheris", "seconds": seconds, "executions": execs,
            "findings": len(crashes) if p.returncode else 0,
            "examples": [{"artifact": os.path.join(workdir, n)} for n in sorted(crashes)][:10]
            if p.returncode else [], "exit": p.returncode}


def _atheris_main(target, argv):
    import atheris

    def test_one(data):
        f = run_one(target, data)
        if f is not None:
            raise RuntimeError(f)
    atheris.instrument_all()
    atheris.Setup([sys.argv[0]] + argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    _atheris_main(sys.argv[1], sys.argv[2:])


def report_line(result):
    return json.dumps(result, sort_keys=True)
