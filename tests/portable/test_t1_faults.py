"""T=1 reader engine against the card engine through the fault-injecting link.

One 4 KiB-each-way exchange carries every scripted fault at once; the other
tests use small APDUs (the MicroPython suite must stay fast).
"""

from support import h, raises

from ccidkit.core.t1 import T1Error, T1Reader
from ccidkit.emu.card.t1 import T1Card
from ccidkit.emu.card.link import FaultLink, Fault, direct_link
from ccidkit.emu.card.minicard import MiniCard


def echo_apdu(data):
    n = len(data)
    if n < 256:
        return b"\x80\xEE\x00\x00" + bytes((n,)) + data + b"\x00"
    return b"\x80\xEE\x00\x00\x00" + bytes((n >> 8, n & 0xFF)) + data + b"\x00\x00"


def pattern(n, seed=1):
    return bytes(((i * 31 + seed) ^ (i >> 8)) & 0xFF for i in range(n))


def is_ack(block):
    """An R-block without error bits: the reader acknowledging a card chain."""
    return block[1] & 0xEF == 0x80


def nth(pred, n):
    """A ``when`` predicate true on the n-th (0-based) block matching ``pred``."""
    seen = [0]

    def when(index, block):
        if pred(block):
            seen[0] += 1
            return seen[0] == n + 1
        return False
    return when


def is_last_i(block):
    return not block[1] & 0x80 and not block[1] & 0x20


def test_4k_each_way_with_every_fault():
    data = pattern(4096)
    mc = MiniCard()
    card = T1Card({0x12: mc}, ifsc=32)
    faults = [
        Fault("corrupt", at=3),                                  # EDC, reader -> card
        Fault("corrupt", at=10, to="reader"),                    # EDC, card -> reader
        Fault("lose", at=20),                                    # lost on the way to the card
        Fault("lose", at=30, to="reader"),                       # card's answer lost
        Fault("bad_ns", at=40),                                  # N(S) flipped, EDC valid
        Fault("ifs", at=50, value=20),                           # card: IFSC 20, mid-chain
        Fault("duplicate", at=60),                               # chained block delivered twice
        Fault("nad", at=70, to="reader", value=0x00),            # answer not addressed to us
        Fault("wtx", when=lambda i, b: is_last_i(b), value=3, count=2),  # WTX before answering
        Fault("bad_ns", when=nth(is_ack, 20), to="reader"),      # card chain: N(S) flipped
        Fault("corrupt", when=nth(is_ack, 40), to="reader"),
        Fault("lose", when=nth(is_ack, 60), to="reader"),
        Fault("lose", when=nth(is_ack, 80)),                     # our R(N(R)) lost
        Fault("corrupt", when=nth(is_ack, 100)),
    ]
    link = FaultLink(card, faults, record=True)
    r = T1Reader(ifsc=32, nad=0x12)
    resp = r.transceive(echo_apdu(data), link)
    assert resp == data + h("90 00")
    for f in faults:
        assert f.fired == 1, f.kind
    # the command reached the card exactly once
    assert mc.count(0xEE) == 1 and card.apdus == 1
    # chaining at IFSC 32, then at the new IFSC 20
    sizes = [b[2] for d, b in link.log if d == "->" and not b[1] & 0x80]
    assert sizes[0] == 32 and max(sizes) == 32
    assert r.ifsc == 20 and card.ifsc == 20
    after = sizes[sizes.index(20):]
    assert max(after) == 20 and len(sizes) > 4103 // 32 + 5
    # card chain at IFSD 32: 4098 bytes in 129 blocks
    got = [b for d, b in link.log if d == "<-" and not b[1] & 0x80]
    assert max(b[2] for b in got) == 32
    # every block carried the NAD pair 12 / 21
    assert all(b[0] == 0x12 for d, b in link.log if d == "->")
    assert len([1 for d, b in link.log if d == "<-" and b[0] != 0x21]) == 1
    # WTX: the next wait was 3 × BWT, twice; otherwise BWT
    assert link.waits.count(3 * r.bwt_us) == 2
    assert max(link.waits) == 3 * r.bwt_us and min(link.waits) == r.bwt_us
    assert card.wtx_sent == 2 and r.wtx_requests == 2
    assert r.retransmissions >= 3 and r.r_requests >= 5 and r.resynchs == 0
    assert link.lost == 4 and link.corrupted == 4
    # and the link still works
    assert r.transceive(echo_apdu(b"\x01"), link) == h("01 90 00")


