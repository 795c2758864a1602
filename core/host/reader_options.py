"""How a command picks its readers: real ones through libusb, or ``--emulated PROFILE``.

    add_reader_arguments(parser)            # --emulated PROFILE ... --card [SLOT:]NAME ...
    mgr = open_manager(args)                # a pcsc ResourceManager
    names = reader_names(mgr)               # pcsc-lite style names ([] when none)
    name = choose_reader(names, "2")        # by number in that list, or by name

Without ``--emulated`` the readers are the real ones pyusb finds through
libusb (the same driver path the emulated readers take, through
ccidkit.emu.pyusb_backend). ``--card [SLOT:]NAME`` puts a fresh card from
the registry (ccidkit.emu.cards: mini, usim, esim, auth; ``none`` for an
empty slot) in that slot of every emulated reader, or in every slot without
SLOT; later options win. With no ``--card`` every slot holds a MiniCard.
"""

from ..errors import CcidkitError
from .. import pcsc

EMPTY_CARD_NAMES = ("none", "empty")


class ReaderOptionsError(CcidkitError):
    """A reader or card choice that cannot be met; ``name`` says which kind:
    UNKNOWN_PROFILE, BAD_CARD_SPEC, UNKNOWN_CARD, NO_READERS, NO_LIBUSB, UNKNOWN_READER."""


def add_reader_arguments(parser, cards=True):
    parser.add_argument("--emulated", action="append", default=[], metavar="PROFILE",
                        help="use an emulated reader of this profile instead of real "
                             "readers (repeatable; see `ccidkit readers --profiles`)")
    if cards:
        parser.add_argument("--card", action="append", default=[], metavar="[SLOT:]NAME",
                            help="card in the emulated readers' slot SLOT (every slot "
                                 "without it): mini, usim, esim, auth, or none "
                                 "(repeatable; default: mini everywhere)")


def profile_ids():
    from ...emu.profiles import PROFILES
    return sorted(PROFILES)


def parse_card_spec(spec):
    """``"usim"`` -> (None, "usim"); ``"2:mini"`` -> (2, "mini")."""
    slot = None
    name = spec
    if ":" in spec:
        head, name = spec.split(":", 1)
        try:
            slot = int(head, 0)
        except ValueError:
            raise ReaderOptionsError("--card %r: SLOT must be a number" % spec, None,
                                     "BAD_CARD_SPEC")
        if slot < 0:
            raise ReaderOptionsError("--card %r: negative slot" % spec, None, "BAD_CARD_SPEC")
    name = name.strip()
    if not name:
        raise ReaderOptionsError("--card %r: no card name" % spec, None, "BAD_CARD_SPEC")
    return slot, name


def make_card(name):
    """A new card from the registry, or None for ``none``/``empty``."""
    if name in EMPTY_CARD_NAMES:
        return None
    from ...emu.cards import make_card as registry
    from ...emu.cardos.errors import CardOSError
    try:
        return registry(name)
    except CardOSError as e:
        raise ReaderOptionsError("card %r: %s" % (name, e.message), None, "UNKNOWN_CARD")


def layout(profile_list):
    """[(profile id, slot count)] for every emulated reader the profiles give, in order."""
    from ...emu.profiles import profile, bank_of
    known = profile_ids()
    out = []
    for pid in profile_list:
        if pid not in known:
            raise ReaderOptionsError("unknown reader profile %r (known: %s)"
                                     % (pid, ", ".join(known)), None, "UNKNOWN_PROFILE")
        bank = bank_of(pid)
        slots = profile(pid)["ccid"]["bMaxSlotIndex"] + 1
        for _ in range(bank["count"] if bank else 1):
            out.append((pid, slots))
    return out


def build_cards(profile_list, specs):
    """{(reader index, slot): card} with a fresh card for every slot that gets one."""
    parsed = [parse_card_spec(s) for s in specs]
    for _slot, name in parsed:
        make_card(name)          # an unknown name fails here, before any reader exists
    cards = {}
    for index, (_pid, nslots) in enumerate(layout(profile_list)):
        for slot in range(nslots):
            name = "mini"
            for want, n in parsed:
                if want is None or want == slot:
                    name = n
            card = make_card(name)
            if card is not None:
                cards[(index, slot)] = card
    return cards


def emulated(profile_list, specs=(), log=None, reader_options=None):
    """A pcsc ResourceManager over emulated readers (``.emulated``: the readers,
    ``.backend``: the pyusb backend for hot plug)."""
    from .emulated import emulated_manager
    cards = build_cards(profile_list, specs)
    return emulated_manager(*profile_list, cards=cards, log=log, reader_options=reader_options)


def libusb_available():
    try:
        import usb.backend.libusb1 as libusb1
    except ImportError:
        return False
    try:
        return libusb1.get_backend() is not None
    except (OSError, ValueError):
        return False


def real(log=None, reader_options=None, poll_ms=100):
    """A pcsc ResourceManager over the real readers libusb finds."""
    from .pyusb_transport import usb_manager
    mgr = usb_manager(None, log=log, reader_options=reader_options, poll_ms=poll_ms)
    mgr.emulated = []
    return mgr


def open_manager(args, log=None, reader_options=None):
    """The manager for ``args.emulated`` / ``args.card`` (real readers without --emulated)."""
    specs = getattr(args, "card", None) or []
    if args.emulated:
        return emulated(args.emulated, specs, log=log, reader_options=reader_options)
    if specs:
        raise ReaderOptionsError("--card needs --emulated PROFILE: real readers hold real cards",
                                 None, "BAD_CARD_SPEC")
    return real(log=log, reader_options=reader_options)


def no_readers_error(mgr):
    """The ReaderOptionsError that explains an empty reader list."""
    if getattr(mgr, "emulated", None):
        return ReaderOptionsError("no reader", None, "NO_READERS")
    if not libusb_available():
        return ReaderOptionsError("no reader: libusb is not available to pyusb (install "
                                  "libusb-1.0), or use --emulated PROFILE", None, "NO_LIBUSB")
    return ReaderOptionsError("no reader: libusb finds no USB CCID reader (interface class "
                              "0Bh) on this machine; use --emulated PROFILE for an emulated "
                              "one", None, "NO_READERS")


def reader_names(mgr):
    """The pcsc-lite style names of the readers of ``mgr`` ([] when none)."""
    ctx = pcsc.SCardEstablishContext(pcsc.SCARD_SCOPE_USER, mgr)
    try:
        try:
            return pcsc.SCardListReaders(ctx)
        except pcsc.PCSCError as e:
            if e.code == pcsc.SCARD_E_NO_READERS_AVAILABLE:
                return []
            raise
    finally:
        pcsc.SCardReleaseContext(ctx)


def choose_reader(names, spec):
    """The name ``spec`` designates: its number in ``names``, an exact name, or the
    only name containing it."""
    if not names:
        raise ReaderOptionsError("no reader", None, "NO_READERS")
    try:
        n = int(spec)
    except (TypeError, ValueError):
        n = None
    if n is not None:
        if 0 <= n < len(names):
            return names[n]
        raise ReaderOptionsError("no reader number %d (readers 0..%d)" % (n, len(names) - 1),
                                 None, "UNKNOWN_READER")
    if spec in names:
        return spec
    hits = [x for x in names if spec.lower() in x.lower()]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ReaderOptionsError("no reader matches %r" % spec, None, "UNKNOWN_READER")
    raise ReaderOptionsError("%d readers match %r: be more precise" % (len(hits), spec), None,
                             "UNKNOWN_READER")

