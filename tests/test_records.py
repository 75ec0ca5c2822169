"""``record`` behaves as ``@dataclass(frozen=True)`` does, with its own ``__init__`` only where that is safe."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import InitVar, field

import pytest

from gradcheck_cli.records import record
from gradcheck_cli.report import model


@record
class Row:
    index: int
    name: str = "x"
    values: list[int] = field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Reference:
    index: int
    name: str = "x"
    values: list[int] = field(default_factory=list)


def _fast(cls: type) -> bool:
    return "d" in cls.__init__.__code__.co_varnames  # the generated init binds the instance dict


def test_a_record_is_a_frozen_dataclass() -> None:
    row = Row(1, values=[2])
    assert _fast(Row)
    assert row == Row(1, "x", [2]) and row != Row(2)
    assert repr(row) == repr(Reference(1, values=[2])).replace("Reference", "Row")
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.index = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del row.name
    assert hash(Row(1, "y", None)) == hash(Row(1, "y", None))  # type: ignore[arg-type]
    assert dataclasses.replace(row, name="z") == Row(1, "z", [2])
    assert dataclasses.asdict(row) == {"index": 1, "name": "x", "values": [2]}
    assert pickle.loads(pickle.dumps(row)) == row and copy.deepcopy(row) == row
    assert Row(1).values is not Row(1).values  # default_factory: a fresh list each time
    assert [p.name for p in inspect.signature(Row).parameters.values()] == ["index", "name", "values"]


def test_argument_errors_match_dataclasses() -> None:
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'index'"):
        Row()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        Row(1, colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes from 2 to 4 positional arguments"):
        Row(1, "x", [], 4)  # type: ignore[call-arg]


def test_what_the_fast_init_cannot_do_keeps_dataclasses_init() -> None:
    @record
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    @record
    class Keyword:
        a: int
        b: int = field(default=0, kw_only=True)

    @record
    class Derived:
        a: int
        scale: InitVar[int] = 1

    for cls in (Checked, Keyword, Derived):
        assert not _fast(cls)
    with pytest.raises(ValueError):
        Checked(-1)
    assert Keyword(1, b=2).b == 2 and Derived(3).a == 3


def test_every_report_class_builds_fast() -> None:
    classes = [c for c in vars(model).values() if isinstance(c, type) and c.__module__ == model.__name__
               and dataclasses.is_dataclass(c)]
    assert len(classes) >= 10
    assert all(_fast(c) for c in classes)


def test_replace_matches_dataclasses_replace() -> None:
    from gradcheck_cli.records import replace

    row = Row(3, "a", [1])
    new = replace(row, name="b")
    assert new == dataclasses.replace(row, name="b") and type(new) is Row
    assert row.name == "a" and new.values is row.values  # the original untouched; fields not changed are shared
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.name = "c"  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        replace(row, colour="red")
    # what the fast path does not cover goes to dataclasses.replace: a plain frozen dataclass, a record's
    # subclass that adds a field
    assert replace(Reference(1), name="z") == Reference(1, "z")

    @dataclasses.dataclass(frozen=True)
    class Wider(Row):
        extra: int = 0

    assert replace(Wider(1, extra=2), name="w") == Wider(1, "w", [], 2)