def run_small(faults, edc="LRC", size=100, ifsc=16):
    mc = MiniCard()
    card = T1Card(mc, ifsc=ifsc, edc=edc)
    link = FaultLink(card, faults)
    r = T1Reader(ifsc=ifsc, edc=edc)
    r.ifsd = 16
    card.ifsd = 16
    data = pattern(size, len(faults))
    assert r.transceive(echo_apdu(data), link) == data + h("90 00")
    for f in faults:
        assert f.fired >= 1, f.kind
    assert mc.count(0xEE) == 1
    assert r.transceive(echo_apdu(b"\x5A"), link) == h("5A 90 00")
    assert mc.count(0xEE) == 2
    return r, card, link


def test_each_fault_alone_lrc_and_crc():
    for edc in ("LRC", "CRC"):
        for at in (0, 3, 6, 8, 12):
            for kind, to in (("corrupt", "card"), ("corrupt", "reader"), ("lose", "card"),
                             ("lose", "reader"), ("bad_ns", "card"), ("bad_ns", "reader"),
                             ("duplicate", "card"), ("nad", "reader"), ("nad", "card")):
                run_small([Fault(kind, at=at, to=to, value=0x07)], edc)
            run_small([Fault("wtx", at=at, value=2)], edc)
            run_small([Fault("ifs", at=at, value=9)], edc)


def test_faults_in_a_row():
    # two and three faults on consecutive blocks, both directions
    run_small([Fault("corrupt", at=(2, 3)), Fault("lose", at=4, to="reader")])
    run_small([Fault("lose", at=(5, 6, 7))])
    run_small([Fault("corrupt", at=(7, 8, 9), to="reader")])
    r, card, link = run_small([Fault("lose", at=9, to="reader"), Fault("corrupt", at=10, to="reader"),
                               Fault("bad_ns", at=11, to="reader")])
    assert card.retransmitted >= 2


def test_mute_card_gives_up_after_bounded_attempts():
    # rules 7.4 and 6: every block times out
    card = T1Card(MiniCard())
    link = FaultLink(card, [Fault("lose", when=lambda i, b: True, times=None)])
    r = T1Reader(max_retries=3, max_resynch=3)
    with raises(T1Error) as e:
        r.transceive(echo_apdu(b"\x01\x02"), link)
    assert e.value.name == "T1_CARD_MUTE"
    assert link.calls == 1 + 3 + 3 and card.blocks_in == 0
    assert r.resynchs == 1 and r.timeouts == 7


def test_lost_responses_run_the_command_once():
    # the card's answer is lost again and again: the reader asks with R-blocks,
    # the card retransmits, and the command is never run twice
    mc = MiniCard()
    card = T1Card(mc)
    link = FaultLink(card, [Fault("lose", at=(0, 1, 2), to="reader")])
    r = T1Reader()
    assert r.transceive(echo_apdu(b"\xAB"), link) == h("AB 90 00")
    assert mc.count(0xEE) == 1 and card.retransmitted == 3
    # every answer lost: the reader gives up, the card still ran it once
    mc2 = MiniCard()
    card2 = T1Card(mc2)
    link2 = FaultLink(card2, [Fault("lose", when=lambda i, b: True, to="reader", times=None)])
    with raises(T1Error) as e:
        T1Reader().transceive(echo_apdu(b"\xAB"), link2)
    assert e.value.name == "T1_CARD_MUTE"
    assert mc2.count(0xEE) == 1 and card2.blocks_in == 7


