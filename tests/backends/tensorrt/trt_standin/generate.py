"""Build a strict `tensorrt` module from a committed API surface (tests/backends/tensorrt/trt_surfaces/<version>.json).

What the surface holds decides what exists: a class, method, property, enum member or module attribute that the
release does not have raises AttributeError, exactly where the real module would. Every call is checked against the
recorded overloads the way pybind11 checks it: positional and keyword arguments by recorded name, defaults only where
the binding has one, no keywords for an overload bound without argument names, the recorded arity when it is known.
A deprecated member warns (DeprecationWarning, "Use ... instead.") as TensorRT's bindings do. Properties are
read-only, write-only or both as bound; instances take no attributes the binding does not define; a Python subclass
must call its base __init__, as pybind11 requires.

What a call *does* comes from behaviors.py; a member that exists but has no modelled behaviour raises NotModelled,
so the stand-in never answers with something made up. Enum values are the members' positions in the binding (the
surface records names, not C++ values): compare members, not numbers.
"""

from __future__ import annotations

import json
import types
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

SURFACE_DIR = Path(__file__).resolve().parents[1] / "trt_surfaces"


class NotModelled(NotImplementedError):
    """The member exists in this TensorRT release, but the stand-in does not model what it does."""


def surface_versions() -> list[str]:
    """The committed surfaces, oldest first ("10.3", "10.16", "11.1", ...)."""
    names = [p.stem for p in SURFACE_DIR.glob("*.json")]
    return sorted(names, key=lambda v: tuple(int(x) for x in v.split(".")))


