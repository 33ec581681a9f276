"""How workflow inputs, outputs and errors become database TEXT, and back.

``json`` (the default) is safe: decoding never unpickles and calls nothing but a
few known constructors. ``pickle`` is opt-in and stores anything picklable.

JSON-native values (None, bool, int, finite float, str, lists, dicts with str
keys) are written as plain JSON. Anything else becomes a tagged object
``{"__relos__": "<tag>", ...}``: ``tuple``/``set``/``frozenset`` (``items``);
``dict`` (``items`` as [key, value] pairs, for non-str keys and to escape dicts
that contain the key "__relos__"); ``float`` (nan/inf); ``bytes``/``bytearray``
(base64); ``datetime`` (ISO, plus the IANA ``tz`` key if any); ``date``;
``time``; ``timedelta`` ([days, seconds, microseconds]); ``decimal``; ``uuid``;
and, with ``type`` = "module:QualName", ``enum`` (``value``), ``dataclass``
(``fields``), ``pydantic`` (``value`` = model_dump(mode="json")) and
``exception`` (``message``, ``traceback``, and ``args`` when serializable).

Decoding looks the module up among those already imported (it never imports
one, so a row cannot trigger import side effects), walks the qualified name and
accepts the result only if it is a class of the expected kind. Otherwise (module
not loaded, class renamed, defined in a function, wrong kind, constructor fails)
the value degrades to data instead of failing: a dataclass or model to a dict of its fields, an enum member to its
value, an exception to :class:`RecordedError`.

Speed: ``dumps`` first makes one allocation-free pass checking that the value is
JSON-native; if so the C encoder writes it directly, with no copy. ``loads``
installs the tag hook only when the text contains "__relos__". ``None`` takes a
shortcut both ways. Error-message work (locating the bad value, binding arguments
to a signature) only happens once something has failed.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import inspect
import json
import math
import pickle
import sys
import traceback
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from relos.errors import ConfigError, RecordedError, SerializationError

TAG = "__relos__"
_FIX = (
    "return JSON-compatible values, dataclasses or pydantic models, "
    "or configure serializer='pickle' to store arbitrary objects"
)


class Serializer(Protocol):
    """Turns values into database TEXT and back."""

    name: str

    def dumps(self, value: Any) -> str: ...

    def loads(self, text: str) -> Any: ...


class _Lit(str):
    """A path segment written as is (``.field``), unlike keys and indexes (``[key]``)."""


class _Unserializable(Exception):
    """Raised inside the JSON encoder; ``path`` is filled in, innermost first, while unwinding.

    ``JSONSerializer.dumps`` turns it into a SerializationError whose ``__cause__`` it is.
    """

    def __init__(self, value: Any, detail: str = "") -> None:
        super().__init__()
        self.value_type, self.detail = type(value), detail
        self.path: list[Any] = []

    def describe(self, subject: str) -> str:
        name = self.value_type.__qualname__
        detail = f" ({self.detail})" if self.detail else ""
        if self.path:
            where = "".join(k if isinstance(k, _Lit) else f"[{k!r}]" for k in reversed(self.path))
            subject = f"{subject} contains a value of type {name} at {where} that"
        else:
            subject = f"{subject} (type {name})"
        return f"{subject} cannot be serialized as JSON{detail}; {_FIX}"

    def __str__(self) -> str:
        return self.describe("the value")


# --- encoding ------------------------------------------------------------------------------

_NATIVE, _STR = frozenset({str, int, bool, type(None)}), frozenset({str})
_SET_ITEM, _VALUE = _Lit("{...}"), _Lit(".value")


def _is_plain(v: Any) -> bool:
    """True if ``v`` is made only of JSON-native values (so json can write it as is)."""
    t = type(v)
    if t in _NATIVE:
        return True
    if t is dict:
        if TAG in v or not _STR.issuperset(map(type, v)):
            return False
        v = v.values()
    elif t is float:
        return math.isfinite(v)
    elif t is not list:
        return False
    # Flat containers are checked without a Python call per item.
    return _NATIVE.issuperset(map(type, v)) or all(map(_is_plain, v))


def _item(x: Any, key: Any) -> Any:
    """Encode ``x``, found at ``key`` of its container (recorded only if it fails)."""
    try:
        return _encode(x)
    except _Unserializable as e:
        e.path.append(key)
        raise


def _encode_dict(d: Any) -> Any:
    if TAG not in d and _STR.issuperset(map(type, d)):
        return {k: _item(x, k) for k, x in d.items()}
    return {TAG: "dict", "items": [[_item(k, k), _item(x, k)] for k, x in d.items()]}


def _encode_datetime(v: datetime) -> dict[str, Any]:
    out = {TAG: "datetime", "value": v.isoformat()}
    if isinstance(v.tzinfo, ZoneInfo) and v.tzinfo.key:
        out["tz"] = v.tzinfo.key
    return out


def _b64(v: bytes | bytearray) -> str:
    return base64.b64encode(v).decode("ascii")


_EXACT: dict[type, Callable[[Any], Any]] = {
    float: lambda v: float(v) if math.isfinite(v) else {TAG: "float", "value": str(v)},
    list: lambda v: [_item(x, i) for i, x in enumerate(v)],
    dict: _encode_dict,
    tuple: lambda v: {TAG: "tuple", "items": [_item(x, i) for i, x in enumerate(v)]},
    set: lambda v: {TAG: "set", "items": [_item(x, _SET_ITEM) for x in v]},
    frozenset: lambda v: {TAG: "frozenset", "items": [_item(x, _SET_ITEM) for x in v]},
    bytes: lambda v: {TAG: "bytes", "value": _b64(v)},
    bytearray: lambda v: {TAG: "bytearray", "value": _b64(v)},
    datetime: _encode_datetime,
    date: lambda v: {TAG: "date", "value": v.isoformat()},
    time: lambda v: {TAG: "time", "value": v.isoformat()},
    timedelta: lambda v: {TAG: "timedelta", "value": [v.days, v.seconds, v.microseconds]},
    Decimal: lambda v: {TAG: "decimal", "value": str(v)},
    uuid.UUID: lambda v: {TAG: "uuid", "value": str(v)},
}


def _encode(v: Any) -> Any:
    t = type(v)
    if t in _NATIVE:
        return v
    handler = _EXACT.get(t)
    if handler is not None:
        return handler(v)
    path = f"{t.__module__}:{t.__qualname__}"
    if isinstance(v, Enum):
        return {TAG: "enum", "type": path, "value": _item(v.value, _VALUE)}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        fields = {
            f.name: _item(getattr(v, f.name), _Lit("." + f.name)) for f in dataclasses.fields(v)
        }
        if TAG in fields:  # a field named like the tag key: escape it
            fields = {TAG: "dict", "items": [list(kv) for kv in fields.items()]}
        return {TAG: "dataclass", "type": path, "fields": fields}
    if hasattr(t, "model_dump") and hasattr(t, "model_validate"):
        try:
            dumped = v.model_dump(mode="json")
        except Exception as exc:
            raise _Unserializable(v, f"model_dump failed: {exc}") from None
        return {TAG: "pydantic", "type": path, "value": _encode(dumped)}
    if isinstance(v, BaseException):
        return _encode_exception(v)
    # Subclasses (str/int subclasses, OrderedDict, namedtuple, numpy.float64...) are
    # stored as their base type.
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, int):
        return int.__int__(v)
    for base, handler in _EXACT.items():
        if isinstance(v, base):
            return handler(v)
    raise _Unserializable(v)


def _safe_str(e: BaseException) -> str:
    try:
        return str(e)
    except Exception:
        return f"<unprintable {type(e).__qualname__}>"


def _encode_exception(e: BaseException) -> dict[str, Any]:
    if isinstance(e, RecordedError):  # keep the original's identity through re-raises
        kind, message, tb = e.error_type, e.recorded_message, e.recorded_traceback
    else:
        kind = f"{type(e).__module__}:{type(e).__qualname__}"
        message, tb = _safe_str(e), "".join(traceback.format_exception(e))
    out = {TAG: "exception", "type": kind, "message": message, "traceback": tb}
    if not isinstance(e, RecordedError):  # without args, an error decodes as a RecordedError
        with contextlib.suppress(_Unserializable, RecursionError):
            out["args"] = _encode(list(getattr(e, "__relos_init_args__", e.args)))
    return out


_write = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode


# --- decoding ------------------------------------------------------------------------------


def _resolve(path: Any, accept: Callable[[Any], bool]) -> Any:
    """Find ``"module:QualName"`` among the modules this process has already
    imported; return the class if ``accept`` likes it, else None.

    Decoding never imports a module: a row cannot make a reader run the import
    side effects of code it did not load itself (the CLI, for instance, loads
    none of the application's code and so sees plain values)."""
    module_name, _, qualname = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not module_name or not qualname or "<locals>" in qualname:
        return None
    obj: Any = sys.modules.get(module_name)
    if obj is None:
        return None
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj if isinstance(obj, type) and accept(obj) else None


def _rebuild(
    d: dict[str, Any], accept: Callable[[Any], bool], build: Callable[[Any], Any], fallback: Any
) -> Any:
    cls = _resolve(d.get("type"), accept)
    if cls is not None:
        try:
            return build(cls)
        except Exception:
            pass
    return fallback


def _build_dataclass(cls: Any, fields: dict[str, Any]) -> Any:
    init = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: x for k, x in fields.items() if k in init})


