"""Unit tests for relos.serialization (no database needed)."""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import uuid
from collections import OrderedDict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, Flag, IntEnum
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
import pytest

from relos.errors import ConfigError, RecordedError, SerializationError
from relos.serialization import (
    JSONSerializer,
    PickleSerializer,
    Serializer,
    deserialize_exception,
    deserialize_inputs,
    get_serializer,
    inputs_writer,
    serialize_exception,
    serialize_inputs,
    serialize_value,
)

JSON = JSONSerializer()
PICKLE = PickleSerializer()


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Priority(IntEnum):
    LOW = 1
    HIGH = 2


class Perm(Flag):
    R = 1
    W = 2


@dataclasses.dataclass
class Point:
    x: int
    y: float


@dataclasses.dataclass(frozen=True)
class Tagged:
    name: str
    point: Point
    tags: tuple[str, ...] = ()
    when: datetime | None = None
    color: Color = Color.RED


@dataclasses.dataclass
class WithDerived:
    base: int
    double: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.double = self.base * 2


class Address(pydantic.BaseModel):
    city: str
    zip_code: str


class Customer(pydantic.BaseModel):
    name: str
    address: Address
    joined: datetime
    balance: Decimal
    tags: list[str] = []


class Outer:
    @dataclasses.dataclass
    class Inner:
        value: int


class TwoArgError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class PlainError(Exception):
    pass


class Opaque:
    """Picklable but not JSON-serializable."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.n == self.n

    __hash__ = None  # type: ignore[assignment]


def assert_same(a: Any, b: Any) -> None:
    """Equal value *and* identical types, all the way down."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
            assert_same(ka, kb)
            assert_same(va, vb)
    else:
        assert a == b
        if isinstance(a, datetime):
            assert a.tzinfo == b.tzinfo and a.fold == b.fold


def roundtrip(value: Any, serializer: Serializer = JSON) -> Any:
    text = serializer.dumps(value)
    assert isinstance(text, str)
    return serializer.loads(text)


PARIS = ZoneInfo("Europe/Paris")

ROUND_TRIP = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "negative int": -17,
    "big int": 2**100,
    "float": 1.5,
    "negative zero": -0.0,
    "inf": float("inf"),
    "-inf": float("-inf"),
    "nan": float("nan"),
    "empty str": "",
    "unicode str": "héllo ☃ \U0001f600 \x00",
    "lone surrogate": "\udcff",
    "str that looks like a tag": '{"__relos__": "tuple"}',
    "empty list": [],
    "nested list": [1, [2, [3, None]], "x"],
    "empty dict": {},
    "nested dict": {"a": {"b": [1, 2.5, {"c": None}]}},
    "int keys": {1: "a", 2: "b"},
    "mixed keys": {1: "a", "b": 2, None: 3, False: 4, 2.5: 5},
    "tuple keys": {(1, 2): "a", ("x", (3,)): "b"},
    "frozenset key": {frozenset({1}): 1},
    "escaped tag key": {"__relos__": "tuple", "items": [1, 2]},
    "nested escaped tag key": {"outer": [{"__relos__": 1}]},
    "empty tuple": (),
    "tuple": (1, "a", None),
    "nested tuple": ((1, 2), [3, (4,)]),
    "set": {1, 2, 3},
    "empty set": set(),
    "frozenset": frozenset({"a", "b"}),
    "set of tuples": {(1, 2), (3, 4)},
    "bytes": b"\x00\xffhello",
    "empty bytes": b"",
    "bytearray": bytearray(b"abc"),
    "naive datetime": datetime(2024, 5, 17, 12, 30, 45, 123456),
    "utc datetime": datetime(2024, 5, 17, 12, 30, tzinfo=timezone.utc),
    "offset datetime": datetime(
        2024, 5, 17, 12, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))
    ),
    "zoneinfo datetime": datetime(2024, 7, 1, 9, 0, tzinfo=PARIS),
    "ambiguous datetime fold=1": datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS),
    "date": date(1999, 12, 31),
    "time": time(23, 59, 59, 999999),
    "aware time": time(8, 0, tzinfo=timezone.utc),
    "timedelta": timedelta(days=-1, seconds=5, microseconds=7),
    "decimal": Decimal("1.10"),
    "negative zero decimal": Decimal("-0"),
    "decimal exponent": Decimal("1E+30"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "enum": Color.BLUE,
    "int enum": Priority.HIGH,
    "flag combination": Perm.R | Perm.W,
    "dataclass": Point(1, 2.5),
    "nested dataclass": Tagged("t", Point(3, 4.0), ("a", "b"), datetime(2024, 1, 1), Color.BLUE),
    "dataclass with init=False field": WithDerived(4),
    "nested class dataclass": Outer.Inner(7),
    "pydantic": Address(city="Paris", zip_code="75001"),
    "nested pydantic": Customer(
        name="Ada",
        address=Address(city="London", zip_code="N1"),
        joined=datetime(2024, 2, 3, 4, 5, tzinfo=timezone.utc),
        balance=Decimal("10.50"),
        tags=["vip"],
    ),
    "list of mixed": [Point(1, 1.0), (1, 2), {3}, Color.RED, b"x", None],
    "dict of dataclasses": {"p": Point(0, 0.0), "q": [Point(1, 1.0)]},
}


