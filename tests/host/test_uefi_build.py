"""The UEFI image builder (uefi/build.py) and the in-firmware efi module.

Tests marked ``slow`` need the compiled image: they share one build per
pytest run (the ``uefi_image`` session fixture of ccidkit's pytest plugin
when it holds a build result, else a build of their own here); a cold
build compiles ~9 MB of generated C (a minute or two on two cores), a
cached one takes seconds. The efi.py tests run on CPython against a
stand-in for the runtime's ``host`` module.
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess

import pytest

from ccidkit.uefi import build as ub
from ccidkit.uefi.fw import efi

REPO = ub.REPO


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def uefi_build(request):
    """A BuildResult for this run: the plugin's image when it is one."""
    try:
        image = request.getfixturevalue("uefi_image")
    except pytest.FixtureLookupError:
        image = None
    if isinstance(image, ub.BuildResult):
        return image
    return ub.build_image(progress=None)


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _table_of(efi_path):
    with open(efi_path, "rb") as f:
        data = f.read()
    # the magic also sits in the runtime's own constants: the table is the
    # occurrence followed by a sane count and a zero reserved word
    found = []
    at = data.find(ub.TABLE_MAGIC)
    while at != -1:
        count, reserved = struct.unpack_from("<II", data, at + 8)
        if reserved == 0 and 0 < count <= 1024:
            found.append(at)
        at = data.find(ub.TABLE_MAGIC, at + 1)
    assert len(found) == 1, "file tables at %r" % found
    return ub.unpack_table(data[found[0]:])


def _expected_modules():
    """Table paths of every .py the builder must embed as .mpy."""
    paths = set()
    for src, dest, excluded in ub.MODULE_TREES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, src)):
            rel = os.path.relpath(dirpath, REPO)
            if any(rel == x or rel.startswith(x + os.sep) for x in excluded):
                continue
            if "__pycache__" in rel:
                continue
            for fn in filenames:
                rel_file = os.path.join(rel, fn)
                if fn.endswith(".py") and rel_file != ub.BOOT_SOURCE:
                    sub = os.path.relpath(rel_file, src)[:-3] + ".mpy"
                    paths.add(dest + "/" + sub.replace(os.sep, "/"))
    for fn in os.listdir(os.path.join(REPO, ub.TESTS_DIR)):
        if fn.endswith(".py"):
            paths.add("/lib/tests/portable/" + fn[:-3] + ".mpy")
    return paths


# ---------------------------------------------------------------- pure helpers

def test_table_round_trip_and_layout():
    files = {"/b.txt": b"", "/a/x.mpy": b"M\x06data", "/boot.py": b"print(1)\n" * 3}
    blob = ub.pack_table(files)
    assert blob[:8] == b"CKFS0001"
    assert struct.unpack_from("<II", blob, 8) == (3, 0)
    # entries are sorted by path; names NUL-terminated; data 16-aligned at first
    first = struct.unpack_from("<IIII", blob, 16)
    assert blob[first[0]:first[0] + first[1]] == b"/a/x.mpy"
    assert blob[first[0] + first[1]] == 0
    assert first[2] % 16 == 0
    assert ub.unpack_table(blob) == files
    with pytest.raises(ValueError):
        ub.unpack_table(b"XXXX" + blob[4:])


def test_registry_source_imports_each_app_statically():
    src = ub._registry_source(["hello", "gc_stress"])
    ns = {}
    compile(src, "_registry.py", "exec")
    assert "NAMES = ('hello', 'gc_stress', )" in src
    assert "from ccidkit.uefi.fw.apps import gc_stress as m" in src
    # with no apps at all, load() still answers None
    exec(ub._registry_source([]), ns)
    assert ns["load"]("hello") is None and ns["NAMES"] == ()


def test_register_build_cli_options():
    import argparse
    parser = argparse.ArgumentParser(prog="ccidkit uefi")
    sub = parser.add_subparsers(dest="cmd")
    ub.register_build(sub)
    args = parser.parse_args(["build", "--out", "x", "--app", "a.py", "--app", "b.py",
                              "--jobs", "1"])
    assert (args.out, args.app, args.jobs, args.func) == ("x", ["a.py", "b.py"], 1,
                                                          ub.run_build)
    args = parser.parse_args(["build"])
    assert (args.out, args.app, args.jobs) == (None, [], 2)


