"""Virtual cards by name: ``make_card("usim"|"esim"|"mini"|"auth", image=None, **options)``.

Each card module ``emu/cards/<name>.py`` offers ``make(image=None, **options)``
returning an object with the card interface of docs/architecture.md, and may
name the class it builds in ``CARD_CLASS`` so that an unknown option is a
CardOSError BAD_OPTION before anything is built. Modules
are imported when asked for, so a card whose module is not there yet (the
authentication card, emu/cards/auth.py) fails only when it is made.
"""

import importlib
import inspect

from ..cardos.errors import CardOSError

# name -> (module, what it is)
CARDS = {
    "usim": ("ccidkit.emu.cards.usim", "USIM: GSM SIM (TS 51.011) and UICC/USIM (TS 102 221) faces, phone book"),
    "esim": ("ccidkit.emu.cards.esim", "eSIM-like card: several ports (profiles) selected by the T=1 NAD"),
    "mini": ("ccidkit.emu.card.minicard", "MiniCard: the minimal card the protocol engines are tested against"),
    "auth": ("ccidkit.emu.cards.auth", "authentication card"),
}


def card_names():
    return sorted(CARDS)


def make_card(name, image=None, **options):
    """A new virtual card called ``name``; ``image`` a card image path for persistence."""
    if name not in CARDS:
        raise CardOSError("no card called %r (known: %s)" % (name, ", ".join(card_names())),
                          name="UNKNOWN_CARD")
    module_name = CARDS[name][0]
    if name == "mini":
        from ..card.minicard import MiniCard
        if image is not None:
            raise CardOSError("the MiniCard keeps nothing: no card image", name="NO_IMAGE")
        _check_options(name, MiniCard, {}, options)
        return MiniCard(**options)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise CardOSError("card %r is not available: module %s is not installed (emu/cards/%s.py)"
                          % (name, module_name, module_name.rsplit(".", 1)[-1]),
                          name="UNKNOWN_CARD")
    make = getattr(module, "make", None)
    if make is None:
        raise CardOSError("module %s has no make(image=None, **options)" % module_name,
                          name="UNKNOWN_CARD")
    # the options a card takes are those of the class its make() builds, when it says so
    target = getattr(module, "CARD_CLASS", None) or make
    _check_options(name, target, {"image": image}, options)
    return make(image=image, **options)


def _check_options(name, target, fixed, options):
    """CardOSError BAD_OPTION for an option ``target`` does not take (not a TypeError later).

    A ``target`` taking **options says nothing about their names: not checked here.
    """
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    try:
        sig.bind(**dict(fixed, **options))
    except TypeError as e:
        raise CardOSError("card %r: %s" % (name, e), name="BAD_OPTION")