@pytest.mark.parametrize("value", list(ROUND_TRIP.values()), ids=list(ROUND_TRIP))
def test_json_round_trip_is_exact(value: Any) -> None:
    assert_same(roundtrip(value), value)


@pytest.mark.parametrize("value", [None, 1, "x", [1, "x"], {"a": [1, "x"], "b": {"c": None}}])
def test_json_native_values_are_plain_json(value: Any) -> None:
    text = JSON.dumps(value)
    assert "__relos__" not in text
    assert json.loads(text) == value


def test_dumps_none_is_null() -> None:
    assert JSON.dumps(None) == "null"
    assert JSON.loads("null") is None
    assert json.loads(JSON.dumps({"a": [1, "x"]})) == {"a": [1, "x"]}


def test_tag_format() -> None:
    assert json.loads(JSON.dumps((1, 2))) == {"__relos__": "tuple", "items": [1, 2]}
    assert json.loads(JSON.dumps({(1,): "a"})) == {
        "__relos__": "dict",
        "items": [[{"__relos__": "tuple", "items": [1]}, "a"]],
    }
    assert json.loads(JSON.dumps(Color.RED)) == {
        "__relos__": "enum",
        "type": f"{__name__}:Color",
        "value": "red",
    }
    assert json.loads(JSON.dumps(float("nan"))) == {"__relos__": "float", "value": "nan"}


def test_escaped_tag_key_is_not_mistaken_for_a_tag() -> None:
    value = {"__relos__": "exception", "type": "builtins:ValueError", "message": "x"}
    text = JSON.dumps(value)
    assert json.loads(text)["__relos__"] == "dict"
    assert_same(JSON.loads(text), value)


def test_subclasses_of_containers_are_stored_as_base_type() -> None:
    assert_same(roundtrip(OrderedDict(a=1)), {"a": 1})


def test_unresolvable_dataclass_becomes_dict_of_fields() -> None:
    @dataclasses.dataclass
    class Local:
        a: int
        b: tuple[int, int]

    assert_same(roundtrip(Local(1, (2, 3))), {"a": 1, "b": (2, 3)})


def test_unresolvable_pydantic_model_becomes_dict() -> None:
    class LocalModel(pydantic.BaseModel):
        a: int

    assert_same(roundtrip(LocalModel(a=1)), {"a": 1})


def test_unresolvable_enum_becomes_its_value() -> None:
    text = JSON.dumps(Color.RED).replace(f"{__name__}:Color", "no_such_module_xyz:Color")
    assert JSON.loads(text) == "red"


def test_decoding_only_calls_expected_kinds_of_class() -> None:
    # Names that resolve to callables of the wrong kind are never called.
    evil_exc = json.dumps(
        {"__relos__": "exception", "type": "os:system", "message": "m", "args": ["echo hacked"]}
    )
    exc = JSON.loads(evil_exc)
    assert isinstance(exc, RecordedError) and exc.error_type == "os:system"
    evil_dc = json.dumps({"__relos__": "dataclass", "type": "builtins:eval", "fields": {"a": 1}})
    assert JSON.loads(evil_dc) == {"a": 1}
    evil_enum = json.dumps({"__relos__": "enum", "type": "builtins:print", "value": 1})
    assert JSON.loads(evil_enum) == 1


def _raise_and_catch(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def failing_helper() -> None:
    raise ValueError("bad input", 42)


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad"), KeyError("missing"), PlainError("custom", 3), RuntimeError()],
    ids=["ValueError", "KeyError", "custom", "no-args"],
)
def test_exception_round_trips_to_original_type(exc: BaseException) -> None:
    caught = _raise_and_catch(exc)
    text = serialize_exception(JSON, caught)
    back = deserialize_exception(JSON, text)
    assert type(back) is type(exc)
    assert back.args == exc.args
    assert str(back) == str(exc)
    assert "Traceback (most recent call last)" in back.__relos_traceback__  # type: ignore[attr-defined]
    assert "_raise_and_catch" in back.__relos_traceback__  # type: ignore[attr-defined]