def test_missing_app_file_is_a_build_error(tmp_path):
    with pytest.raises(ub.UefiBuildError, match="--app"):
        ub._python_sources([str(tmp_path / "nope.py")])


# ---------------------------------------------------------------- efi.py on a stand-in host

class FakeHost:
    """Answers like the runtime's ck_host.c; records the calls."""

    def __init__(self, answers):
        self.answers = dict(answers)
        self.calls = []
        self.pending = None

    def call(self, name, payload):
        self.calls.append((name, payload))
        if name == "_pending":
            if self.pending is None:
                return "!8000000000000006 EFI_NOT_READY no pending answer"
            answer, self.pending = self.pending, None
            return answer
        answer = self.answers.get((name, payload), self.answers.get(name))
        if answer is None:
            return "!8000000000000003 EFI_UNSUPPORTED unknown service"
        if len(answer) > 64:                 # a small answer buffer, as in firmware
            self.pending = answer
            raise ValueError("host callback result too large")
        return answer


@pytest.fixture
def host():
    fake = FakeHost({})
    efi.set_host(fake)
    yield fake
    efi.set_host(None)


def test_call_success_error_and_unknown(host):
    host.answers["stall"] = "="
    assert efi.call("stall", "0") == ""
    with pytest.raises(efi.EfiError) as e:
        efi.call("nope", "")
    assert e.value.status == efi.EFI_UNSUPPORTED == 0x8000000000000003
    assert e.value.name == "EFI_UNSUPPORTED" and e.value.code == e.value.status
    assert str(e.value) == "EFI_UNSUPPORTED: unknown service"
    host.answers["weird"] = "?"
    with pytest.raises(efi.EfiError) as e:
        efi.call("weird")
    assert e.value.status == efi.EFI_DEVICE_ERROR
    host.answers["badstatus"] = "!zz EFI_X oops"
    with pytest.raises(efi.EfiError) as e:
        efi.call("badstatus")
    assert e.value.status == efi.EFI_DEVICE_ERROR


def test_efi_error_is_a_ccidkit_error():
    from ccidkit.core.errors import CcidkitError
    err = efi.EfiError("x", efi.EFI_TIMEOUT)
    assert isinstance(err, CcidkitError) and err.name == "EFI_TIMEOUT"
    assert efi.status_name(12345) == "EFI_ERROR"


def test_large_answer_is_collected_from_pending(host):
    data = bytes(range(256)) * 2
    host.answers[("rng", "512")] = "=" + data.hex()
    assert efi.random_bytes(512) == data
    assert host.calls == [("rng", "512"), ("_pending", "")]


def test_random_bytes_in_chunks_of_4096(host):
    host.answers[("rng", "4096")] = "=" + "ab" * 4096
    host.answers[("rng", "1")] = "=cd"
    assert efi.random_bytes(4097) == b"\xab" * 4096 + b"\xcd"


def test_arguments_are_checked_before_any_call(host):
    bad = [lambda: efi.stall(-1), lambda: efi.stall(10000001), lambda: efi.stall(True),
           lambda: efi.random_bytes(0), lambda: efi.debug_exit(256),
           lambda: efi.reset("sideways"), lambda: efi.usb_bulk_in(1, 0x02, 8),
           lambda: efi.usb_bulk_out(1, 0x81, b"x"), lambda: efi.usb_bulk_out(1, 3, "text"),
           lambda: efi.get_variable("two words"), lambda: efi.get_variable(""),
           lambda: efi.usb_interrupt_start(1, 0x81, 65, 10),
           lambda: efi.usb_control(0, 0x80, 6, 0x100, 0, 18), lambda: efi.call(b"x", "")]
    for fn in bad:
        with pytest.raises(efi.EfiError) as e:
            fn()
        assert e.value.status == efi.EFI_INVALID_PARAMETER
    assert host.calls == []