@lru_cache(maxsize=None)
def load_surface(version: str) -> dict[str, Any]:
    return json.loads((SURFACE_DIR / f"{version}.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------- argument checks

def _signature(name: str, overload: dict) -> str:
    if overload["params"] is None:
        n = overload.get("arity")
        return f"{name}({'arg0, ...' if n is None else ', '.join(f'arg{i}' for i in range(n))})"
    return f"{name}(" + ", ".join(p["name"] + ("=..." if p["default"] else "") for p in overload["params"]) + ")"


def _accepts(overload: dict, args: tuple, kwargs: dict, types: dict[str, type] | None = None) -> bool:
    params = overload["params"]
    if params is None:
        arity = overload.get("arity")
        return not kwargs and (arity is None or len(args) == arity) and _types_fit(overload, args, {}, types)
    if len(args) > len(params):
        return False
    names = [p["name"] for p in params]
    given = set(names[:len(args)])
    for key in kwargs:
        if key not in names or key in given:
            return False
        given.add(key)
    return all(p["default"] or p["name"] in given for p in params) and _types_fit(overload, args, kwargs, types)


def _fits(kind: str | None, value: Any, types: dict[str, type]) -> bool:
    """pybind11's argument conversion for a parameter whose C++ type the surface records (tools/trt_surface.py's
    python_kind): integers take any object with __index__ or __int__ (as cuda-python's handles have), enums only
    their own members, class references an instance (pointers also None)."""
    if kind is None:
        return True
    if kind == "int":
        return not isinstance(value, (float, str, bytes)) and value is not None and (
            hasattr(type(value), "__index__") or hasattr(type(value), "__int__"))
    if kind == "float":
        return not isinstance(value, (str, bytes)) and value is not None and (
            hasattr(type(value), "__float__") or hasattr(type(value), "__index__"))
    if kind == "str":
        return isinstance(value, (str, bytes))
    what, _, name = kind.partition(" ")
    cls = types.get(name)
    if cls is None:  # a type this stand-in has no class for: nothing to check against
        return True
    if what == "ptr" and value is None:
        return True
    return isinstance(value, cls)


def _types_fit(overload: dict, args: tuple, kwargs: dict, types: dict[str, type] | None) -> bool:
    kinds = overload.get("types")
    if kinds is None or types is None:
        return True
    names = [p["name"] for p in overload["params"] or []]
    values = list(zip(kinds, args)) + [(kinds[names.index(k)], v) for k, v in kwargs.items() if k in names]
    return all(_fits(kind, value, types) for kind, value in values)


def _convert(overload: dict, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """What the C++ side receives: a Python int for every integer parameter (pybind11 calls __index__/__int__)."""
    kinds = overload.get("types")
    if kinds is None:
        return args, kwargs
    names = [p["name"] for p in overload["params"] or []]
    as_int = lambda v: v if isinstance(v, int) else (v.__index__() if hasattr(v, "__index__") else int(v))  # noqa: E731
    args = tuple(as_int(a) if k == "int" else a for k, a in zip(kinds, args)) + args[len(kinds):]
    kwargs = {key: as_int(v) if key in names and kinds[names.index(key)] == "int" else v for key, v in kwargs.items()}
    return args, kwargs


def resolve(qualname: str, overloads: list[dict], args: tuple, kwargs: dict,
            types: dict[str, type] | None = None) -> dict:
    """The first overload that accepts the call (pybind11's order), or pybind11's TypeError."""
    for overload in overloads:
        if _accepts(overload, args, kwargs, types):
            return overload
    supported = "\n".join(f"    {i}. {_signature(qualname, o)}" for i, o in enumerate(overloads, 1))
    got = ", ".join([*(type(a).__name__ for a in args), *(f"{k}={type(v).__name__}" for k, v in kwargs.items())])
    raise TypeError(f"{qualname}(): incompatible function arguments. The following argument types are supported:\n"
                    f"{supported}\n\nInvoked with: {got}")


def _warn_deprecated(message: str | None) -> None:
    if message is not None:
        warnings.warn(f"Use {message} instead.", DeprecationWarning, stacklevel=3)


# ------------------------------------------------------------------------------------------------- classes

class StandInMeta(type):
    """pybind11's rule for Python subclasses: the bound base's __init__ must run."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__call__(*args, **kwargs)
        if not getattr(obj, "_ready", False):
            bound = next(c for c in cls.__mro__ if c.__dict__.get("_standin_bound"))
            raise TypeError(f"{bound.__name__}.__init__() must be called when overriding __init__")
        return obj


class StandInObject(metaclass=StandInMeta):
    """Root of the generated classes: no instance dict, state in one slot, like a pybind11 object."""

    __slots__ = ("_state", "_ready", "__weakref__")

    @classmethod
    def _make(cls, **state: Any) -> Any:
        """An instance TensorRT hands out (classes without a Python constructor are made this way)."""
        obj = object.__new__(cls)
        obj._state = dict(state)
        obj._ready = True
        return obj


class _Unmodelled:
    """A class attribute that exists in the release (e.g. set by the package's __init__.py) but is not modelled."""

    def __init__(self, owner: str, name: str):
        self.where = f"{owner}.{name}"

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        raise NotModelled(self.where)


class EnumMeta(type):
    def __iter__(cls):
        return iter(cls.__members__.values())

    def __len__(cls) -> int:
        return len(cls.__members__)


def make_enum(qualname: str, spec: dict, behaviours: dict[str, Callable], classes: dict[str, type]) -> type:
    short = qualname.split(".")[-1]
    arithmetic = spec["arithmetic"]

    def __init__(self, value: int) -> None:  # noqa: N807 - pybind11 enums take their value
        member = next((m for m in type(self).__members__.values() if m._value == int(value)), None)
        self._name = member._name if member else "???"
        self._value = int(value)

    def __eq__(self, other: Any) -> bool:  # noqa: N807
        if type(other) is type(self):
            return self._value == other._value
        if arithmetic and isinstance(other, int):
            return self._value == other
        return False

    ns: dict[str, Any] = {
        "__slots__": ("_name", "_value"),
        "__module__": "tensorrt",
        "__qualname__": qualname,
        "_standin_bound": True,
        "__init__": __init__,
        "__eq__": __eq__,
        "__ne__": lambda self, other: not __eq__(self, other),
        "__hash__": lambda self: hash(self._value),
        "__int__": lambda self: self._value,
        "__index__": lambda self: self._value,
        "__repr__": lambda self: f"<{short}.{self._name}: {self._value}>",
        "__str__": lambda self: f"{short}.{self._name}",
        "name": property(lambda self: self._name),
        "value": property(lambda self: self._value),
    }
    if arithmetic:
        for op in ("__lt__", "__le__", "__gt__", "__ge__", "__and__", "__or__", "__xor__",
                   "__rand__", "__ror__", "__rxor__"):
            ns[op] = (lambda name: lambda self, other: getattr(int(self), name)(int(other)))(op)
    for name, overloads in spec.get("methods", {}).items():
        ns[name] = _method(f"{qualname}.{name}", overloads, behaviours.get(f"{qualname}.{name}"), classes)
    for name in spec.get("python_attributes", []):
        ns[name] = behaviours.get(f"{qualname}.{name}") or _Unmodelled(qualname, name)
    cls = EnumMeta(short, (), ns)
    members = {}
    for value, member in enumerate(spec["members"]):
        obj = object.__new__(cls)
        obj._name, obj._value = member, value
        members[member] = obj
        type.__setattr__(cls, member, obj)
    type.__setattr__(cls, "__members__", types.MappingProxyType(members))
    return cls


def _method(qualname: str, overloads: list[dict], impl: Callable | None, types: dict[str, type]) -> Callable:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        overload = resolve(qualname, overloads, args, kwargs, types)
        _warn_deprecated(overload.get("deprecated"))
        if impl is None:
            raise NotModelled(qualname)
        args, kwargs = _convert(overload, args, kwargs)
        return impl(self, *args, **kwargs)

    method.__name__ = qualname.split(".")[-1]
    method.__qualname__ = qualname
    return method


def _static(qualname: str, overloads: list[dict], impl: Callable | None, types: dict[str, type]) -> staticmethod:
    def function(*args: Any, **kwargs: Any) -> Any:
        overload = resolve(qualname, overloads, args, kwargs, types)
        _warn_deprecated(overload.get("deprecated"))
        if impl is None:
            raise NotModelled(qualname)
        args, kwargs = _convert(overload, args, kwargs)
        return impl(*args, **kwargs)

    function.__name__ = qualname.split(".")[-1]
    return staticmethod(function)


def _property(qualname: str, spec: dict, getter: Callable | None, setter: Callable | None,
              stored: bool) -> property:
    name = qualname.split(".")[-1]

    def fget(self: Any) -> Any:
        if not spec["get"]:
            raise AttributeError(f"unreadable attribute {name!r}")
        _warn_deprecated(spec.get("deprecated_get"))
        if getter is not None:
            return getter(self)
        if stored and name in self._state.setdefault("props", {}):
            return self._state["props"][name]
        raise NotModelled(f"{qualname} (get)")

    def fset(self: Any, value: Any) -> None:
        if not spec["set"]:
            raise AttributeError(f"can't set attribute {name!r}")
        _warn_deprecated(spec.get("deprecated_set"))
        if setter is not None:
            setter(self, value)
        elif stored:
            self._state.setdefault("props", {})[name] = value
        else:
            raise NotModelled(f"{qualname} (set)")

    return property(fget, fset)


def make_class(qualname: str, spec: dict, bases: tuple[type, ...], behaviours: dict[str, Callable],
               stored: set[str], classes: dict[str, type]) -> type:
    short = qualname.split(".")[-1]
    init_overloads = spec["init"]
    init_impl = behaviours.get(f"{qualname}.__init__")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        if not init_overloads:
            raise TypeError(f"tensorrt.{short}: No constructor defined!")
        overload = resolve(f"{short}.__init__", init_overloads, args, kwargs, classes)
        _warn_deprecated(overload.get("deprecated"))
        args, kwargs = _convert(overload, args, kwargs)
        self._state = {}
        if init_impl is not None:
            init_impl(self, *args, **kwargs)
        elif args or kwargs:
            raise NotModelled(f"{qualname}.__init__ with arguments")
        self._ready = True

    ns: dict[str, Any] = {"__slots__": (), "__module__": "tensorrt", "__qualname__": qualname,
                          "_standin_bound": True, "__init__": __init__}
    for name, overloads in spec["methods"].items():
        if name == "__del__":  # finalisation is not modelled (the bindings' __del__ only warns)
            continue
        ns[name] = _method(f"{qualname}.{name}", overloads, behaviours.get(f"{qualname}.{name}"), classes)
    for name, overloads in spec.get("static_methods", {}).items():
        ns[name] = _static(f"{qualname}.{name}", overloads, behaviours.get(f"{qualname}.{name}"), classes)
    for name, prop in spec["properties"].items():
        key = f"{qualname}.{name}"
        ns[name] = _property(key, prop, behaviours.get(f"{key}:get"), behaviours.get(f"{key}:set"), key in stored)
    for name in spec.get("static_properties", {}):
        ns[name] = behaviours.get(f"{qualname}.{name}", _Unmodelled(qualname, name))
    for name in spec.get("python_attributes", []):
        ns[name] = behaviours.get(f"{qualname}.{name}", _Unmodelled(qualname, name))
    if spec.get("buffer"):
        return _buffer_class(short, ns)
    return StandInMeta(short, bases or (StandInObject,), ns)


def _buffer_class(short: str, ns: dict[str, Any]) -> type:
    """A class with the buffer protocol (memoryview(obj) works, as on IHostMemory): a bytes subclass whose own
    methods (decode, hex, ...) stay hidden, since the binding has none of them."""
    allowed = {name for name in ns if not name.startswith("__")} | {"_state", "_ready"}

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807
        if not (name in allowed or (name.startswith("__") and name.endswith("__"))):
            raise AttributeError(f"'{short}' object has no attribute '{name}'")
        return object.__getattribute__(self, name)

    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        if name not in ("_state", "_ready"):
            raise AttributeError(f"'{short}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)

    def _make(cls: type, data: bytes = b"", **state: Any) -> Any:
        obj = bytes.__new__(cls, data)
        obj._state, obj._ready = dict(state), True
        return obj

    ns = {k: v for k, v in ns.items() if k != "__slots__"}
    ns.update(__getattribute__=__getattribute__, __setattr__=__setattr__, _make=classmethod(_make))
    return StandInMeta(short, (bytes,), ns)


# -------------------------------------------------------------------------------------------------- module

def build_module(surface: dict[str, Any], behaviours: dict[str, Callable], stored: set[str],
                 functions: dict[str, Callable]) -> types.ModuleType:
    """The `tensorrt` module of one release: classes (bases first), enums (nested where bound), functions and
    attributes exactly as the surface records them."""
    py = surface["python"]
    module = types.ModuleType("tensorrt", f"conformance stand-in for TensorRT {surface['tensorrt']['version']}")
    module.__version__ = surface["tensorrt"]["version"]
    made: dict[str, type] = {}
    classes: dict[str, type] = {}  # Python qualname → class or enum, for the recorded parameter types

    def make(name: str) -> type:
        if name not in made:
            spec = py["classes"][name]
            bases = tuple(make(b) for b in spec["bases"])
            made[name] = make_class(name, spec, bases, behaviours, stored, classes)
        return made[name]

    for name in py["classes"]:
        make(name)
    enums = {name: make_enum(name, spec, behaviours, classes) for name, spec in py["enums"].items()}
    classes.update(made)
    classes.update(enums)
    for name, cls in {**made, **enums}.items():
        owner, _, short = name.rpartition(".")
        if owner:
            type.__setattr__(made[owner], short, cls)
        else:
            setattr(module, short, cls)
    for name, spec in py["enums"].items():
        owner = name.rpartition(".")[0]
        if spec.get("export_values"):
            target = made[owner] if owner else module
            for member, value in enums[name].__members__.items():
                (type.__setattr__ if owner else setattr)(target, member, value)
    for name, spec in py["classes"].items():
        if "enum_members_of" in spec:
            for member, value in enums[spec["enum_members_of"]].__members__.items():
                type.__setattr__(made[name], member, value)
    for name, attr in py["attributes"].items():
        if "enum" in attr:
            setattr(module, name, enums[attr["enum"]].__members__[attr["member"]])
    for name, overloads in py["functions"].items():
        setattr(module, name, _static(name, overloads, functions.get(name), classes).__func__)
    return module


__all__ = ["NotModelled", "StandInObject", "build_module", "load_surface", "resolve", "surface_versions"]