def test_exception_traceback_text_includes_cause() -> None:
    try:
        try:
            failing_helper()
        except ValueError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        back = deserialize_exception(JSON, serialize_exception(JSON, exc))
    assert type(back) is RuntimeError and str(back) == "outer"
    tb = back.__relos_traceback__  # type: ignore[attr-defined]
    assert "failing_helper" in tb and "ValueError: ('bad input', 42)" in tb


def test_exception_needing_two_args_becomes_recorded_error() -> None:
    exc = _raise_and_catch(TwoArgError(404, "not found"))
    back = deserialize_exception(JSON, serialize_exception(JSON, exc))
    assert isinstance(back, RecordedError)
    assert back.error_type == f"{__name__}:TwoArgError"
    assert back.recorded_message == "404: not found"
    assert "TwoArgError" in back.recorded_traceback
    assert back.__relos_traceback__ == back.recorded_traceback  # type: ignore[attr-defined]


def test_exception_from_vanished_module_becomes_recorded_error() -> None:
    class Gone(Exception):
        pass

    Gone.__module__ = "relos_no_such_module_xyz"
    Gone.__qualname__ = "Gone"
    back = deserialize_exception(JSON, serialize_exception(JSON, _raise_and_catch(Gone("bye"))))
    assert isinstance(back, RecordedError)
    assert back.error_type == "relos_no_such_module_xyz:Gone"
    assert back.recorded_message == "bye"
    assert str(back) == "relos_no_such_module_xyz:Gone: bye"


def test_exception_with_unserializable_args_keeps_type_name_and_message() -> None:
    text = serialize_exception(JSON, ValueError(object()))
    assert '"args"' not in text
    back = deserialize_exception(JSON, text)
    assert isinstance(back, RecordedError) and back.error_type == "builtins:ValueError"
    assert back.recorded_message.startswith("<object object")


def test_recorded_error_round_trips_as_itself() -> None:
    original = RecordedError("some.mod:Err", "msg", "tb text")
    back = deserialize_exception(JSON, serialize_exception(JSON, original))
    assert isinstance(back, RecordedError)
    assert (back.error_type, back.recorded_message, back.recorded_traceback) == (
        "some.mod:Err",
        "msg",
        "tb text",
    )


def test_exception_nested_in_a_value() -> None:
    back = roundtrip({"errors": [ValueError("a")]})
    assert type(back["errors"][0]) is ValueError and str(back["errors"][0]) == "a"


def test_pickle_serializer_records_exceptions_as_json() -> None:
    text = serialize_exception(PICKLE, ValueError("x"))
    assert json.loads(text)["__relos__"] == "exception"
    assert type(deserialize_exception(PICKLE, text)) is ValueError


def test_deserialize_exception_rejects_non_exception_text() -> None:
    with pytest.raises(SerializationError, match="not an exception record"):
        deserialize_exception(JSON, "[1, 2]")


def reminder(user: str, conn: Any, *extra: Any, **options: Any) -> None:
    pass


def test_inputs_round_trip() -> None:
    args = ("u1", (1, 2), Point(1, 2.0))
    kwargs = {"when": date(2024, 1, 1), "__relos__": {1: 2}}
    text = serialize_inputs(JSON, reminder, args, kwargs, "workflow 'reminder'")
    assert_same(deserialize_inputs(JSON, text), (args, kwargs))
    plain = serialize_inputs(JSON, reminder, ("a", 1), {"k": [1]}, "workflow 'reminder'")
    assert json.loads(plain) == {"args": ["a", 1], "kwargs": {"k": [1]}}


@pytest.mark.parametrize("args, kwargs", [
    ((), {}),
    ((1,), {}),
    (("caf\u00e9 \"quoted\" \\ back\tslash\n", -7, True, False, None, 10**30), {}),
    (("\U0001f600", "\x00\x1f"), {}),
    ((1.5,), {}),  # a float: not one of the plain types, the serializer writes it
    ((Color.RED, Priority(1)), {}),  # an enum, an int subclass
    ((True,), {"k": [1]}),
    (([1, 2], {"a": None}), {}),
])
def test_inputs_writer_writes_what_serialize_inputs_stores(args: tuple[Any, ...],
                                                           kwargs: dict[str, Any]) -> None:
    for serializer in (JSON, PICKLE):
        written = inputs_writer(serializer)(args, kwargs)
        assert written == serialize_inputs(serializer, reminder, args, kwargs, "workflow 'w'")
        assert_same(deserialize_inputs(serializer, written), (args, kwargs))


