"""The eSIM-like card: ports (one profile each) chosen by the T=1 NAD, through the card-side
T1Card and the reader-side T1Reader."""

import pytest

from ccidkit.core.atr import parse_atr
from ccidkit.core.t1 import T1Error, T1Reader
from ccidkit.emu.card.link import FaultLink
from ccidkit.emu.card.t1 import T1Card
from ccidkit.emu.cardos import CardOSError
from ccidkit.emu.cards import make_card
from ccidkit.emu.cards.esim import port_nad
from ccidkit.scripts.cmd_phonebook import read_phonebook


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def setup(ports=3, **kw):
    esim = make_card("esim", ports=ports, **kw)
    atr = parse_atr(esim.power_on())
    card = T1Card(esim.ports, ifsc=atr.ifsc)
    reader = T1Reader(ifsc=atr.ifsc, ifsd=254)
    link = FaultLink(card)
    return esim, card, reader, link


def test_atr_offers_t1_only():
    esim = make_card("esim")
    a = parse_atr(esim.atr)
    assert a.protocols == [1] and a.ifsc == 254 and a.classes == ["A", "B", "C"]
    assert not a.warnings
    assert sorted(esim.ports) == [0x00, 0x10]
    assert [port_nad(n) for n in range(3)] == [0x00, 0x10, 0x20]


def test_ports_answer_with_their_own_iccid():
    esim, card, reader, link = setup()
    iccids = []
    for port in range(3):
        nad = port_nad(port)
        assert reader.transceive(h("00A4080C02 2FE2"), link, nad=nad) == h("9000")
        iccids.append(reader.transceive(h("00B000000A"), link, nad=nad))
    assert iccids == [h("9888 1201 0000 1000 00F0 9000"), h("9888 1201 0000 1000 10F1 9000"),
                      h("9888 1201 0000 1000 20F2 9000")]
    assert card.apdus_by_nad == {0x00: 2, 0x10: 2, 0x20: 2}
    assert [esim.port(n).count(0xB0) for n in range(3)] == [1, 1, 1]


def test_port_state_is_separate():
    esim, card, reader, link = setup(ports=2)
    assert reader.transceive(h("00A4080C04 7F10 6F3A"), link, nad=0x10) == h("9000")
    assert reader.transceive(h("00B201041E"), link, nad=0x10)[:12] == b"Port 1 owner"
    # port 0 has no current EF: its own session
    assert reader.transceive(h("00B201041E"), link, nad=0x00) == h("6986")
    wrong = h("0020000108") + b"9999" + b"\xff" * 4
    assert reader.transceive(wrong, link, nad=0x00) == h("63C2")
    assert reader.transceive(wrong, link, nad=0x00) == h("63C1")
    assert reader.transceive(wrong, link, nad=0x10) == h("63C2")    # port 1 had all 3
    assert esim.port(0).pin(1).remaining == 1 and esim.port(1).pin(1).remaining == 2
    # logical channels per port too
    assert reader.transceive(h("0070000001"), link, nad=0x10) == h("01 9000")
    assert reader.transceive(h("01A4000C02 3F00"), link, nad=0x00) == h("6881")


def test_unknown_nad_gets_no_answer():
    esim, card, reader, link = setup(ports=2)
    with pytest.raises(T1Error):
        reader.transceive(h("00A4000C02 3F00"), link, nad=0x20)
    assert card.apdus == 0


def test_phone_book_per_port_over_t1():
    esim, card, reader, link = setup(ports=3)
    names = []
    for port in range(3):
        def transmit(apdu, nad=port_nad(port)):
            return reader.transceive(apdu, link, nad=nad)
        book = read_phonebook(transmit)
        names.append([e["name"] for e in book["entries"]])
        assert book["records"] == 20
    assert names == [["Port 0 owner", "Profile 0"], ["Port 1 owner", "Profile 1"],
                     ["Port 2 owner", "Profile 2"]]


def test_large_answer_chained_at_the_ifsd():
    esim, card, reader, link = setup(ports=2)
    reader2 = T1Reader(ifsc=254, ifsd=32)
    assert reader2.negotiate_ifsd(link, 32, nad=0x10) == 32
    fcp = reader2.transceive(h("00A4040410 A0000000871002FFFFFFFF8906190000 00"), link, nad=0x10)
    assert fcp[:2] == h("622B") and fcp[-2:] == h("9000") and len(fcp) == 0x2B + 4
    # S(IFS response), then 47 bytes in two I-blocks of at most 32
    assert card.blocks_out == 3


def test_events_reach_every_port():
    esim, card, reader, link = setup(ports=2)
    assert reader.transceive(h("0070000001"), link, nad=0x00) == h("01 9000")
    assert reader.transceive(h("0070000001"), link, nad=0x10) == h("01 9000")
    esim.event("pps", protocol=1, fi=512, di=32)
    esim.reset(warm=True)
    assert [sorted(esim.port(n).channels) for n in range(2)] == [[0], [0]]
    esim.event("reset_warm")                                    # the twin of reset(): merged
    assert [e[0] for e in esim.events] == ["power_on", "pps", "reset_warm"]
    assert [e[0] for e in esim.port(1).events] == ["power_on", "pps", "reset_warm"]
    # without a NAD the card interface reaches port 0
    assert esim.process_apdu(h("00A4080C02 2FE2")) == h("9000")
    assert esim.process_apdu(h("00B000000A"))[8:10] == h("00F0")


def test_bad_port_counts():
    with pytest.raises(CardOSError):
        make_card("esim", ports=0)
    with pytest.raises(CardOSError):
        make_card("esim", ports=9)