def test_payload_formats(host):
    host.answers["usb.bulk_out"] = "=3"
    host.answers["usb.bulk_in"] = "=8100"
    host.answers["usb.control"] = "=12011001"
    host.answers["var.set"] = "="
    host.answers["usb.intr_start"] = "="
    assert efi.usb_bulk_out(2, 0x03, b"\x65\x00\x01") == 3
    assert efi.usb_bulk_in(2, 0x82, 64, timeout_ms=50) == b"\x81\x00"
    assert efi.usb_control(2, 0x80, 6, 0x0100, 0, 4) == b"\x12\x01\x10\x01"
    assert efi.usb_control(2, 0x21, 0x0A, 0, 0, b"") == b""
    efi.set_variable("Foo", efi.GLOBAL_VARIABLE, 6, b"\x01")
    efi.usb_interrupt_start(2, 0x81, 8, 10)
    assert host.calls == [
        ("usb.bulk_out", "2 3 1000 650001"),
        ("usb.bulk_in", "2 130 50 64"),
        ("usb.control", "2 128 6 256 0 1000 4"),
        ("usb.control", "2 33 10 0 0 1000 -"),
        ("var.set", "8be4df61-93ca-11d2-aa0d-00e098032b8c Foo 6 01"),
        ("usb.intr_start", "2 129 8 10"),
    ]


def test_variables_keys_time_and_polls(host):
    host.answers[("var.get", efi.GLOBAL_VARIABLE + " BootOrder")] = "=7 01000000"
    host.answers[("var.get", efi.GLOBAL_VARIABLE + " Empty")] = "=6 -"
    host.answers[("var.get", efi.GLOBAL_VARIABLE + " Gone")] = \
        "!800000000000000e EFI_NOT_FOUND GetVariable"
    assert efi.get_variable("BootOrder") == (7, b"\x01\x00\x00\x00")
    assert efi.get_variable("Empty") == (6, b"")
    assert efi.get_variable("Gone") is None
    host.answers[("con.key", "100")] = "="
    host.answers[("con.key", "-")] = "=0 49"
    assert efi.read_key(100) is None
    assert efi.read_key() == (0, "1")
    host.answers["time.get"] = "=2026 11 21 15 31 46"
    assert efi.get_time() == (2026, 11, 21, 15, 31, 46)
    host.answers["usb.intr_poll"] = "=5003 5002"
    assert efi.usb_interrupt_poll(1, 0x81) == [b"\x50\x03", b"\x50\x02"]
    host.answers["usb.intr_poll"] = "="
    assert efi.usb_interrupt_poll(1, 0x81) == []


def test_usb_devices_parse(host):
    dd = "1201100100000040e6083344000001020301"
    cfg = "09025d00010100e032" + "09040000030b000004"
    host.answers["usb.list"] = ("=1 %s %s 09040000030b000004 129:3:64:255,130:2:64:0,3:2:64:0\n"
                                "2 %s 0902 0904010000ff000000 -" % (dd, cfg, dd))
    devs = efi.usb_devices()
    assert [(d.handle, d.vid, d.pid, d.interface_class) for d in devs] == \
        [(1, 0x08E6, 0x4433, 0x0B), (2, 0x08E6, 0x4433, 0xFF)]
    assert devs[0].endpoints == [(0x81, 3, 64, 255), (0x82, 2, 64, 0), (0x03, 2, 64, 0)]
    assert devs[0].config_descriptor == bytes.fromhex(cfg)
    assert devs[1].endpoints == [] and devs[1].interface_number == 1
    host.answers["usb.list"] = "="
    assert efi.usb_devices() == []
    host.answers["usb.list"] = "=1 2 3"
    with pytest.raises(efi.EfiError):
        efi.usb_devices()


def test_no_runtime_on_cpython():
    efi.set_host(None)
    with pytest.raises(efi.EfiError) as e:
        efi.stall(1)
    assert e.value.status == efi.EFI_UNSUPPORTED


# ---------------------------------------------------------------- the built image