def test_inputs_error_names_the_parameter() -> None:
    with socket.socket() as conn, pytest.raises(SerializationError) as info:
        serialize_inputs(JSON, reminder, ("ada", conn), {}, "workflow 'reminder'")
    message = str(info.value)
    assert "argument 'conn' of workflow 'reminder' (type socket) cannot be serialized" in message
    assert "configure serializer='pickle'" in message


def test_inputs_error_names_parameter_and_nested_path() -> None:
    payload = {"items": [1, 2, {"cb": lambda: None}]}
    with pytest.raises(SerializationError) as info:
        serialize_inputs(JSON, reminder, ("ada", 1), {"payload": payload}, "workflow 'reminder'")
    assert "argument 'payload' of workflow 'reminder' contains a value of type function at " in str(
        info.value
    )
    assert "['items'][2]['cb']" in str(info.value)


def test_inputs_error_for_var_positional_and_bind_failure() -> None:
    with pytest.raises(
        SerializationError, match=r"argument '\*extra\[1\]' of workflow 'reminder' \(type object\)"
    ):
        serialize_inputs(JSON, reminder, ("a", 1, 2, object()), {}, "workflow 'reminder'")
    # Arguments that do not fit the signature: fall back to the positional index.
    with pytest.raises(SerializationError, match=r"argument #2 of workflow 'w' \(type object\)"):
        serialize_inputs(JSON, lambda: None, (1, 2, object()), {}, "workflow 'w'")


def test_value_error_names_what_type_and_path() -> None:
    value = {"items": [1, 2, Point(1, object())]}  # type: ignore[arg-type]
    with pytest.raises(SerializationError) as info:
        serialize_value(JSON, value, "the return value of step 'send_email'")
    assert str(info.value) == (
        "the return value of step 'send_email' contains a value of type object at "
        "['items'][2].y that cannot be serialized as JSON; return JSON-compatible values, "
        "dataclasses or pydantic models, or configure serializer='pickle' to store "
        "arbitrary objects"
    )
    with pytest.raises(SerializationError, match=r"step 's' \(type function\)"):
        serialize_value(JSON, lambda: 1, "the return value of step 's'")
    with pytest.raises(SerializationError, match=r"type Enum(Type|Meta) at \[0\]\{\.\.\.\}"):
        serialize_value(JSON, [frozenset({Color})], "v")


def test_dumps_error_is_serialization_error_and_type_error() -> None:
    with pytest.raises(SerializationError) as info:
        JSON.dumps([object()])
    assert isinstance(info.value, TypeError)
    assert "at [0]" in str(info.value)


def test_reference_cycle_is_a_serialization_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(SerializationError):
        JSON.dumps(cycle)


@pytest.mark.parametrize(
    "text",
    ["not json", '{"__relos__": "from_the_future"}', '{"__relos__": "tuple"}'],
    ids=["invalid", "unknown-tag", "malformed-tag"],
)
def test_bad_text_is_a_serialization_error(text: str) -> None:
    with pytest.raises(SerializationError):
        JSON.loads(text)


def test_pickle_round_trip() -> None:
    value = {"obj": Opaque(3), "t": (1, 2), "s": {1}}
    text = PICKLE.dumps(value)
    assert text.startswith("pickle:")
    assert_same(PICKLE.loads(text), value)
    assert PICKLE.loads(PICKLE.dumps(None)) is None


def test_pickle_refuses_non_pickle_text() -> None:
    with pytest.raises(SerializationError, match="not written by the pickle serializer"):
        PICKLE.loads('{"a": 1}')
    with pytest.raises(SerializationError, match="cannot be loaded"):
        PICKLE.loads("pickle:!!!")


def test_pickle_failures_name_what_and_argument() -> None:
    with pytest.raises(SerializationError, match="step 's' .*'pickle' serializer"):
        serialize_value(PICKLE, lambda: 1, "the return value of step 's'")
    inputs = serialize_inputs(PICKLE, reminder, ("a", Opaque(1)), {}, "workflow 'reminder'")
    assert_same(deserialize_inputs(PICKLE, inputs), (("a", Opaque(1)), {}))
    with pytest.raises(SerializationError, match="argument 'conn' of workflow 'reminder'"):
        serialize_inputs(PICKLE, reminder, ("a", lambda: 1), {}, "workflow 'reminder'")


def test_get_serializer() -> None:
    assert isinstance(get_serializer("json"), JSONSerializer)
    assert isinstance(get_serializer("pickle"), PickleSerializer)
    assert get_serializer("json").name == "json"
    with pytest.raises(ConfigError, match="'json', 'pickle'") as info:
        get_serializer("yaml")
    assert "'yaml'" in str(info.value)


def test_deserialize_inputs_rejects_malformed() -> None:
    with pytest.raises(SerializationError, match="malformed"):
        deserialize_inputs(JSON, "[1, 2]")
