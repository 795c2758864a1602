"""Emulated readers on the pyusb path, for the CLI's ``--emulated PROFILE`` and tests.

    backend, transports = open_emulated("gemalto-pctwin", "pinpad")
    readers = [Reader(t).open() for t in transports]
    mgr = emulated_manager("sysmooctsim")          # a pcsc ResourceManager over them

Each profile gets one emulated reader (``emu.reader``) with a MiniCard in
every slot unless ``cards`` says otherwise (``cards`` maps slot -> card for
all readers, or (reader index, slot) -> card); a bank profile
(sysmosimbank-96) gives all its readers. The readers reach the driver only
through pyusb and ``EmulatedBackend``: the same path real readers take.
"""

from ...emu.reader import create_readers
from ...emu.pyusb_backend import EmulatedBackend
from ...emu.card.minicard import MiniCard
from ..pcsc import ResourceManager
from .pyusb_transport import find_readers


def _cards_for(index, reader, cards):
    out = {}
    n = len(reader.slots)
    for slot in range(n):
        card = None
        if cards is None:
            card = MiniCard()
        elif (index, slot) in cards:
            card = cards[(index, slot)]
        elif slot in cards:
            card = cards[slot]
        if card is not None:
            out[slot] = card
    return out


def emulated_readers(*profile_ids, cards=None, time_scale=0.0):
    """EmulatedReader objects for the profiles, each slot holding a card (see above)."""
    readers = []
    for pid in profile_ids:
        for r in create_readers(pid, time_scale=time_scale):
            readers.append(r)
    ports = [r.port_path for r in readers]
    for i in range(len(readers)):
        r = readers[i]
        if ports.count(r.port_path) > 1:
            # separate profiles would all sit on port 1: give each its own port
            r.port_path = (i + 1,)
        for slot, card in sorted(_cards_for(i, r, cards).items()):
            if r.slots[slot].card is None:
                r.insert_card(slot, card)
        # the insertions above are the initial state, not events to report
        r._interrupts = []
    return readers


def open_emulated(*profile_ids, cards=None, time_scale=0.0):
    """(backend, transports) for emulated readers of the given profiles."""
    readers = emulated_readers(*profile_ids, cards=cards, time_scale=time_scale)
    backend = EmulatedBackend(readers)
    return backend, find_readers(backend)


def emulated_manager(*profile_ids, cards=None, log=None, reader_options=None):
    """A pcsc ResourceManager over emulated readers; ``.backend`` allows hot plug."""
    readers = emulated_readers(*profile_ids, cards=cards)
    backend = EmulatedBackend(readers)
    mgr = ResourceManager(lambda: find_readers(backend), log=log,
                          reader_options=reader_options)
    mgr.backend = backend
    mgr.emulated = readers
    return mgr
