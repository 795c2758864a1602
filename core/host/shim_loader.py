"""Activate the pyscard-compatible shim as the module ``smartcard``, for one run only.

    from ccidkit.core.host import shim_loader
    from ccidkit.core.host.emulated import emulated_manager
    with shim_loader.activated(emulated_manager("gemalto-pctwin")):
        from smartcard.System import readers     # the shim, over ccidkit's PC/SC layer
        ...
    import smartcard                             # the real pyscard again (when installed)

The shim lives in ``ccidkit/core/host/pyscard_shim/`` and is never importable
as ``smartcard`` on its own, so an installed pyscard is never shadowed.
:func:`activate` puts a meta-path finder first in ``sys.meta_path`` that
loads the shim's files under the names ``smartcard`` and ``smartcard.*``
(fresh module objects for this activation) and sets aside the ``smartcard*``
entries already in ``sys.modules``; :func:`deactivate` removes the finder and
the shim's modules and puts the set-aside entries back, so code that imported
the real pyscard before sees the very same module objects afterwards.

The shim's modules reach the resource manager through :func:`manager` and
serialise every PC/SC call with :data:`LOCK` (the PC/SC layer is
single-threaded; CardMonitoring polls from its own thread).
"""

import importlib.abc
import importlib.util
import os
import sys
import threading

from ..errors import CcidkitError

SHIM_PACKAGE = "smartcard"
SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyscard_shim")

LOCK = threading.RLock()

_STATE = {"manager": None, "finder": None, "saved": None}


class ShimError(CcidkitError):
    """The shim cannot be (de)activated: name ``SHIM_ACTIVE`` or ``SHIM_INACTIVE``."""


def _shim_name(fullname):
    return fullname == SHIM_PACKAGE or fullname.startswith(SHIM_PACKAGE + ".")


class _ShimFinder(importlib.abc.MetaPathFinder):
    """Finds ``smartcard`` and ``smartcard.X.Y`` in the shim's folder."""

    def find_spec(self, fullname, path=None, target=None):
        if not _shim_name(fullname):
            return None
        parts = fullname.split(".")[1:]
        base = os.path.join(SHIM_DIR, *parts) if parts else SHIM_DIR
        init = os.path.join(base, "__init__.py")
        if os.path.isfile(init):
            return importlib.util.spec_from_file_location(
                fullname, init, submodule_search_locations=[base])
        if parts and os.path.isfile(base + ".py"):
            return importlib.util.spec_from_file_location(fullname, base + ".py")
        # A module the shim does not provide: ImportError, never the real pyscard.
        raise ModuleNotFoundError("No module named %r (not in ccidkit's pyscard-compatible "
                                  "subset)" % fullname, name=fullname)


def is_active():
    return _STATE["finder"] is not None


def manager():
    """The pcsc ResourceManager of the active shim (ShimError when inactive)."""
    m = _STATE["manager"]
    if m is None:
        raise ShimError("the pyscard-compatible shim is not active", None, "SHIM_INACTIVE")
    return m


def activate(mgr):
    """Make ``import smartcard`` give the shim over ``mgr`` (a pcsc ResourceManager)."""
    if is_active():
        raise ShimError("the pyscard-compatible shim is already active", None, "SHIM_ACTIVE")
    saved = {}
    for name in list(sys.modules):
        if _shim_name(name):
            saved[name] = sys.modules.pop(name)
    finder = _ShimFinder()
    sys.meta_path.insert(0, finder)
    _STATE["manager"] = mgr
    _STATE["finder"] = finder
    _STATE["saved"] = saved
    importlib.invalidate_caches()


def deactivate():
    """Undo :func:`activate`: the shim's modules go, the earlier ``smartcard*`` come back."""
    finder = _STATE["finder"]
    if finder is None:
        return
    stop = None
    mon = sys.modules.get(SHIM_PACKAGE + ".CardMonitoring")
    if mon is not None and getattr(mon, "__file__", "").startswith(SHIM_DIR):
        stop = getattr(mon, "_stop_all", None)
    if stop is not None:
        stop()
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
    for name in list(sys.modules):
        if _shim_name(name):
            del sys.modules[name]
    sys.modules.update(_STATE["saved"] or {})
    _STATE["manager"] = None
    _STATE["finder"] = None
    _STATE["saved"] = None
    importlib.invalidate_caches()


class activated:
    """Context manager: :func:`activate` on entry, :func:`deactivate` on exit."""

    def __init__(self, mgr):
        self.mgr = mgr

    def __enter__(self):
        activate(self.mgr)
        return self.mgr

    def __exit__(self, *exc):
        deactivate()
        return False