@pytest.mark.slow
def test_pe32plus_efi_application(uefi_build):
    with open(uefi_build.efi_path, "rb") as f:
        data = f.read()
    assert data[:2] == b"MZ"
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    assert data[pe:pe + 4] == b"PE\0\0"
    machine = struct.unpack_from("<H", data, pe + 4)[0]
    assert machine == 0x8664                                   # x86-64
    opt = pe + 24
    assert struct.unpack_from("<H", data, opt)[0] == 0x20B     # PE32+
    assert struct.unpack_from("<H", data, opt + 68)[0] == 10   # EFI application
    nsec = struct.unpack_from("<H", data, pe + 6)[0]
    names = [data[opt + struct.unpack_from("<H", data, pe + 20)[0] + 40 * i:][:8].rstrip(b"\0")
             for i in range(nsec)]
    assert b".text" in names and b".reloc" in names and b".data" in names


@pytest.mark.slow
def test_esp_layout_and_fat_image(uefi_build, tmp_path):
    esp = uefi_build.esp_dir
    boot = os.path.join(esp, "EFI", "BOOT", "BOOTX64.EFI")
    assert _sha(boot) == _sha(uefi_build.efi_path)
    licences = sorted(os.listdir(ub.LICENSES_DIR))
    assert sorted(os.listdir(os.path.join(esp, "LICENSES"))) == licences
    for n in ("MicroPython.txt", "gnu-efi.txt", "wasm2c-runtime.txt", "Apache-2.0.txt"):
        assert n in licences
    out = tmp_path / "BOOTX64.EFI"
    subprocess.run(["mcopy", "-n", "-i", uefi_build.esp_img, "::/EFI/BOOT/BOOTX64.EFI",
                    str(out)], check=True)
    assert _sha(out) == _sha(uefi_build.efi_path)
    listing = subprocess.run(["mdir", "-b", "-i", uefi_build.esp_img, "::/LICENSES"],
                             check=True, stdout=subprocess.PIPE).stdout.decode()
    assert "MicroPython.txt" in listing and "gnu-efi.txt" in listing


@pytest.mark.slow
def test_embedded_table_lists_modules_and_licences(uefi_build):
    table = _table_of(uefi_build.efi_path)
    expected = _expected_modules()
    missing = expected - set(table)
    assert not missing, sorted(missing)
    for path in expected:
        assert table[path][:2] == b"M\x06", path          # .mpy version 6
    with open(os.path.join(REPO, ub.BOOT_SOURCE), "rb") as f:
        assert table["/boot.py"] == f.read()
    assert "/lib/ccidkit/uefi/fw/boot.mpy" not in table
    for n in os.listdir(ub.LICENSES_DIR):
        with open(os.path.join(ub.LICENSES_DIR, n), "rb") as f:
            assert table["/LICENSES/" + n] == f.read()
    for p in ("/lib/tests/portable/_manifest.mpy", "/lib/ccidkit/uefi/fw/apps/_registry.mpy",
              "/lib/ccidkit/uefi/fw/efi.mpy", "/lib/ccidkit/uefi/fw/apps/gc_stress.mpy",
              "/lib/ccidkit/uefi/fw/apps/hello.mpy", "/lib/ccidkit/core/errors.mpy"):
        assert p in table
    assert not any(p.startswith("/lib/ccidkit/core/host/") for p in table)
    # the manifest's test list is exactly the portable test modules
    tests = sorted(fn[:-3] for fn in os.listdir(os.path.join(REPO, ub.TESTS_DIR))
                   if fn.startswith("test_") and fn.endswith(".py"))
    assert uefi_build.manifest["test_modules"] == tests
    for name in tests:
        assert name.encode() in table["/lib/tests/portable/_manifest.mpy"]


@pytest.mark.slow
def test_manifest_records_sizes_hashes_and_times(uefi_build):
    with open(uefi_build.manifest_path) as f:
        m = json.load(f)
    assert m["efi"]["size"] == os.path.getsize(uefi_build.efi_path)
    assert m["efi"]["sha256"] == _sha(uefi_build.efi_path)
    assert m["esp_img"]["size"] == os.path.getsize(uefi_build.esp_img)
    assert "EFI/BOOT/BOOTX64.EFI" in m["esp"]
    assert {"rewrite", "wasm2c", "compile", "mpy", "link", "esp"} <= set(m["times"])
    paths = [f["path"] for f in m["table"]["files"]]
    assert paths == sorted(paths) and "/boot.py" in paths
    assert m["settings"]["heapsize"] == ub.HEAPSIZE
    assert m["build_history"][-1]["seconds"] == m["build_seconds"]