def test_resynch_after_repeated_errors_then_recovery():
    # rule 7.4 then rule 6: the I-block arrives corrupted four times
    mc = MiniCard()
    card = T1Card(mc, ifsc=32)
    card.ifsd = 200
    link = FaultLink(card, [Fault("corrupt", at=(0, 1, 2, 3))])
    r = T1Reader(ifsc=32)
    with raises(T1Error) as e:
        r.transceive(echo_apdu(b"\x01"), link)
    assert e.value.name == "T1_RESYNCHED"
    assert card.resynchs == 1 and card.ifsd == 32 and mc.count(0xEE) == 0
    assert r.transceive(echo_apdu(b"\x02"), link) == h("02 90 00")
    # resynch itself disturbed: answers to S(RESYNCH request) corrupted twice
    link2 = FaultLink(card, [Fault("corrupt", at=(0, 1, 2, 3)),
                             Fault("corrupt", at=(4, 5), to="reader")])
    with raises(T1Error) as e:
        r.transceive(echo_apdu(b"\x03"), link2)
    assert e.value.name == "T1_RESYNCHED" and card.resynchs == 4
    # resynch answers always broken: give up (warm reset needed)
    link3 = FaultLink(card, [Fault("corrupt", when=lambda i, b: True, to="reader", times=None)])
    with raises(T1Error) as e:
        r.transceive(echo_apdu(b"\x04"), link3)
    assert e.value.name == "T1_RESYNCH_FAILED"
    assert link3.calls == 1 + 3 + 3


def test_wtx_storm_bounded():
    card = T1Card(MiniCard())
    link = FaultLink(card, [Fault("wtx", at=0, value=1, count=10)])
    r = T1Reader(max_wtx=10)
    assert r.transceive(echo_apdu(b"\x01"), link) == h("01 90 00")
    assert r.wtx_requests == 10
    link = FaultLink(card, [Fault("wtx", at=0, value=1, count=11)])
    with raises(T1Error) as e:
        r.transceive(echo_apdu(b"\x01"), link)
    assert e.value.name == "T1_WTX_LIMIT"
    assert link.calls == 11


def test_abort_then_next_exchange_keeps_sequence_numbers():
    # rule 9, card aborting the reader's chain and its own
    mc = MiniCard()
    card = T1Card(mc, ifsc=16)
    r = T1Reader(ifsc=16)
    link = FaultLink(card, [Fault("abort", at=3)])
    with raises(T1Error) as e:
        r.transceive(echo_apdu(pattern(100)), link)
    assert e.value.name == "T1_ABORTED" and card.aborts == 1 and mc.count(0xEE) == 0
    assert r.transceive(echo_apdu(b"\x09"), direct_link(card)) == h("09 90 00")
    link = FaultLink(card, [Fault("abort", when=nth(is_ack, 1))])
    with raises(T1Error) as e:
        r.transceive(echo_apdu(pattern(100)), link)
    assert e.value.name == "T1_ABORTED" and mc.count(0xEE) == 2
    assert r.transceive(echo_apdu(b"\x0A"), direct_link(card)) == h("0A 90 00")
    # the reader refusing a response that is too long
    r.max_response = 50
    with raises(T1Error) as e:
        r.transceive(echo_apdu(pattern(100)), direct_link(card))
    assert e.value.name == "T1_TOO_LONG"
    r.max_response = 65538
    assert r.transceive(echo_apdu(b"\x0B"), direct_link(card)) == h("0B 90 00")


def test_negotiate_ifsd_through_faults():
    card = T1Card(MiniCard())
    link = FaultLink(card, [Fault("corrupt", at=0), Fault("lose", at=1, to="reader")])
    r = T1Reader(ifsd=254)
    assert r.negotiate_ifsd(link) == 254 and card.ifsd == 254 and link.calls == 3
    data = pattern(300)
    link = FaultLink(card, record=True)
    assert r.transceive(echo_apdu(data), link) == data + h("90 00")
    assert [b[2] for d, b in link.log if d == "<-" and not b[1] & 0x80] == [254, 48]
    # a mute card: negotiation gives up
    link = FaultLink(card, [Fault("lose", when=lambda i, b: True, times=None)])
    with raises(T1Error) as e:
        T1Reader().negotiate_ifsd(link)
    assert e.value.name == "T1_CARD_MUTE"


def test_two_logical_cards_by_nad():
    a = MiniCard()
    b = MiniCard()
    card = T1Card({0x01: a, 0x02: b})
    link = FaultLink(card, [Fault("corrupt", at=1), Fault("lose", at=4, to="reader")])
    r = T1Reader(ifsc=32)
    for i in range(3):
        assert r.transceive(echo_apdu(bytes((i,))), link, nad=0x01) == bytes((i,)) + h("90 00")
        assert r.transceive(echo_apdu(bytes((i + 8,))), link, nad=0x02) == bytes((i + 8,)) + h("90 00")
    assert a.count(0xEE) == 3 and b.count(0xEE) == 3
