"""The restricted-subset checker: it accepts the portable tree and rejects what it must."""

from ccidkit.scripts import subset


def test_portable_tree_is_clean():
    violations = subset.check_all()
    assert not violations, "\n".join(str(v) for v in violations)


def test_portable_files_cover_core_and_card_engines_not_host():
    files = [p for p, _ in subset.portable_files()]
    assert "core/__init__.py" in files
    assert "emu/card/__init__.py" in files
    assert not [p for p in files if p.startswith("core/host")]


def rules(src, extra=()):
    return [v.rule for v in subset.check_source(src, "x.py", extra)]


def test_rejects_forbidden_imports():
    assert rules("import socket")
    assert rules("from os import path")
    assert rules("import typing")
    assert not rules("import struct\nfrom micropython import const\nfrom . import atr")
    assert not rules("import host", extra=("host",))


def test_rejects_constructs_micropython_lacks():
    bad = [
        "match x:\n case 1: pass",
        "async def f(): pass",
        "class A(metaclass=M): pass",
        "class B(bytes): pass",
        "@dataclass\nclass C: pass",
        "x = (5).bit_length()",
        "s.rjust(3)",
        "int('ff', base=16)",
        "del buf[:3]",
        "try:\n pass\nexcept:\n pass",
        "try:\n pass\nexcept Exception:\n pass",
        "print('x')",
        "eval('1')",
        "x.__dict__",
    ]
    for src in bad:
        assert rules(src), src


def test_accepts_ordinary_subset_code():
    good = (
        "import struct\n"
        "class T1Error(ValueError):\n"
        "    @property\n"
        "    def code(self): return 1\n"
        "def f(buf):\n"
        "    mv = memoryview(buf)\n"
        "    try:\n"
        "        return struct.unpack_from('<I', mv, 1)[0]\n"
        "    except (ValueError, IndexError):\n"
        "        return None\n"
    )
    assert not rules(good)


def test_mpy_cross_rejects_code_micropython_cannot_compile(tmp_path):
    src = tmp_path / "bad.py"
    src.write_text("def f(:\n    pass\n")
    assert subset.compile_mpy(str(src), str(tmp_path / "bad.mpy"))
    ok = tmp_path / "ok.py"
    ok.write_text("X = 1\n")
    assert subset.compile_mpy(str(ok), str(tmp_path / "ok.mpy")) is None
