"""``record``: a frozen dataclass whose ``__init__`` costs what a plain one does.

A report is built from hundreds of small immutable values per call (a row, its activation and
gradient statistics, its init advice, each parameter, each finding). ``@dataclass(frozen=True)``
assigns every field through ``object.__setattr__`` (the class's own ``__setattr__`` raises), which
made a 13-field row cost 2.1 us to build against 0.4 us for a mutable one on this VM: about 1 ms of
every ``tiny60`` call. ``record`` keeps everything ``frozen=True`` gives (``FrozenInstanceError`` on
assignment, ``__eq__``, ``__hash__``, ``__repr__``, ``fields``, ``replace``, ``asdict``, pickling) and
swaps in an ``__init__`` that writes the instance ``__dict__`` directly, as attrs does for its frozen
classes. It supports what these classes use: positional-or-keyword fields, defaults and
``default_factory``; a class with ``__post_init__``, ``InitVar``, keyword-only fields or slots keeps
dataclasses' own ``__init__`` (checked, not assumed).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")

_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
_FACTORY = object()
"""The default of a ``default_factory`` argument in the generated ``__init__``: "not given"."""


def record(cls: type[T]) -> type[T]:
    """``@dataclass(frozen=True)``, built faster (see the module docstring)."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = list(dataclasses.fields(cls))
    # dataclasses' own __init__ must take exactly these fields, positional-or-keyword, in order (no
    # InitVar, no keyword-only or init=False field), and do nothing else (no __post_init__)
    signature = list(inspect.signature(cls.__init__).parameters.values())[1:]
    plain = (not hasattr(cls, "__post_init__") and "__slots__" not in cls.__dict__
             and [(p.name, p.kind) for p in signature] == [(f.name, _POSITIONAL) for f in fields])
    if plain:
        cls.__init__ = _fast_init(cls, fields)  # type: ignore[misc]
        cls.__record_fields__ = frozenset(f.name for f in fields)  # type: ignore[attr-defined]
    return cls


def replace(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` for a record: the same copy with ``changes``, without re-reading every
    field through ``fields()`` and ``getattr`` (10 us for a 13-field row against ~1 us: a report with
    normalisation layers replaces two records a row). Anything else goes to ``dataclasses.replace``."""
    names = type(obj).__dict__.get("__record_fields__")  # the class's own: a subclass may add fields
    if names is None:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    unknown = changes.keys() - names
    if unknown:
        raise TypeError(f"{type(obj).__name__}.__init__() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    new = object.__new__(type(obj))
    state = new.__dict__
    state.update(obj.__dict__)
    state.update(changes)
    return new


def _fast_init(cls: type, fields: list[dataclasses.Field]) -> Any:
    scope: dict[str, Any] = {"_FACTORY": _FACTORY}
    params, body = ["self"], ["    d = self.__dict__"]
    for f in fields:
        if f.default is not dataclasses.MISSING:
            scope[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
            body.append(f"    d[{f.name!r}] = {f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            body.append(f"    d[{f.name!r}] = _factory_{f.name}() if {f.name} is _FACTORY else {f.name}")
        else:
            params.append(f.name)
            body.append(f"    d[{f.name!r}] = {f.name}")
    source = f"def __init__({', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, scope)  # noqa: S102 - our own source text, built from the class's field names only
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    return init