@pytest.mark.slow
def test_second_build_is_cached(uefi_build, request):
    apps = []
    try:
        apps = request.getfixturevalue("uefi_apps")
    except pytest.FixtureLookupError:
        pass
    before = os.stat(uefi_build.efi_path).st_mtime_ns
    again = ub.build_image(out_dir=uefi_build.out_dir, apps=apps, progress=None)
    assert again.cached is True
    assert again.manifest["steps_run"] == []
    assert os.stat(again.efi_path).st_mtime_ns == before
    assert again.manifest["efi"]["sha256"] == uefi_build.manifest["efi"]["sha256"]


@pytest.mark.slow
def test_python_change_reembeds_without_compiling(uefi_build, tmp_path):
    # a copy of the build's work tree: the C objects are found by content
    work = os.path.join(uefi_build.out_dir, "work")
    out = tmp_path / "out"
    shutil.copytree(work, out / "work", ignore=shutil.ignore_patterns("ccidkit.so"))
    app = tmp_path / "extra-app.py"
    app.write_text('"""extra"""\n\ndef main(argv):\n    return 7\n')
    lines = []
    r = ub.build_image(out_dir=str(out), apps=[str(app)], progress=lines.append)
    assert r.cached is False
    assert "compile" not in r.manifest["steps_run"]
    assert "rewrite" not in r.manifest["steps_run"]
    assert {"table", "link"} <= set(r.manifest["steps_run"])
    assert any("all objects cached" in s for s in lines)
    table = _table_of(r.efi_path)
    assert "/lib/ccidkit/uefi/fw/apps/extra_app.mpy" in table
    assert b"extra_app" in table["/lib/ccidkit/uefi/fw/apps/_registry.mpy"]


# ---------------------------------------------------------------- the runtime's own libc

_LIBC_NAMES = ("memcpy", "memmove", "memset", "memcmp", "strlen", "floor", "floorf", "ceil",
               "ceilf", "trunc", "truncf", "nearbyint", "nearbyintf", "sqrt", "sqrtf", "fabs",
               "fabsf", "copysign", "copysignf", "__popcountdi2")


@pytest.fixture(scope="module")
def cklibc(tmp_path_factory):
    """uefi/runtime/ck_libc.c built for the host, every name prefixed ``ck_``."""
    import ctypes
    if shutil.which("gcc") is None:
        pytest.skip("gcc missing")
    inc = subprocess.run(["gcc", "-print-file-name=include"], check=True,
                         stdout=subprocess.PIPE).stdout.decode().strip()
    so = str(tmp_path_factory.mktemp("cklibc") / "libck.so")
    subprocess.run(["gcc", "-O2", "-std=gnu99", "-fPIC", "-shared", "-ffreestanding", "-nostdinc",
                    "-isystem", inc, "-I" + os.path.join(ub.RUNTIME_DIR, "include")] +
                   ["-D%s=ck_%s" % (n, n) for n in _LIBC_NAMES] +
                   [os.path.join(ub.RUNTIME_DIR, "ck_libc.c"), "-o", so], check=True)
    lib = ctypes.CDLL(so)
    for n in _LIBC_NAMES:
        f = getattr(lib, "ck_" + n)
        if n.endswith("f") and n not in ("memcpy",):
            f.restype = ctypes.c_float
            f.argtypes = [ctypes.c_float] * (2 if n.startswith("copysign") else 1)
        elif n in ("floor", "ceil", "trunc", "nearbyint", "sqrt", "fabs", "copysign"):
            f.restype = ctypes.c_double
            f.argtypes = [ctypes.c_double] * (2 if n == "copysign" else 1)
    return lib


def _bits(x, fmt="<d"):
    return struct.pack(fmt, x)


def _f32(x):
    import ctypes
    return ctypes.c_float(x).value          # rounds to float32, overflowing to inf


def _c_rounding(x, rounded):
    """C semantics: integral, inf and nan pass through; a zero result keeps x's sign."""
    import math
    if math.isnan(x) or math.isinf(x):
        return x
    r = float(rounded(x))
    return math.copysign(r, x) if r == 0.0 else r