def _build_exception(cls: Any, args: list[Any], message: str) -> BaseException | None:
    rebuilt: BaseException = cls(*args)
    # Only trust the rebuilt error if it reads the same as the recorded one.
    return rebuilt if _safe_str(rebuilt) == message else None


def _decode_exception(d: dict[str, Any]) -> BaseException:
    type_name, message = str(d.get("type", "")), str(d.get("message", ""))
    tb, args = str(d.get("traceback", "")), d.get("args")
    exc: BaseException | None = None
    if isinstance(args, list):
        build = lambda c: _build_exception(c, args, message)  # noqa: E731
        exc = _rebuild(d, lambda c: issubclass(c, BaseException), build, None)
    if exc is None:
        exc = RecordedError(type_name, message, tb)
    exc.__dict__["__relos_traceback__"] = tb
    return exc


def _decode_datetime(d: dict[str, Any]) -> datetime:
    dt = datetime.fromisoformat(d["value"])
    with contextlib.suppress(Exception):  # unknown key: keep the fixed offset (same instant)
        zone = ZoneInfo(d["tz"]) if "tz" in d else None
        for fold in (0, 1) if zone is not None else ():
            local = dt.replace(tzinfo=zone, fold=fold)
            if local.utcoffset() == dt.utcoffset():
                return local
    return dt


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": lambda d: dict(d["items"]),
    "tuple": lambda d: tuple(d["items"]),
    "set": lambda d: set(d["items"]),
    "frozenset": lambda d: frozenset(d["items"]),
    "float": lambda d: float(d["value"]),
    "bytes": lambda d: base64.b64decode(d["value"], validate=True),
    "bytearray": lambda d: bytearray(base64.b64decode(d["value"], validate=True)),
    "datetime": _decode_datetime,
    "date": lambda d: date.fromisoformat(d["value"]),
    "time": lambda d: time.fromisoformat(d["value"]),
    "timedelta": lambda d: timedelta(*d["value"]),
    "decimal": lambda d: Decimal(d["value"]),
    "uuid": lambda d: uuid.UUID(d["value"]),
    "enum": lambda d: _rebuild(
        d, lambda c: issubclass(c, Enum), lambda c: c(d["value"]), d["value"]
    ),
    "dataclass": lambda d: _rebuild(
        d, dataclasses.is_dataclass, lambda c: _build_dataclass(c, d["fields"]), d["fields"]
    ),
    "pydantic": lambda d: _rebuild(
        d,
        lambda c: hasattr(c, "model_validate"),
        lambda c: c.model_validate(d["value"]),
        d["value"],
    ),
    "exception": _decode_exception,
}


