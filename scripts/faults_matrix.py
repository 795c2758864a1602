"""The fault matrix: every reader/card fault x exchange level x 1 and 8 slots.

Each cell drives core/driver.py over the pyusb path to emulated readers
(emu/reader.py, faults from emu/faults.py and emu/card/link.py) on the
virtual clock. The exchange is a non-idempotent INCREMENT (``80 11 00 00``
with data, answered 90 00) to a card that counts executions. A cell is
green when:

- the exchange completes with 90 00 and the card ran it exactly once, or it
  fails with a documented ReaderError (core/contract.py) and the card ran it
  at most once;
- the virtual time it took is bounded (MAX_VIRTUAL_US);
- on an 8-slot reader, an INCREMENT on every other slot afterwards runs once
  and answers 90 00 (unless the fault takes the whole reader away).
"""

import copy

from ccidkit.core import contract
from ccidkit.core.driver import Reader, ReaderError, PROTOCOL_T0, PROTOCOL_T1
from ccidkit.core.host.emulated import open_emulated
from ccidkit.emu import profiles as P
from ccidkit.emu.card.minicard import MiniCard
from ccidkit.emu.card.link import Fault
from ccidkit.emu.card.t0 import DEFAULT_OUTGOING_INS

INS_INCREMENT = 0x11
MAX_VIRTUAL_US = 120 * 1000000      # two virtual minutes for one exchange, time extensions included

FAULTS = ("corrupted EDC", "lost I-block", "lost R-block", "duplicated block", "bad N(S)",
          "WTX storm", "IFS change mid-chain", "mute card", "card removed mid-chain",
          "reader unplugged", "stale bSeq", "NotifySlotChange lost", "USB stall")
LEVELS = ("TPDU T=1", "TPDU T=0", "short APDU", "extended APDU")
SLOTS = (1, 8)

# level -> (base profile, dwFeatures exchange bits, card protocols, data length)
_LEVEL = {
    "TPDU T=1": ("gemalto-pctwin", 0x00010000, (1,), 300),
    "TPDU T=0": ("gemalto-pctwin", 0x00010000, (0,), 200),
    "short APDU": ("au9560", 0x00020000, (0, 1), 200),
    "extended APDU": ("au9560", 0x00040000, (0, 1), 600),
}
_T1_ONLY = ("corrupted EDC", "lost I-block", "lost R-block", "duplicated block", "bad N(S)",
            "IFS change mid-chain")


class CounterCard(MiniCard):
    """MiniCard plus INCREMENT (INS 11): counts its executions, answers 90 00."""

    T0_OUTGOING_INS = tuple(getattr(MiniCard, "T0_OUTGOING_INS", DEFAULT_OUTGOING_INS)) \
        + (INS_INCREMENT,)

    def __init__(self, **kw):
        MiniCard.__init__(self, **kw)
        self.increments = 0

    def process_apdu(self, apdu):
        apdu = bytes(apdu)
        if len(apdu) >= 2 and apdu[0] == 0x80 and apdu[1] == INS_INCREMENT:
            self.increments += 1
            return b"\x90\x00"
        return MiniCard.process_apdu(self, apdu)


def _profile_id(level, slots):
    base, bits, _, _ = _LEVEL[level]
    pid = "faults-matrix-%s-%d" % (level.replace(" ", "-").replace("=", ""), slots)
    if pid not in P.PROFILES:
        p = copy.deepcopy(P.PROFILES[base])
        feats = p["ccid"]["dwFeatures"] & ~0x00070000
        p["ccid"]["dwFeatures"] = feats | bits
        p["ccid"]["bMaxSlotIndex"] = slots - 1
        p["ccid"]["bMaxCCIDBusySlots"] = slots
        if bits != 0x00010000:
            p["ccid"]["dwMaxCCIDMessageLength"] = max(p["ccid"]["dwMaxCCIDMessageLength"], 271)
        p["source"] = "fault matrix: %s with %d slots (chosen)" % (base, slots)
        P.PROFILES[pid] = p
    return pid


def increment_apdu(level):
    n = _LEVEL[level][3]
    data = bytes((i & 0xFF for i in range(n)))
    if n <= 255:
        return bytes((0x80, INS_INCREMENT, 0, 0, n)) + data
    return bytes((0x80, INS_INCREMENT, 0, 0, 0, n >> 8, n & 0xFF)) + data


def applies(fault, level):
    if fault in _T1_ONLY:
        return level == "TPDU T=1"
    return True