def _samples():
    vals = [0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999999999999994, -0.49999999999999994,
            1e-300, -1e-300, 3.7, -3.7, 1e15 + 0.5, -(1e15 + 0.5), 2.0 ** 52, -(2.0 ** 52),
            2.0 ** 52 - 0.5, 2.0 ** 53 + 2, 1e300, -1e300, float("inf"), float("-inf"),
            123456789.987654321, -7.0]
    vals += [k / 8.0 for k in range(-40, 41)]
    return vals


def test_runtime_rounding_functions_match_c(cklibc):
    import math
    for x in _samples():
        for name, py in (("floor", math.floor), ("ceil", math.ceil), ("trunc", math.trunc),
                         ("nearbyint", round)):
            got = getattr(cklibc, "ck_" + name)(x)
            want = _c_rounding(x, py)
            assert _bits(got) == _bits(want), (name, x, got, want)
            xf = _f32(x)
            gotf = getattr(cklibc, "ck_" + name + "f")(xf)
            wantf = _f32(_c_rounding(xf, py))
            assert _bits(gotf, "<f") == _bits(wantf, "<f"), (name + "f", xf, gotf, wantf)
    nan = cklibc.ck_floor(float("nan"))
    assert nan != nan and cklibc.ck_nearbyintf(float("nan")) != cklibc.ck_nearbyintf(float("nan"))


def test_runtime_sqrt_fabs_copysign(cklibc):
    import math
    for x in (0.0, -0.0, 2.0, 1e-310, 1e300, 0.25, float("inf")):
        assert _bits(cklibc.ck_sqrt(x)) == _bits(math.sqrt(x))
        assert cklibc.ck_sqrtf(_f32(x)) == _f32(math.sqrt(_f32(x)))
    assert math.isnan(cklibc.ck_sqrt(-1.0))
    assert _bits(cklibc.ck_fabs(-0.0)) == _bits(0.0) and cklibc.ck_fabsf(-2.5) == 2.5
    assert _bits(cklibc.ck_copysign(3.0, -0.0)) == _bits(-3.0)
    assert cklibc.ck_copysignf(-3.0, 1.0) == 3.0


def test_runtime_byte_routines(cklibc):
    import ctypes
    buf = ctypes.create_string_buffer(bytes(range(64)), 64)
    base = ctypes.addressof(buf)
    cklibc.ck_memmove(ctypes.c_void_p(base + 8), ctypes.c_void_p(base), ctypes.c_size_t(32))
    assert buf.raw[8:40] == bytes(range(32)) and buf.raw[:8] == bytes(range(8))
    buf = ctypes.create_string_buffer(bytes(range(64)), 64)
    base = ctypes.addressof(buf)
    cklibc.ck_memmove(ctypes.c_void_p(base), ctypes.c_void_p(base + 8), ctypes.c_size_t(32))
    assert buf.raw[:32] == bytes(range(8, 40)) and buf.raw[32:] == bytes(range(32, 64))
    cklibc.ck_memset(ctypes.c_void_p(base + 3), 0xAB, ctypes.c_size_t(5))
    assert buf.raw[2:9] == bytes((10,)) + b"\xab" * 5 + bytes((16,))
    dst = ctypes.create_string_buffer(16)
    cklibc.ck_memcpy(dst, b"0123456789abcdef", ctypes.c_size_t(16))
    assert dst.raw == b"0123456789abcdef"
    cklibc.ck_memcmp.restype = ctypes.c_int
    assert cklibc.ck_memcmp(b"abc", b"abd", ctypes.c_size_t(3)) < 0
    assert cklibc.ck_memcmp(b"abd", b"abc", ctypes.c_size_t(3)) > 0
    assert cklibc.ck_memcmp(b"ab\xff", b"ab\x01", ctypes.c_size_t(3)) > 0   # unsigned bytes
    assert cklibc.ck_memcmp(b"abc", b"abd", ctypes.c_size_t(2)) == 0
    cklibc.ck_strlen.restype = ctypes.c_size_t
    assert cklibc.ck_strlen(b"hello\0world") == 5
    cklibc.ck___popcountdi2.argtypes = [ctypes.c_longlong]
    assert [cklibc.ck___popcountdi2(v) for v in (0, 1, 0xFF, -1, 1 << 63 - 0)] == [0, 1, 8, 64, 1]