def _decode_object(d: dict[str, Any]) -> Any:
    """json ``object_hook``: called bottom-up, so a tag's contents are already decoded."""
    if TAG not in d:
        return d
    decoder = _DECODERS.get(d[TAG])
    if decoder is None:
        raise SerializationError(f"unknown tag {d[TAG]!r}: written by a newer relos? upgrade")
    return decoder(d)


_read_plain = json.JSONDecoder().decode
_read_tagged = json.JSONDecoder(object_hook=_decode_object).decode


# --- serializers ---------------------------------------------------------------------------


class JSONSerializer:
    """The default serializer: readable, safe JSON text (see the module docstring)."""

    name: str = "json"

    def dumps(self, value: Any) -> str:
        scalar = _PLAIN_TEXT.get(type(value))  # (a task's usual result: no encoder set up)
        try:
            if scalar is not None:
                return scalar(value)
            return _write(value if _is_plain(value) else _encode(value))
        except _Unserializable as exc:
            raise SerializationError(str(exc)) from exc
        except (RecursionError, ValueError) as exc:  # a reference cycle, a huge int...
            raise SerializationError(f"value cannot be written as JSON: {exc!r}") from None

    def loads(self, text: str) -> Any:
        if text == "null":
            return None
        try:
            return _read_tagged(text) if TAG in text else _read_plain(text)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"stored value is not relos JSON ({exc}): {text[:80]!r}"
            ) from None