def _arm(fault, em, r, slot):
    f = em.faults
    t1 = f.t1_faults.setdefault(slot, [])
    if fault == "corrupted EDC":
        f.corrupt_t1(slot, "reader", 1)
        f.corrupt_t1(slot, "card", 1)
    elif fault == "lost I-block":
        t1.append(Fault("lose", when=lambda i, b: not b[1] & 0x80, to="card", times=1))
    elif fault == "lost R-block":
        t1.append(Fault("lose", when=lambda i, b: b[1] & 0xC0 == 0x80, to="reader", times=1))
    elif fault == "duplicated block":
        t1.append(Fault("duplicate", when=lambda i, b: not b[1] & 0x80, to="card", times=2))
    elif fault == "bad N(S)":
        t1.append(Fault("bad_ns", when=lambda i, b: not b[1] & 0x80, to="card", times=1))
    elif fault == "WTX storm":
        f.wtx_storm(slot, 50)
        t1.append(Fault("wtx", when=lambda i, b: True, to="reader", value=2, count=5, times=1))
    elif fault == "IFS change mid-chain":
        t1.append(Fault("ifs", when=lambda i, b: i >= 1, to="reader", value=16, times=1))
    elif fault == "mute card":
        f.mute(slot)
    elif fault == "card removed mid-chain":
        f.remove_mid_exchange(slot)
    elif fault == "reader unplugged":
        f.unplug_on_command(1)
    elif fault == "stale bSeq":
        f.stale_bseq(1, "duplicate")
    elif fault == "NotifySlotChange lost":
        f.lose_notify(1)
        em.remove_card(slot)
        em.insert_card(slot, CounterCard(protocols=_LEVEL[r.level][2]))
    elif fault == "USB stall":
        f.stall("bulk_in", 1)


def run_cell(fault, level, slots):
    """One cell: a dict with status "ok" / "FAIL" / "n/a" and what happened."""
    if not applies(fault, level):
        return {"status": "n/a", "outcome": "n/a"}
    protocols = _LEVEL[level][2]
    cards = dict((s, CounterCard(protocols=protocols)) for s in range(slots))
    backend, ts = open_emulated(_profile_id(level, slots), cards=cards)
    em = backend.readers[0] if not callable(backend.readers) else backend.readers()[0]
    r = Reader(ts[0]).open()
    r.level = level
    preferred = PROTOCOL_T1 if protocols == (1,) else PROTOCOL_T0
    for s in range(slots):
        r.connect(s, preferred)
    target = slots // 2 if slots > 1 else 0
    apdu = increment_apdu(level)
    _arm(fault, em, r, target)
    card = em.slots[target].card
    t0 = em.clock.now_us()
    problems = []
    try:
        rsp = r.transmit(target, apdu)
        outcome = "completed " + rsp.hex().upper()
        if rsp != b"\x90\x00":
            problems.append("answer %s" % rsp.hex())
        runs = card.increments
        if runs != 1:
            problems.append("ran %d times" % runs)
    except ReaderError as e:
        outcome = e.name
        if e.name not in contract.names_for("Reader."):
            problems.append("undocumented %s" % e.name)
        card_now = em.slots[target].card
        runs = (card.increments if card is not None else 0)
        if runs > 1:
            problems.append("ran %d times" % runs)
        if card_now is not None and card_now is not card and card_now.increments:
            problems.append("ran on the new card")
    elapsed = em.clock.now_us() - t0
    if elapsed > MAX_VIRTUAL_US:
        problems.append("took %d us" % elapsed)
    others = "-"
    if slots > 1 and fault != "reader unplugged":
        bad = []
        for s in range(slots):
            if s == target:
                continue
            try:
                out = r.transmit(s, apdu)
            except ReaderError as e:
                bad.append("%d:%s" % (s, e.name))
                continue
            if out != b"\x90\x00" or em.slots[s].card.increments != 1:
                bad.append("%d:%s/%d" % (s, out.hex(), em.slots[s].card.increments))
        others = "unaffected" if not bad else "affected " + ",".join(bad)
        if bad:
            problems.append(others)
    elif slots > 1:
        others = "reader gone (all slots)"
    return {"status": "FAIL" if problems else "ok", "outcome": outcome, "runs": runs,
            "virtual_ms": elapsed // 1000, "others": others, "problems": problems}


def run_matrix():
    out = []
    for fault in FAULTS:
        for level in LEVELS:
            for slots in SLOTS:
                try:
                    cell = run_cell(fault, level, slots)
                except Exception as e:          # noqa: a harness cell, recorded as a failure
                    cell = {"status": "FAIL", "outcome": "%s: %s" % (type(e).__name__, e),
                            "problems": ["escaped"]}
                cell.update(fault=fault, level=level, slots=slots)
                out.append(cell)
    return out


def render(cells, header=""):
    lines = [header] if header else []
    lines.append("| fault | level | slots | outcome | card runs | virtual ms | other slots | |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for c in cells:
        if c["status"] == "n/a":
            lines.append("| %s | %s | %d | n/a | | | | |" % (c["fault"], c["level"], c["slots"]))
            continue
        lines.append("| %s | %s | %d | %s | %s | %s | %s | %s |" % (
            c["fault"], c["level"], c["slots"], c["outcome"], c.get("runs", ""),
            c.get("virtual_ms", ""), c.get("others", ""),
            "ok" if c["status"] == "ok" else "**FAIL** " + "; ".join(c["problems"])))
    return "\n".join(lines) + "\n"
