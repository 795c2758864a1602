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
from ...emu.profiles import profile, bank_of
from ...emu.pyusb_backend import EmulatedBackend
from ...emu.card.minicard import MiniCard
from ..pcsc import ResourceManager
from .pyusb_transport import find_readers


def _slot_count(profile_id):
    return profile(profile_id)["ccid"]["bMaxSlotIndex"] + 1


def _reader_count(profile_id):
    bank = bank_of(profile_id)
    return bank["count"] if bank else 1


def _card(cards, index, slot):
    if cards is None:
        return MiniCard()
    if (index, slot) in cards:
        return cards[(index, slot)]
    return cards.get(slot)


def emulated_readers(*profile_ids, cards=None, time_scale=0.0):
    """EmulatedReader objects for the profiles, each slot holding a card (see above).

    The cards are there from the start (no insertion events to report)."""
    readers = []
    for pid in profile_ids:
        first = len(readers)
        mapping = {}
        for i in range(_reader_count(pid)):
            for slot in range(_slot_count(pid)):
                c = _card(cards, first + i, slot)
                if c is not None:
                    mapping[(i, slot)] = c
        if bank_of(pid) is None:
            mapping = dict((k[1], mapping[k]) for k in mapping)
        for r in create_readers(pid, cards=mapping, time_scale=time_scale):
            readers.append(r)
    ports = [r.port_path for r in readers]
    for i in range(len(readers)):
        r = readers[i]
        if ports.count(r.port_path) > 1:
            # separate profiles would all sit on port 1: give each its own port
            r.port_path = (i + 1,)
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