class PickleSerializer:
    """Opt-in: stores any picklable object. Only use it with a database you trust."""

    name: str = "pickle"
    prefix = "pickle:"

    def dumps(self, value: Any) -> str:
        try:
            return self.prefix + _b64(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as exc:
            raise SerializationError(
                f"{type(value).__qualname__} cannot be pickled: {exc}"
            ) from exc

    def loads(self, text: str) -> Any:
        if not text.startswith(self.prefix):
            raise SerializationError(
                f"stored value was not written by the pickle serializer ({text[:40]!r}): the "
                f"serializer was probably changed; configure the one that wrote the data"
            )
        try:
            return pickle.loads(base64.b64decode(text[len(self.prefix) :], validate=True))
        except Exception as exc:
            raise SerializationError(f"stored pickle value cannot be loaded: {exc}") from None


_JSON = JSONSerializer()
_SERIALIZERS: dict[str, Serializer] = {"json": _JSON, "pickle": PickleSerializer()}


def get_serializer(name: str) -> Serializer:
    """The serializer called ``name``; ConfigError for unknown names."""
    if isinstance(name, str) and name in _SERIALIZERS:
        return _SERIALIZERS[name]
    valid = ", ".join(repr(n) for n in _SERIALIZERS)
    raise ConfigError(f"unknown serializer {name!r}: valid names are {valid}")


# --- runtime helpers -----------------------------------------------------------------------


def _failure(
    subject: str, value: Any, exc: Exception, serializer: Serializer
) -> SerializationError:
    cause = exc if isinstance(exc, _Unserializable) else exc.__cause__
    if isinstance(cause, _Unserializable):
        return SerializationError(cause.describe(subject))
    return SerializationError(
        f"{subject} (type {type(value).__qualname__}) cannot be "
        f"serialized by the {serializer.name!r} serializer: {cause or exc}"
    )


def serialize_value(serializer: Serializer, value: Any, what: str) -> str:
    """``serializer.dumps(value)``; errors name ``what`` (e.g. "the return value of step 'x'")."""
    try:
        return serializer.dumps(value)
    except Exception as exc:
        raise _failure(what, value, exc, serializer) from None


def _labelled_arguments(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[tuple[str, Any]]:
    labelled = [(f"#{i}", a) for i, a in enumerate(args)] + [
        (repr(k), v) for k, v in kwargs.items()
    ]
    try:
        sig = inspect.signature(func)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return labelled  # fall back to positions
    labelled = []
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            labelled += [(repr(f"*{name}[{i}]"), v) for i, v in enumerate(value)]
        elif kind is inspect.Parameter.VAR_KEYWORD:
            labelled += [(repr(k), v) for k, v in value.items()]
        else:
            labelled.append((repr(name), value))
    return labelled


def serialize_inputs(
    serializer: Serializer,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    what: str,
) -> str:
    """Store ``{"args": [...], "kwargs": {...}}``; errors name the offending parameter."""
    try:
        return serializer.dumps({"args": list(args), "kwargs": kwargs})
    except Exception as exc:
        first = exc
    for label, value in _labelled_arguments(func, args, kwargs):
        try:
            serializer.dumps(value)
        except Exception as exc:
            raise _failure(f"argument {label} of {what}", value, exc, serializer) from None
    raise _failure(f"the inputs of {what}", args, first, serializer) from None


def inputs_writer(serializer: Serializer) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
    """A function writing a call's inputs as :func:`serialize_inputs` stores
    them (it raises the serializer's error, unlabelled). With the JSON
    serializer, a call whose positional arguments are all strings, integers,
    booleans or None and which has no keyword arguments (the usual task) is
    written argument by argument by the encoder's own functions for those
    types, with the same text."""
    dumps = serializer.dumps
    if type(serializer) is not JSONSerializer:
        return lambda args, kwargs: dumps({"args": list(args), "kwargs": kwargs})
    plain = _PLAIN_TEXT

    def write(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if not kwargs:
            try:
                return '{"args":[' + ",".join([plain[type(a)](a) for a in args]) + '],"kwargs":{}}'
            except KeyError:  # an argument of another type
                pass
        return dumps({"args": list(args), "kwargs": kwargs})

    return write


#: The JSON text of a value of these exact types, as the encoder writes it
#: (strings ASCII-escaped), without setting up an encoder per call.
_PLAIN_TEXT: dict[type, Callable[[Any], str]] = {
    str: json.encoder.encode_basestring_ascii,
    int: int.__repr__,
    bool: lambda b: "true" if b else "false",
    type(None): lambda _: "null",
}


def deserialize_inputs(serializer: Serializer, text: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Inverse of :func:`serialize_inputs`."""
    data = serializer.loads(text)
    if not (
        isinstance(data, dict)
        and isinstance(data.get("args"), (list, tuple))
        and isinstance(data.get("kwargs"), dict)
    ):
        raise SerializationError(f"stored workflow inputs are malformed: {text[:80]!r}")
    return tuple(data["args"]), dict(data["kwargs"])


def serialize_exception(serializer: Serializer, exc: BaseException) -> str:
    """Errors always use the JSON encoding, whatever ``serializer`` is, so they stay readable."""
    record = _encode_exception(exc)
    try:
        return _write(record)
    except (ValueError, RecursionError):  # e.g. an int too long for str(): drop the args
        record.pop("args", None)
        return _write(record)


def deserialize_exception(serializer: Serializer, text: str) -> BaseException:
    """Rebuild a recorded error: its original type if possible, else a RecordedError.

    Either way ``__relos_traceback__`` holds the traceback text recorded when it was raised.
    """
    value = _JSON.loads(text)
    if not isinstance(value, BaseException):
        raise SerializationError(f"stored error is not an exception record: {text[:80]!r}")
    return value
