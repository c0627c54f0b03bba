#!/usr/bin/env python
"""Record one TensorRT release's Python API surface and trtexec's flags, read from NVIDIA's own sources.

    python tools/trt_surface.py --repo /path/to/TensorRT --ref release/10.3      # a clone or bare mirror, at a branch
    python tools/trt_surface.py --repo /path/to/TensorRT                         # a checkout's work tree
    python tools/trt_surface.py --repo ... --ref release/11.1 --out tests/backends/tensorrt/trt_surfaces

The Python bindings are pybind11 sources (python/src/**.cpp) plus the package's __init__.py; trtexec's flags are parsed
in samples/common/sampleOptions.cpp. The JSON written (`<out>/<major>.<minor>.json`) holds facts about the API only:
every class with its bases, constructors, methods and their argument names (positional and keyword, with whether a
default exists), properties (readable/writable), the methods TensorRT calls back on Python subclasses, every enum
and its members, module functions and attributes, what `nptype` maps, and trtexec's flags with the values it compares
some of them against. No code is copied. tests/backends/tensorrt/trt_standin builds a strict stand-in `tensorrt`
module from it.

Arity of an overload without argument names comes from the binding's lambda or from the C++ headers when that is
unambiguous; otherwise it is recorded as unknown (`arity: null`) and only keyword use is refused.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "edgedeploy.trt-surface/1"
BINDINGS = "python/src"
PACKAGE_INIT = "python/packaging/bindings_wheel/tensorrt/__init__.py"
PACKAGE_INIT_8_5 = "python/packaging/tensorrt/__init__.py"  # where 8.5 and earlier keep it
VERSION_HEADER = "include/NvInferVersion.h"
HEADERS = ("include/", "parsers/onnx/NvOnnxParser.h")
TRTEXEC_OPTIONS = "samples/common/sampleOptions.cpp"
# Preprocessor symbols of the full `tensorrt` package (not tensorrt_lean / tensorrt_dispatch), on Linux.
MACROS = {"EXPORT_ALL_BINDINGS": 1, "ENABLE_INETWORK_SERIALIZE": 0, "PYBIND11_VERSION_MAJOR": 2,
          "PYBIND11_VERSION_MINOR": 13, "TRT_WINML": 0}
UNDEFINED = {"_WIN32", "WIN32", "WIN32_LEAN_AND_MEAN", "_MSC_VER"}


class SurfaceError(Exception):
    """The sources hold something this reader does not understand: fix the reader rather than guess."""


# ----------------------------------------------------------------------------------------------------- sources

class Source:
    """Files of a TensorRT checkout: from git at a ref (bare mirrors too), or from the work tree when ref is None."""

    def __init__(self, repo: Path, ref: str | None):
        self.repo, self.ref = Path(repo), ref

    def _git(self, *args: str) -> str:
        run = subprocess.run(["git", "-C", str(self.repo), *args], capture_output=True, text=True)
        if run.returncode != 0:
            raise SurfaceError(f"git {' '.join(args)}: {run.stderr.strip()}")
        return run.stdout

    def read(self, path: str) -> str | None:
        if self.ref is None:
            p = self.repo / path
            return p.read_text(encoding="utf-8", errors="replace") if p.is_file() else None
        try:
            return self._git("show", f"{self.ref}:{path}")
        except SurfaceError:
            return None

    def files(self, prefix: str) -> list[str]:
        if self.ref is None:
            root = self.repo / prefix
            if root.is_file():
                return [prefix]
            return sorted(str(p.relative_to(self.repo)) for p in root.rglob("*") if p.is_file())
        return [line for line in self._git("ls-tree", "-r", "--name-only", self.ref, "--", prefix).splitlines() if line]

    def commit(self) -> str | None:
        try:
            return self._git("rev-parse", self.ref or "HEAD").strip()
        except SurfaceError:
            return None


# ------------------------------------------------------------------------------------------------ C++ reading

def strip_comments(text: str) -> str:
    """C++ text without comments (newlines kept), string/char/raw-string literals untouched."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i) if m else -1
            if end < 0:
                raise SurfaceError("unterminated raw string")
            end += len(m.group(1)) + 2
            out.append(text[i:end])
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _eval_condition(expr: str, where: str, strict: bool) -> bool:
    expr = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)",
                  lambda m: "1" if (m.group(1) or m.group(2)) in MACROS else "0", expr)
    names = set(re.findall(r"[A-Za-z_]\w*", expr))
    unknown = names - set(MACROS) - UNDEFINED
    if unknown and strict:
        raise SurfaceError(f"{where}: preprocessor condition on unknown symbol(s) {sorted(unknown)}: {expr.strip()}")
    py = re.sub(r"[A-Za-z_]\w*", lambda m: str(MACROS.get(m.group(0), 0)), expr)
    py = py.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py)
    return bool(eval(py, {"__builtins__": {}}, {}))  # digits, comparisons, and/or/not only


def preprocess(text: str, where: str, strict: bool = True) -> str:
    """Keep the lines a Linux build of the full package compiles; drop directives. In the binding sources an unknown
    symbol is an error (a new build switch needs a decision); in headers it is undefined, as in C."""
    lines = text.replace("\\\n", " ").split("\n")
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch active, some branch of this #if taken)
    for line in lines:
        s = line.strip()
        active = all(a for a, _ in stack)
        if s.startswith("#"):
            d = s[1:].strip()
            word = d.split(None, 1)[0] if d else ""
            rest = d[len(word):].strip()
            if word in ("if", "ifdef", "ifndef"):
                cond = (_eval_condition(rest, where, strict) if word == "if" else
                        (rest in MACROS) == (word == "ifdef"))
                stack.append((cond, cond))
            elif word == "elif":
                _, taken = stack.pop()
                cond = not taken and _eval_condition(rest, where, strict)
                stack.append((cond, taken or cond))
            elif word == "else":
                _, taken = stack.pop()
                stack.append((not taken, True))
            elif word == "endif":
                stack.pop()
            out.append("")
            continue
        out.append(line if active else "")
    return "\n".join(out)


@dataclass(frozen=True)
class Tok:
    kind: str  # id | str | arg (a "name"_a literal) | num | chr | op
    text: str


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<raw>R"(?P<delim>[^(\s]*)\((?:.|\n)*?\)(?P=delim)")
  | (?P<str>"(?:\\.|[^"\\])*")(?P<suffix>[A-Za-z_]\w*)?
  | (?P<chr>'(?:\\.|[^'\\])*')
  | (?P<id>[A-Za-z_]\w*)
  | (?P<num>\d[\w.']*)
  | (?P<op>::|->|\.\.\.|[^\sA-Za-z_0-9])
""", re.VERBOSE)


def tokenize(text: str) -> list[Tok]:
    toks: list[Tok] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup if m.lastgroup not in ("delim", "suffix") else "str"
        if m.group("ws"):
            continue
        if m.group("raw"):
            toks.append(Tok("str", m.group("raw")))
        elif m.group("str") is not None:
            try:
                value = ast.literal_eval(m.group("str"))
            except (ValueError, SyntaxError):
                value = m.group("str")[1:-1]
            if m.group("suffix") == "_a":
                toks.append(Tok("arg", value))
            elif toks and toks[-1].kind == "str":  # adjacent literals concatenate
                toks[-1] = Tok("str", toks[-1].text + value)
            else:
                toks.append(Tok("str", value))
        else:
            toks.append(Tok(kind, m.group(kind)))
    return toks


_OPEN, _CLOSE = {"(": ")", "[": "]", "{": "}"}, {")", "]", "}"}


def match_close(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing toks[i] ('(', '[' or '{')."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].kind != "op":
            continue
        if toks[j].text in _OPEN:
            depth += 1
        elif toks[j].text in _CLOSE:
            depth -= 1
            if depth == 0:
                return j
    raise SurfaceError(f"unbalanced {toks[i].text!r}")


def split_args(toks: list[Tok]) -> list[list[Tok]]:
    """Top-level comma split of an argument list (parentheses, braces, brackets and template brackets nest)."""
    args: list[list[Tok]] = []
    cur: list[Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "op" and t.text in _OPEN:
            j = match_close(toks, i)
            cur += toks[i:j + 1]
            i = j + 1
            continue
        if t.kind == "op" and t.text == "<" and i > 0 and toks[i - 1].kind == "id" and _closes_template(toks, i):
            j = _template_end(toks, i)
            cur += toks[i:j + 1]
            i = j + 1
            continue
        if t.kind == "op" and t.text == ",":
            args.append(cur)
            cur = []
        else:
            cur.append(t)
        i += 1
    if cur or args:
        args.append(cur)
    return args


def _template_end(toks: list[Tok], i: int) -> int:
    depth, j = 0, i
    while j < len(toks):
        t = toks[j]
        if t.kind == "op" and t.text in _OPEN:
            j = match_close(toks, j) + 1
            continue
        if t.kind == "op" and t.text == "<":
            depth += 1
        elif t.kind == "op" and t.text == ">":
            depth -= 1
            if depth == 0:
                return j
        elif t.kind == "op" and t.text in (";", "{", "}"):
            break
        j += 1
    return -1


def _closes_template(toks: list[Tok], i: int) -> bool:
    return _template_end(toks, i) >= 0


def text_of(toks: list[Tok]) -> str:
    return "".join(t.text if t.kind not in ("str", "arg") else json.dumps(t.text) for t in toks)


# --------------------------------------------------------------------------------------- callables and arity

@dataclass
class Callables:
    """Parameter counts of the binding files' lambdas and helper functions, and of the headers' class methods."""

    functions: dict[str, set[int]] = field(default_factory=dict)
    methods: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    function_types: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)  # C++ parameter types
    method_types: dict[tuple[str, str], set[tuple[str, ...]]] = field(default_factory=dict)

    def add_bindings(self, toks: list[Tok]) -> None:
        for i, t in enumerate(toks):
            if t.kind != "id" or i + 1 >= len(toks):
                continue
            nxt = toks[i + 1]
            # auto const NAME = [..](params)   /   RET NAME(params) {
            if nxt.text == "=" and i + 2 < len(toks) and toks[i + 2].text == "[" and _preceded_by_auto(toks, i):
                close = match_close(toks, i + 2)
                if close + 1 < len(toks) and toks[close + 1].text == "(":
                    self.functions.setdefault(t.text, set()).add(_count_params(toks, close + 1))
                    self.function_types.setdefault(t.text, set()).add(_param_types(toks, close + 1))
            elif nxt.text == "(" and i > 0 and (toks[i - 1].kind == "id" or toks[i - 1].text in ("&", "*", ">")):
                close = match_close(toks, i + 1)
                if close + 1 < len(toks) and toks[close + 1].text == "{" and _looks_like_definition(toks, i):
                    self.functions.setdefault(t.text, set()).add(_count_params(toks, i + 1))
                    self.function_types.setdefault(t.text, set()).add(_param_types(toks, i + 1))

    def add_header(self, toks: list[Tok]) -> None:
        i = 0
        while i < len(toks):
            if toks[i].text in ("class", "struct") and i + 1 < len(toks) and toks[i + 1].kind == "id":
                name = toks[i + 1].text
                j = i + 2
                while j < len(toks) and toks[j].text not in ("{", ";"):
                    j += 1
                if j < len(toks) and toks[j].text == "{":
                    end = match_close(toks, j)
                    self._members(name, toks[j + 1:end])
                    i = j + 1  # nested classes are visited too
                    continue
            i += 1

    def _members(self, cls: str, body: list[Tok]) -> None:
        k = 0
        while k < len(body):
            t = body[k]
            if t.kind == "op" and t.text == "{":
                k = match_close(body, k) + 1
                continue
            if (t.kind == "id" and k + 1 < len(body) and body[k + 1].text == "(" and k > 0
                    and (body[k - 1].kind == "id" or body[k - 1].text in ("&", "*", ">"))
                    and body[k - 1].text not in ("return", "operator")):
                self.methods.setdefault((cls, t.text), set()).add(_count_params(body, k + 1))
                self.method_types.setdefault((cls, t.text), set()).add(_param_types(body, k + 1))
                k = match_close(body, k + 1) + 1
                continue
            k += 1

    def arity_of(self, fn: list[Tok], method: bool) -> int | None:
        """Python-visible parameter count of a bound callable, or None when it cannot be told for sure."""
        fn = _unwrap(fn)
        if not fn:
            return None
        if fn[0].text == "[":  # an inline lambda
            close = match_close(fn, 0)
            if close + 1 < len(fn) and fn[close + 1].text == "(":
                n = _count_params(fn, close + 1)
                return n - 1 if method else n
            return None
        if fn[0].text == "&" and len(fn) >= 4 and fn[-2].text == "::":
            counts = self.methods.get((fn[-3].text, fn[-1].text))
            return next(iter(counts)) if counts and len(counts) == 1 else None
        names = [t.text for t in fn if t.kind == "id"]
        if "overload_cast" in names:
            k = next(k for k, t in enumerate(fn) if t.text == "overload_cast")
            if k + 1 < len(fn) and fn[k + 1].text == "<":
                inner = fn[k + 2:_template_end(fn, k + 1)]
                return len(split_args(inner)) if inner else 0
        if fn[0].kind == "id" and names:
            base = _strip_template(fn)
            counts = self.functions.get(base)
            if counts and len(counts) == 1:
                n = next(iter(counts))
                return n - 1 if method else n
        return None


    def types_of(self, fn: list[Tok], method: bool) -> tuple[str, ...] | None:
        """The C++ parameter types of a bound callable as Python sees it (`self` dropped), or None when they
        cannot be told for sure (several signatures share the name, or the callable is not found)."""
        fn = _unwrap(fn)
        if not fn:
            return None
        if fn[0].text == "[":
            close = match_close(fn, 0)
            if close + 1 < len(fn) and fn[close + 1].text == "(":
                types = _param_types(fn, close + 1)
                return types[1:] if method else types
            return None
        if fn[0].text == "&" and len(fn) >= 4 and fn[-2].text == "::":
            found = self.method_types.get((fn[-3].text, fn[-1].text))
            return next(iter(found)) if found and len(found) == 1 else None
        names = [t.text for t in fn if t.kind == "id"]
        if "overload_cast" in names:
            k = next(k for k, t in enumerate(fn) if t.text == "overload_cast")
            if k + 1 < len(fn) and fn[k + 1].text == "<":
                inner = fn[k + 2:_template_end(fn, k + 1)]
                return tuple(text_of(a) for a in split_args(inner)) if inner else ()
        if fn[0].kind == "id" and names and "<" not in [t.text for t in fn]:  # templates: T is not a type here
            found = self.function_types.get(_strip_template(fn))
            if found and len(found) == 1:
                types = next(iter(found))
                return types[1:] if method else types
        return None


def _param_types(toks: list[Tok], open_paren: int) -> tuple[str, ...]:
    """Each parameter's C++ type as text: the declaration without its name and default (`size_t streamHandle`
    → `size_t`; `char const* name = nullptr` → `char const*`)."""
    close = match_close(toks, open_paren)
    inner = toks[open_paren + 1:close]
    if not inner or (len(inner) == 1 and inner[0].text == "void"):
        return ()
    out = []
    for param in split_args(inner):
        if any(t.text == "=" for t in param):
            param = param[:next(k for k, t in enumerate(param) if t.text == "=")]
        if len(param) > 1 and param[-1].kind == "id" and param[-2].text not in ("::",) \
                and param[-1].text not in _TYPE_WORDS:
            param = param[:-1]
        out.append(" ".join(t.text for t in param).replace(" :: ", "::"))
    return tuple(out)


_TYPE_WORDS = {"int", "long", "short", "char", "unsigned", "signed", "float", "double", "bool", "const", "void"}
_INTEGERS = {"int", "long", "short", "unsigned", "signed", "size_t", "int8_t", "int16_t", "int32_t", "int64_t",
             "uint8_t", "uint16_t", "uint32_t", "uint64_t", "ptrdiff_t", "intptr_t", "uintptr_t"}


def python_kind(cpp_type: str, enums: dict[str, str], classes: dict[str, str], implicit: set[str]) -> str | None:
    """What pybind11 accepts for a parameter of this C++ type, when that is certain: "int" (an int, or any object
    with __index__/__int__), "float", "str", "enum X" (only members of enum X), "ref X" (an X, not None), "ptr X"
    (an X or None). None: not checked (templates, containers, bool, py:: objects, types with implicit conversions)."""
    if "<" in cpp_type or "py::" in cpp_type or "std::vector" in cpp_type:
        return None
    words = [w for w in re.findall(r"[A-Za-z_]\w*(?:::[A-Za-z_]\w*)*", cpp_type) if w != "const"]
    words = [w.removeprefix("std::").removeprefix("nvinfer1::").removeprefix("nvonnxparser::") for w in words]
    pointer = "*" in cpp_type
    if not words:
        return None
    if all(w in _INTEGERS for w in words) and not pointer:
        return "int"
    if words == ["float"] or words == ["double"]:
        return None if pointer else "float"
    if (words == ["char"] and cpp_type.count("*") == 1) or words == ["string"]:
        return "str"
    if len(words) != 1:
        return None
    name = words[0]
    if name in enums and not pointer:
        return f"enum {enums[name]}"
    if name in classes and classes[name] not in implicit and cpp_type.count("*") <= 1:
        return f"{'ptr' if pointer else 'ref'} {classes[name]}"
    return None


def _preceded_by_auto(toks: list[Tok], i: int) -> bool:
    return any(toks[k].text == "auto" for k in range(max(0, i - 4), i))


def _looks_like_definition(toks: list[Tok], i: int) -> bool:
    k = i - 1
    while k >= 0 and (toks[k].kind == "id" or toks[k].text in ("&", "*", "::", ">", "<", ",")):
        if toks[k].text in ("return", "new", "else"):
            return False
        k -= 1
    return k < 0 or toks[k].text in (";", "}", "{", ")")


def _count_params(toks: list[Tok], open_paren: int) -> int:
    close = match_close(toks, open_paren)
    inner = toks[open_paren + 1:close]
    if not inner or (len(inner) == 1 and inner[0].text == "void"):
        return 0
    return len(split_args(inner))


def _strip_template(fn: list[Tok]) -> str:
    ids = []
    for t in fn:
        if t.text == "<":
            break
        if t.kind == "id":
            ids.append(t.text)
    return ids[-1] if ids else ""


_WRAPPERS = {"deprecate", "deprecateMember", "deprecateInTrtRtxOnly", "deprecateMemberInTrtRtxOnly", "cpp_function"}


def _unwrap(fn: list[Tok]) -> list[Tok]:
    """`utils::deprecateMember(&X::y, "...")`, `+lambdas::f`, `py::cpp_function(f, ...)` → the wrapped callable."""
    while fn and fn[0].text == "+":
        fn = fn[1:]
    for k, t in enumerate(fn):
        if t.kind == "id" and t.text in _WRAPPERS and k + 1 < len(fn) and fn[k + 1].text == "(":
            if all(x.kind == "id" or x.text == "::" for x in fn[:k]):
                close = match_close(fn, k + 1)
                inner = split_args(fn[k + 2:close])
                return _unwrap(inner[0]) if inner else []
        if t.text not in ("::",) and t.kind != "id":
            break
    return fn


def deprecation_of(fn: list[Tok]) -> str | None:
    """The 'use instead' text of utils::deprecate / deprecateMember (RTX-only deprecations do not apply)."""
    for k, t in enumerate(fn):
        if t.kind == "id" and t.text in ("deprecate", "deprecateMember") and k + 1 < len(fn) and fn[k + 1].text == "(":
            close = match_close(fn, k + 1)
            strings = [x.text for x in fn[k + 2:close] if x.kind == "str"]
            return strings[-1] if strings else ""
    return None


# -------------------------------------------------------------------------------------------- binding reader

@dataclass
class ClassInfo:
    name: str
    cpp: str
    bases_cpp: list[str]
    trampoline: str | None
    buffer: bool = False
    init: list[dict] = field(default_factory=list)
    methods: dict[str, list[dict]] = field(default_factory=dict)
    static_methods: dict[str, list[dict]] = field(default_factory=dict)
    properties: dict[str, dict] = field(default_factory=dict)
    static_properties: dict[str, dict] = field(default_factory=dict)


@dataclass
class EnumInfo:
    name: str
    cpp: str
    arithmetic: bool
    members: list[str] = field(default_factory=list)
    cpp_members: dict[str, str] = field(default_factory=dict)  # C++ enumerator → Python member
    export_values: bool = False
    methods: dict[str, list[dict]] = field(default_factory=dict)


_HOLDERS = {"unique_ptr", "shared_ptr", "nodelete"}


class BindingReader:
    def __init__(self, callables: Callables):
        self.callables = callables
        self.classes: dict[str, ClassInfo] = {}
        self.enums: dict[str, EnumInfo] = {}
        self.functions: dict[str, list[dict]] = {}
        self.attributes: dict[str, list[Tok]] = {}
        self.trampolines: dict[str, dict[str, dict]] = {}  # C++ trampoline class → overridable methods
        self.trampoline_bases: dict[str, list[str]] = {}
        self.vars: dict[str, str] = {"m": ""}  # C++ variable → qualified Python name ('' = the module)
        self.cpp_to_py: dict[str, str] = {}
        self.cpp_enums: dict[str, str] = {}  # C++ enum → Python name
        self.cpp_classes: dict[str, str] = {}
        self.implicit: set[str] = set()  # Python classes with py::implicitly_convertible conversions into them

    # A first pass learns every bound C++ type's Python name, so bases can be told from trampolines and holders.
    def learn_types(self, toks: list[Tok]) -> None:
        for i in range(len(toks) - 3):
            if toks[i].text == "py" and toks[i + 1].text == "::" and toks[i + 2].text in ("class_", "enum_") \
                    and toks[i + 3].text == "<":
                end = _template_end(toks, i + 3)
                targs = split_args(toks[i + 4:end])
                name = next((t.text for t in toks[end + 1:end + 12] if t.kind == "str"), None)
                if name and targs:
                    self.cpp_to_py.setdefault(_cpp_name(targs[0]), name)
                    table = self.cpp_enums if toks[i + 2].text == "enum_" else self.cpp_classes
                    table.setdefault(_cpp_name(targs[0]), name)
            if toks[i].text == "implicitly_convertible" and toks[i + 1].text == "<":
                end = _template_end(toks, i + 1)
                targs = split_args(toks[i + 2:end])
                if len(targs) == 2:
                    self.implicit.add(_cpp_name(targs[1]))

    def kinds(self, types: tuple[str, ...] | None) -> list[str | None] | None:
        """python_kind of each parameter type, or None when no parameter is checked."""
        if types is None:
            return None
        implicit = {self.cpp_classes.get(c, c) for c in self.implicit}
        out = [python_kind(t, self.cpp_enums, self.cpp_classes, implicit) for t in types]
        return out if any(out) else None

    def read(self, toks: list[Tok], where: str) -> None:
        self._trampolines(toks)
        i = 0
        while i < len(toks):
            t = toks[i]
            try:
                if t.text == "py" and i + 3 < len(toks) and toks[i + 1].text == "::" and toks[i + 3].text == "<" \
                        and toks[i + 2].text in ("class_", "enum_"):
                    i = self._declaration(toks, i)
                    continue
                if t.text == "py" and i + 3 < len(toks) and toks[i + 1].text == "::" \
                        and toks[i + 2].text == "bind_vector":
                    i = self._bind_vector(toks, i)
                    continue
                if t.kind == "id" and t.text in self.vars and i + 2 < len(toks) and toks[i + 1].text == "." \
                        and toks[i + 2].kind == "id" and (i == 0 or toks[i - 1].text in (";", "{", "}")):
                    i = self._chain(toks, i + 1, self.vars[t.text])
                    continue
            except SurfaceError as e:
                raise SurfaceError(f"{where}: {e} (near `{text_of(toks[i:i + 12])}`)") from None
            i += 1

    def _declaration(self, toks: list[Tok], i: int) -> int:
        kind = toks[i + 2].text
        tend = _template_end(toks, i + 3)
        targs = split_args(toks[i + 4:tend])
        j = tend + 1
        var = None
        if toks[j].kind == "id":  # py::class_<X> var{m, "X", ...};
            var = toks[j].text
            j += 1
        if toks[j].text not in ("(", "{"):
            return j
        close = match_close(toks, j)
        cargs = split_args(toks[j + 1:close])
        if len(cargs) < 2 or len(cargs[1]) != 1 or cargs[1][0].kind != "str":
            return close + 1
        if i >= 3 and toks[i - 1].text == "=" and toks[i - 2].kind == "id":  # auto var = py::class_<...>(...)
            var = toks[i - 2].text
        scope = self._scope(cargs[0])
        qualified = f"{scope}.{cargs[1][0].text}" if scope else cargs[1][0].text
        cpp = _cpp_name(targs[0])
        extras = [a for a in cargs[2:] if a]
        if kind == "class_":
            info = self.classes.get(qualified)
            if info is None:
                bases, trampoline = [], None
                for a in targs[1:]:
                    name = _cpp_name(a)
                    if name in self.cpp_to_py and name != cpp:
                        bases.append(name)
                    elif _strip_template(a) not in _HOLDERS and not text_of(a).startswith("std::"):
                        trampoline = _strip_template(a)
                info = self.classes[qualified] = ClassInfo(qualified, cpp, bases, trampoline)
            info.buffer = info.buffer or any(text_of(a) == "py::buffer_protocol()" for a in extras)
            target: Any = info
        else:
            arithmetic = any(text_of(a) in ("py::arithmetic()", "py::arithmetic{}") for a in extras)
            target = self.enums.setdefault(qualified, EnumInfo(qualified, cpp, arithmetic))
        if var:
            self.vars[var] = qualified
        return self._chain(toks, close + 1, qualified, target)

    def _bind_vector(self, toks: list[Tok], i: int) -> int:
        tend = _template_end(toks, i + 3)
        close = match_close(toks, tend + 1)
        cargs = split_args(toks[tend + 2:close])
        name = cargs[1][0].text
        methods = {m: [{"params": None, "arity": None}] for m in
                   ("__len__", "__getitem__", "__setitem__", "__delitem__", "__iter__", "__contains__", "append",
                    "extend", "insert", "pop", "clear", "count", "remove")}
        self.classes[name] = ClassInfo(name, name, [], None, init=[{"params": [], "arity": 0}], methods=methods)
        return close + 1

    def _scope(self, arg: list[Tok]) -> str:
        if len(arg) == 1 and arg[0].kind == "id" and arg[0].text in self.vars:
            return self.vars[arg[0].text]
        raise SurfaceError(f"binding scope {text_of(arg)!r} is neither the module nor a known class")

    def _chain(self, toks: list[Tok], j: int, owner: str, target: Any = None) -> int:
        """Read `.def(...)` / `.value(...)` / ... calls chained on a class or enum until the statement ends."""
        if target is None:
            target = self.classes.get(owner) or self.enums.get(owner)
        while j + 2 < len(toks) and toks[j].text == "." and toks[j + 1].kind == "id" and toks[j + 2].text == "(":
            call = toks[j + 1].text
            close = match_close(toks, j + 2)
            args = split_args(toks[j + 3:close])
            if owner == "" and call == "def":
                self._def(self.functions, args, method=False)
            elif owner == "" and call == "attr":
                if close + 1 < len(toks) and toks[close + 1].text == "=":
                    end = close + 2
                    while toks[end].text != ";":
                        end += 1
                    self.attributes[args[0][0].text] = toks[close + 2:end]
                    close = end - 1
            elif isinstance(target, EnumInfo):
                self._enum_call(target, call, args)
            elif isinstance(target, ClassInfo):
                self._class_call(target, call, args)
            j = close + 1
        return j

    def _enum_call(self, e: EnumInfo, call: str, args: list[list[Tok]]) -> None:
        if call == "value":
            member = args[0][0].text
            e.members.append(member)
            e.cpp_members[text_of(args[1]).split("::")[-1]] = member
        elif call == "export_values":
            e.export_values = True
        elif call == "def":
            self._def(e.methods, args, method=True)

    def _class_call(self, c: ClassInfo, call: str, args: list[list[Tok]]) -> None:
        if call == "def":
            if args and args[0] and args[0][0].text == "py" and len(args[0]) > 2 \
                    and args[0][2].text in ("init", "init_alias"):
                c.init.append(self._overload(args[1:], self._init_arity(args[0]), deprecation_of(args[0]),
                                             self.kinds(self._init_types(args[0]))))
            else:
                self._def(c.methods, args, method=True)
        elif call == "def_static":
            self._def(c.static_methods, args, method=False)
        elif call in ("def_property", "def_property_readonly", "def_readwrite", "def_readonly",
                      "def_property_static", "def_property_readonly_static", "def_readonly_static",
                      "def_readwrite_static"):
            name = args[0][0].text
            getter = args[1] if len(args) > 1 else []
            setter = args[2] if call in ("def_property", "def_property_static") and len(args) > 2 else None
            readable = text_of(getter) != "nullptr"
            writable = call in ("def_readwrite", "def_readwrite_static") or (
                setter is not None and text_of(setter) != "nullptr")
            prop: dict[str, Any] = {"get": readable, "set": writable}
            for key, fn in (("deprecated_get", getter), ("deprecated_set", setter)):
                dep = deprecation_of(fn) if fn else None
                if dep is not None:
                    prop[key] = dep
            (c.static_properties if "static" in call else c.properties)[name] = prop
        elif call == "def_buffer":
            c.buffer = True

    def _init_types(self, init: list[Tok]) -> tuple[str, ...] | None:
        if len(init) > 3 and init[3].text == "<":
            inner = init[4:_template_end(init, 3)]
            return tuple(text_of(a) for a in split_args(inner)) if inner else ()
        if len(init) > 3 and init[3].text == "(":
            inner = split_args(init[4:match_close(init, 3)])
            return self.callables.types_of(inner[0], method=False) if inner else None
        return None

    def _init_arity(self, init: list[Tok]) -> int | None:
        # py::init<A, B>()  or  py::init(lambda / lambdas::f)
        if len(init) > 3 and init[3].text == "<":
            end = _template_end(init, 3)
            inner = init[4:end]
            return len(split_args(inner)) if inner else 0
        if len(init) > 3 and init[3].text == "(":
            close = match_close(init, 3)
            inner = split_args(init[4:close])
            return self.callables.arity_of(inner[0], method=False) if inner else None
        return None

    def _def(self, table: dict[str, list[dict]], args: list[list[Tok]], method: bool) -> None:
        if not args or len(args[0]) != 1 or args[0][0].kind != "str":
            raise SurfaceError(f"def without a name: {text_of(args[0]) if args else ''}")
        name = args[0][0].text
        fn = args[1] if len(args) > 1 else []
        table.setdefault(name, []).append(
            self._overload(args[2:], self.callables.arity_of(fn, method), deprecation_of(fn),
                           self.kinds(self.callables.types_of(fn, method))))

    @staticmethod
    def _overload(extra: list[list[Tok]], arity: int | None, deprecated: str | None,
                  kinds: list[str | None] | None = None) -> dict:
        params = []
        for a in extra:
            if not a:
                continue
            if a[0].kind == "arg":
                params.append({"name": a[0].text, "default": len(a) > 1 and a[1].text == "="})
            elif len(a) >= 6 and a[0].text == "py" and a[2].text in ("arg", "arg_v") and a[4].kind == "str":
                close = match_close(a, 3)
                params.append({"name": a[4].text, "default": a[2].text == "arg_v" or (
                    close + 1 < len(a) and a[close + 1].text == "=")})
            elif text_of(a) in ("py::kw_only()", "py::pos_only()"):
                raise SurfaceError(f"{text_of(a)} is not supported by this reader")
        out: dict[str, Any] = {"params": params, "arity": len(params)} if params else {"params": None,
                                                                                       "arity": arity}
        if kinds is not None and len(kinds) == (len(params) if params else arity):
            out["types"] = kinds  # what pybind11 accepts per parameter (python_kind); null: not checked
        if deprecated is not None:
            out["deprecated"] = deprecated
        return out

    def _trampolines(self, toks: list[Tok]) -> None:
        """Methods TensorRT calls on Python subclasses: PYBIND11_OVERLOAD*_NAME / utils::getOverride in each
        trampoline class, with its base trampolines."""
        for i in range(len(toks) - 2):
            if toks[i].text not in ("class", "struct") or toks[i + 1].kind != "id":
                continue
            name = toks[i + 1].text
            j = i + 2
            bases = []
            while j < len(toks) and toks[j].text not in ("{", ";"):
                if toks[j].kind == "id" and toks[j].text not in ("public", "private", "protected", "final",
                                                                 "virtual") and toks[j - 1].text != "::" \
                        and toks[j - 1].text not in ("<",):
                    bases.append(toks[j].text)
                j += 1
            if j >= len(toks) or toks[j].text != "{":
                continue
            end = match_close(toks, j)
            overrides: dict[str, dict] = {}
            for k in range(j, end):
                t = toks[k]
                if t.kind == "id" and t.text.startswith(("PYBIND11_OVERLOAD", "PYBIND11_OVERRIDE")) \
                        and t.text.endswith("_NAME") and toks[k + 1].text == "(":
                    margs = split_args(toks[k + 2:match_close(toks, k + 1)])
                    overrides[margs[2][0].text] = {"pure": "PURE" in t.text, "args": len(margs) - 4}
                elif t.text == "getOverride" and toks[k + 1].text == "(":
                    margs = split_args(toks[k + 2:match_close(toks, k + 1)])
                    strs = [x for x in margs[1] if x.kind == "str"] if len(margs) > 1 else []
                    if strs:
                        overrides.setdefault(strs[0].text, {"pure": True, "args": None})
            if overrides or name.startswith(("py", "Py")):
                self.trampolines.setdefault(name, {}).update(overrides)
                self.trampoline_bases[name] = bases[1:] if bases and bases[0] == name else bases

    def overridable(self, trampoline: str | None, seen: frozenset = frozenset()) -> dict[str, dict]:
        if trampoline is None or trampoline in seen:
            return {}
        out: dict[str, dict] = {}
        for base in self.trampoline_bases.get(trampoline, []):
            out.update(self.overridable(base, seen | {trampoline}))
        out.update(self.trampolines.get(trampoline, {}))
        return out


def _cpp_name(arg: list[Tok]) -> str:
    """`nvinfer1::ILogger::Severity` → `ILogger::Severity`; `IInt8Calibrator` stays."""
    parts = [t.text for t in arg if t.kind == "id" and t.text not in ("nvinfer1", "nvonnxparser", "const")]
    return "::".join(parts)


# ------------------------------------------------------------------------------------------ package __init__

def read_package_init(text: str) -> dict[str, Any]:
    """Functions, class attributes and nptype's mapping that the package's __init__.py adds to the bindings."""
    text = re.sub(r"##(\w+)##", lambda m: "tensorrt" if m.group(1) == "TENSORRT_MODULE" else m.group(1), text)
    tree = ast.parse(text)
    functions: dict[str, list[dict]] = {}
    class_attrs: dict[str, set[str]] = {}
    copied_members: dict[str, str] = {}
    nptype: dict[str, str] = {}

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if _static_truth(node.test) is True:
                    visit(node.body)
                elif _static_truth(node.test) is False:
                    visit(node.orelse)
            elif isinstance(node, ast.FunctionDef):
                a = node.args
                positional = [*a.posonlyargs, *a.args]
                defaults = len(a.defaults)
                params = [{"name": p.arg, "default": k >= len(positional) - defaults} for k, p in
                          enumerate(positional)]
                functions[node.name] = [{"params": params, "arity": len(params)}]
                if node.name == "nptype":
                    nptype.update(_nptype_mapping(node))
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                        class_attrs.setdefault(target.value.id, set()).add(target.attr)
            elif isinstance(node, ast.For) and isinstance(node.iter, ast.Call):
                src = ast.unparse(node.iter.func)
                m = re.fullmatch(r"([\w.]+)\.__members__\.items", src)
                for inner in node.body:
                    if m and isinstance(inner, ast.Expr) and isinstance(inner.value, ast.Call) \
                            and ast.unparse(inner.value.func) == "setattr":
                        copied_members[ast.unparse(inner.value.args[0])] = m.group(1)

    visit(tree.body)
    return {"functions": functions, "class_attributes": {k: sorted(v) for k, v in class_attrs.items()},
            "copied_members": copied_members, "nptype": nptype}


def _static_truth(test: ast.expr) -> bool | None:
    if all(isinstance(n, (ast.Compare, ast.BoolOp, ast.Constant, ast.cmpop, ast.boolop, ast.Expression))
           for n in ast.walk(test)):
        return bool(eval(compile(ast.Expression(test), "<if>", "eval"), {"__builtins__": {}}))
    return None


def _nptype_mapping(fn: ast.FunctionDef) -> dict[str, str]:
    for node in ast.walk(fn):
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Name) and isinstance(v, ast.Attribute):
                    out[k.id] = v.attr.rstrip("_")
            return out
    return {}


# ---------------------------------------------------------------------------------------------------- trtexec

def read_trtexec(text: str) -> dict[str, Any]:
    """trtexec's flags: every `"--flag"` that AllOptions::parse (and what it calls) and parseHelp read, and for flags
    read into a string, the literal values the parser compares that string against."""
    text = strip_comments(text)
    bodies: dict[str, str] = {}
    # every function that reads the command line: X::parse(Arguments&), parseHelp, and helpers such as 11.1's
    # getRefPairs(Arguments&, ...) that the parse functions call
    for m in re.finditer(r"^\w[\w:<>,\s&*]*?\b(\w+::parse|\w+)\s*\(\s*Arguments\s*&\s*\w+\s*[,)][^{;]*\{", text,
                         re.MULTILINE):
        start = m.end() - 1
        depth = 0
        for k in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                bodies[m.group(1)] = text[start:k + 1]
                break
    if "AllOptions::parse" not in bodies:
        raise SurfaceError("trtexec options: AllOptions::parse not found")
    todo, done = ["AllOptions::parse", "parseHelp"], set()
    while todo:
        name = todo.pop()
        if name in done or name not in bodies:
            continue
        done.add(name)
        for member in re.findall(r"\b(\w+)\.parse\(\s*arguments\s*\)", bodies[name]):
            # a member `build` is a BuildOptions; 8.x's `uffInputs` is a UffInput
            stem = member[0].upper() + member[1:]
            candidates = [f"{stem}Options::parse", f"{stem}::parse", f"{stem.removesuffix('s')}::parse"]
            found = next((c for c in candidates if c in bodies), None)
            if found is None:
                raise SurfaceError(f"trtexec options: {member}.parse() has none of {', '.join(candidates)}")
            todo.append(found)
        for helper in re.findall(r"\b(\w+)\s*\(\s*arguments\s*[,)]", bodies[name]):
            if helper in bodies and "::" not in helper:
                todo.append(helper)
    flags: set[str] = set()
    values: dict[str, list[str]] = {}
    for name in sorted(done):
        body = bodies[name]
        flags.update(re.findall(r'"(--[A-Za-z][\w]*)"', body))
        for m in re.finditer(r'getAndDelOption\(\s*\w+\s*,\s*"(--[A-Za-z]\w*)"\s*,\s*(\w+)\s*\)', body):
            var = m.group(2)
            compared = re.findall(rf'(?:\b{var}\b|toLower\(\s*{var}\s*\))\s*==\s*"([^"]*)"', body)
            if compared:
                values[m.group(1)] = sorted(set(compared))
    return {"flags": sorted(flags), "values": dict(sorted(values.items()))}


# ------------------------------------------------------------------------------------------------------ build

def tensorrt_version(src: Source) -> str:
    text = src.read(VERSION_HEADER)
    if text is None:
        raise SurfaceError(f"{VERSION_HEADER} not found: is this a TensorRT checkout?")
    parts = []
    for key in ("MAJOR", "MINOR", "PATCH", "BUILD"):
        m = re.search(rf"#define\s+(?:NV_TENSORRT_{key}|TRT_{key}_ENTERPRISE)\s+(\d+)", text)
        if m is None:
            raise SurfaceError(f"{VERSION_HEADER}: no {key} version")
        parts.append(m.group(1))
    return ".".join(parts)


def build_surface(src: Source) -> dict[str, Any]:
    version = tensorrt_version(src)
    files = [f for f in src.files(BINDINGS) if f.endswith(".cpp")]
    if not files:
        raise SurfaceError(f"no binding sources under {BINDINGS}")
    callables = Callables()
    streams = {}
    for f in files:
        streams[f] = tokenize(preprocess(strip_comments(src.read(f) or ""), f))
        callables.add_bindings(streams[f])
    headers = [h for prefix in HEADERS for h in src.files(prefix) if h.endswith(".h")]
    for h in headers:
        callables.add_header(tokenize(preprocess(strip_comments(src.read(h) or ""), h, strict=False)))
    reader = BindingReader(callables)
    for f in files:
        reader.learn_types(streams[f])
    for f in files:
        reader.read(streams[f], f)

    init_path = PACKAGE_INIT if src.read(PACKAGE_INIT) is not None else PACKAGE_INIT_8_5
    init_text = src.read(init_path)
    package = read_package_init(init_text) if init_text else {"functions": {}, "class_attributes": {},
                                                              "copied_members": {}, "nptype": {}}
    classes = {}
    for name, c in sorted(reader.classes.items()):
        entry: dict[str, Any] = {
            "bases": [reader.cpp_to_py[b] for b in c.bases_cpp],
            "init": c.init,
            "methods": dict(sorted(c.methods.items())),
            "properties": dict(sorted(c.properties.items())),
        }
        for key, value in (("static_methods", c.static_methods), ("static_properties", c.static_properties)):
            if value:
                entry[key] = dict(sorted(value.items()))
        if c.buffer:
            entry["buffer"] = True
        overridable = reader.overridable(c.trampoline)
        if overridable:
            entry["overridable"] = dict(sorted(overridable.items()))
        extra = package["class_attributes"].get(name)
        if extra:
            entry["python_attributes"] = extra
        if name in package["copied_members"]:
            entry["enum_members_of"] = package["copied_members"][name]
        classes[name] = entry
    enums = {}
    for name, e in sorted(reader.enums.items()):
        entry = {"members": e.members, "arithmetic": e.arithmetic}
        if e.export_values:
            entry["export_values"] = True
        if e.methods:
            entry["methods"] = dict(sorted(e.methods.items()))
        extra = package["class_attributes"].get(name)
        if extra:
            entry["python_attributes"] = extra
        enums[name] = entry
    attributes = {}
    for name, toks in sorted(reader.attributes.items()):
        ids = [t.text for t in toks if t.kind == "id"]
        enum = next((e for e in reader.enums.values() if ids and "::".join(ids[:-1]).endswith(e.cpp)
                     and ids[-1] in e.cpp_members), None)
        attributes[name] = {"enum": enum.name, "member": enum.cpp_members[ids[-1]]} if enum else {
            "value": text_of(toks)}
    nptype = {}
    for trt_name, np_name in package["nptype"].items():
        attr = attributes.get(trt_name)
        if attr is None or "enum" not in attr:
            raise SurfaceError(f"nptype maps {trt_name!r}, which is not an enum attribute of the module")
        nptype[attr["member"]] = np_name
    functions = dict(sorted({**reader.functions, **package["functions"]}.items()))
    trtexec_text = src.read(TRTEXEC_OPTIONS)
    major, minor = (int(x) for x in version.split(".")[:2])
    return {
        "schema": SCHEMA,
        "tensorrt": {"version": version, "major": major, "minor": minor},
        "source": {"repository": "https://github.com/NVIDIA/TensorRT", "ref": src.ref, "commit": src.commit(),
                   "bindings": files, "package_init": init_path if init_text else None,
                   "headers": headers, "trtexec_options": TRTEXEC_OPTIONS if trtexec_text else None},
        "python": {"classes": classes, "enums": enums, "functions": functions, "attributes": attributes,
                   "nptype": dict(sorted(nptype.items()))},
        "trtexec": read_trtexec(trtexec_text) if trtexec_text else None,
    }


def dump(surface: dict[str, Any]) -> str:
    """Diff-friendly JSON: nested objects one key per line, each member's facts on one line."""
    def compact(obj: Any) -> str:
        return json.dumps(obj, separators=(", ", ": "))

    def write(obj: Any, indent: int) -> str:
        flat = compact(obj)
        if len(flat) <= 116 or not isinstance(obj, (dict, list)) or indent >= 8:
            return flat
        pad = " " * (indent + 1)
        if isinstance(obj, dict):
            items = [f"{pad}{json.dumps(k)}: {write(v, indent + 1)}" for k, v in obj.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
        if all(isinstance(x, str) for x in obj):  # long lists of names: several per line
            lines, line = [], []
            for x in obj:
                if line and len(", ".join(line + [json.dumps(x)])) > 110:
                    lines.append(", ".join(line))
                    line = []
                line.append(json.dumps(x))
            lines.append(", ".join(line))
            return "[\n" + ",\n".join(pad + x for x in lines) + "\n" + " " * indent + "]"
        return "[\n" + ",\n".join(pad + write(x, indent + 1) for x in obj) + "\n" + " " * indent + "]"

    return write(surface, 0) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="a TensorRT clone, bare mirror or checkout")
    parser.add_argument("--ref", default=None, help="branch/tag/commit to read (default: the work tree)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "tests" / "backends" / "tensorrt" / "trt_surfaces")
    args = parser.parse_args(argv)
    try:
        surface = build_surface(Source(args.repo, args.ref))
    except SurfaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    t = surface["tensorrt"]
    path = args.out / f"{t['major']}.{t['minor']}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(surface), encoding="utf-8")
    py = surface["python"]
    members = sum(len(c["methods"]) + len(c["properties"]) for c in py["classes"].values())
    print(f"TensorRT {t['version']} ({args.ref or 'work tree'}): {len(py['classes'])} classes, {members} methods and "
          f"properties, {len(py['enums'])} enums, {len(py['functions'])} functions, "
          f"{len((surface['trtexec'] or {}).get('flags', []))} trtexec flags → {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
