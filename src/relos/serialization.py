"""How workflow inputs, outputs and errors become TEXT in the database, and back.

Two serializers exist. ``json`` (the default) is safe: decoding never unpickles
and never calls anything except a short list of known constructors, so a row
read from the database cannot run arbitrary code. ``pickle`` is opt-in and
stores anything picklable, at the usual pickle risk.

JSON format. Values JSON represents natively (``None``, ``bool``, ``int``,
finite ``float``, ``str``, lists, dicts with ``str`` keys) are written as plain
JSON. Everything else becomes a *tagged object*::

    {"__relos__": "<tag>", ...fields}

Tags: ``tuple``/``set``/``frozenset`` (``items``), ``dict`` (``items`` as
``[key, value]`` pairs; used for non-``str`` keys and for dicts that contain the
``"__relos__"`` key themselves, which is how such dicts are escaped), ``float``
(``value`` "nan"/"inf"/"-inf"), ``bytes``/``bytearray`` (base64 ``value``),
``datetime`` (ISO ``value``, optional IANA ``tz``), ``date``, ``time``,
``timedelta`` (``value`` [days, seconds, microseconds]), ``decimal``, ``uuid``,
and, with ``type`` = ``"module:QualName"``: ``enum`` (``value``), ``dataclass``
(``fields``), ``pydantic`` (``value`` = ``model_dump(mode="json")``) and
``exception`` (``message``, ``traceback``, ``args`` when they are serializable).

Decoding resolves ``type`` by importing the module and walking the qualified
name, and only accepts a class of the expected kind. When it cannot (renamed
class, class defined in a function, wrong kind, constructor failure), the value
degrades to plain data (a dataclass or model becomes a dict of its fields, an
enum member its value, an exception a :class:`RecordedError`) instead of failing.

Speed. ``dumps`` first runs one allocation-free pass checking whether the value
is JSON-native; if so the C encoder writes it directly with no copy. ``loads``
only installs the tag-decoding hook when the text contains ``"__relos__"``.
``None`` short-circuits both ways. Failure paths (finding the path of a bad
value, binding arguments to a signature) cost nothing until something fails.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import inspect
import json
import math
import pickle
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


class _Unserializable(SerializationError):
    """Raised by the JSON encoder; ``path`` is filled in (innermost first) while unwinding."""

    def __init__(self, value: Any, detail: str = "") -> None:
        super().__init__()
        self.value_type = type(value)
        self.detail = detail
        self.path: list[str] = []

    @property
    def where(self) -> str:
        return "".join(reversed(self.path))

    def describe(self, subject: str) -> str:
        name = self.value_type.__qualname__
        detail = f" ({self.detail})" if self.detail else ""
        if self.path:
            head = f"{subject} contains a value of type {name} at {self.where}"
            return f"{head} that cannot be serialized as JSON{detail}; {_FIX}"
        return f"{subject} (type {name}) cannot be serialized as JSON{detail}; {_FIX}"

    def __str__(self) -> str:
        return self.describe("the value")


# --- encoding -----------------------------------------------------------------------------

_NATIVE = frozenset({str, int, bool, type(None)})


def _is_plain(v: Any) -> bool:
    """True if ``v`` is made only of JSON-native values (so json can write it as is)."""
    t = type(v)
    if t in _NATIVE:
        return True
    if t is float:
        return math.isfinite(v)
    if t is list:
        return all(map(_is_plain, v))
    if t is dict:
        return TAG not in v and all(type(k) is str for k in v) and all(map(_is_plain, v.values()))
    return False


def _type_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode_seq(items: Any) -> list[Any]:
    out = []
    for i, x in enumerate(items):
        try:
            out.append(_encode(x))
        except _Unserializable as e:
            e.path.append(f"[{i}]")
            raise
    return out


def _encode_set(items: Any) -> list[Any]:
    try:
        return [_encode(x) for x in items]
    except _Unserializable as e:
        e.path.append("{...}")
        raise


def _encode_dict(d: Any) -> Any:
    if TAG not in d and all(type(k) is str for k in d):
        out = {}
        for k, x in d.items():
            try:
                out[k] = _encode(x)
            except _Unserializable as e:
                e.path.append(f"[{k!r}]")
                raise
        return out
    pairs = []
    for k, x in d.items():
        try:
            pairs.append([_encode(k), _encode(x)])
        except _Unserializable as e:
            e.path.append(f"[{k!r}]")
            raise
    return {TAG: "dict", "items": pairs}


def _encode_float(v: float) -> Any:
    return v if math.isfinite(v) else {TAG: "float", "value": str(v)}


def _encode_datetime(v: datetime) -> Any:
    out = {TAG: "datetime", "value": v.isoformat()}
    if isinstance(v.tzinfo, ZoneInfo) and v.tzinfo.key:
        out["tz"] = v.tzinfo.key
    return out


_EXACT: dict[type, Callable[[Any], Any]] = {
    float: _encode_float,
    list: _encode_seq,
    dict: _encode_dict,
    tuple: lambda v: {TAG: "tuple", "items": _encode_seq(v)},
    set: lambda v: {TAG: "set", "items": _encode_set(v)},
    frozenset: lambda v: {TAG: "frozenset", "items": _encode_set(v)},
    bytes: lambda v: {TAG: "bytes", "value": base64.b64encode(v).decode("ascii")},
    bytearray: lambda v: {TAG: "bytearray", "value": base64.b64encode(v).decode("ascii")},
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
    if isinstance(v, Enum):
        try:
            value = _encode(v.value)
        except _Unserializable as e:
            e.path.append(".value")
            raise
        return {TAG: "enum", "type": _type_path(t), "value": value}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        fields = {}
        for f in dataclasses.fields(v):
            try:
                fields[f.name] = _encode(getattr(v, f.name))
            except _Unserializable as e:
                e.path.append(f".{f.name}")
                raise
        return {TAG: "dataclass", "type": _type_path(t), "fields": _encode_dict_shell(fields)}
    if hasattr(t, "model_dump") and hasattr(t, "model_validate"):
        try:
            dumped = v.model_dump(mode="json")
        except Exception as exc:
            raise _Unserializable(v, f"model_dump failed: {exc}") from None
        return {TAG: "pydantic", "type": _type_path(t), "value": _encode(dumped)}
    if isinstance(v, BaseException):
        return _encode_exception(v)
    # Subclasses of supported types (OrderedDict, namedtuple, numpy.float64...) are
    # stored as their base type.
    if isinstance(v, (str, int)):
        return str.__str__(v) if isinstance(v, str) else int(v)
    for base, handler in _EXACT.items():
        if isinstance(v, base):
            return handler(base(v) if base in (float, list, dict, tuple, set) else v)
    raise _Unserializable(v)


def _encode_dict_shell(fields: dict[str, Any]) -> Any:
    """Wrap already-encoded ``fields`` so a field named ``__relos__`` cannot look like a tag."""
    return {TAG: "dict", "items": [[k, x] for k, x in fields.items()]} if TAG in fields else fields


def _safe_str(e: BaseException) -> str:
    try:
        return str(e)
    except Exception:
        return f"<unprintable {type(e).__qualname__}>"


def _encode_exception(e: BaseException) -> dict[str, Any]:
    if isinstance(e, RecordedError):  # keep the original's identity through re-raises
        return {TAG: "exception", "type": e.error_type, "message": e.recorded_message,
                "traceback": e.recorded_traceback}
    try:
        tb = "".join(traceback.format_exception(e))
    except Exception:
        tb = ""
    out: dict[str, Any] = {TAG: "exception", "type": _type_path(type(e)),
                           "message": _safe_str(e), "traceback": tb}
    try:
        out["args"] = _encode(list(e.args))
    except (SerializationError, RecursionError):
        pass
    return out


_write = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode


# --- decoding -----------------------------------------------------------------------------


def _resolve(path: Any, accept: Callable[[Any], bool]) -> Any:
    """Import ``"module:QualName"``; return the object if ``accept`` likes it, else None."""
    if not isinstance(path, str):
        return None
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname or "<locals>" in qualname:
        return None
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj if accept(obj) else None


def _is_kind(base: type) -> Callable[[Any], bool]:
    return lambda obj: isinstance(obj, type) and issubclass(obj, base)


def _decode_dataclass(d: dict[str, Any]) -> Any:
    fields = d["fields"]
    cls = _resolve(d.get("type"), lambda c: isinstance(c, type) and dataclasses.is_dataclass(c))
    if cls is None:
        return fields
    init = {f.name for f in dataclasses.fields(cls) if f.init}
    try:
        return cls(**{k: x for k, x in fields.items() if k in init})
    except Exception:
        return fields


def _decode_pydantic(d: dict[str, Any]) -> Any:
    cls = _resolve(d.get("type"), lambda c: isinstance(c, type) and hasattr(c, "model_validate"))
    try:
        return d["value"] if cls is None else cls.model_validate(d["value"])
    except Exception:
        return d["value"]


def _decode_enum(d: dict[str, Any]) -> Any:
    cls = _resolve(d.get("type"), _is_kind(Enum))
    try:
        return d["value"] if cls is None else cls(d["value"])
    except Exception:
        return d["value"]


def _decode_exception(d: dict[str, Any]) -> BaseException:
    type_name, message = str(d.get("type", "")), str(d.get("message", ""))
    tb = str(d.get("traceback", ""))
    exc: BaseException | None = None
    cls = _resolve(type_name, _is_kind(BaseException))
    if cls is not None and isinstance(d.get("args"), list):
        try:
            candidate = cls(*d["args"])
            # Only trust the rebuilt error if it reads the same as the recorded one.
            if _safe_str(candidate) == message:
                exc = candidate
        except Exception:
            pass
    if exc is None:
        exc = RecordedError(type_name, message, tb)
    exc.__relos_traceback__ = tb  # type: ignore[attr-defined]
    return exc


def _decode_datetime(d: dict[str, Any]) -> datetime:
    dt = datetime.fromisoformat(d["value"])
    if "tz" in d and dt.tzinfo is not None:
        try:
            dt = dt.astimezone(ZoneInfo(d["tz"]))
        except Exception:
            pass  # keep the fixed offset: same instant, tz database just lacks the key
    return dt


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": lambda d: {k: x for k, x in d["items"]},
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
    "enum": _decode_enum,
    "dataclass": _decode_dataclass,
    "pydantic": _decode_pydantic,
    "exception": _decode_exception,
}


def _decode_object(d: dict[str, Any]) -> Any:
    """json ``object_hook``: called bottom-up, so a tag's contents are already decoded."""
    if TAG not in d:
        return d
    decoder = _DECODERS.get(d[TAG])
    if decoder is None:
        raise SerializationError(
            f"unknown tag {d[TAG]!r} in stored value: it was written by a newer relos; upgrade"
        )
    return decoder(d)


_read_plain = json.JSONDecoder().decode
_read_tagged = json.JSONDecoder(object_hook=_decode_object).decode


# --- serializers --------------------------------------------------------------------------


class JSONSerializer:
    """The default serializer: readable, safe JSON text (see the module docstring)."""

    name: str = "json"

    def dumps(self, value: Any) -> str:
        if value is None:
            return "null"
        try:
            if _is_plain(value):
                return _write(value)
            return _write(_encode(value))
        except RecursionError:
            raise SerializationError(
                "value is too deeply nested or contains a reference cycle"
            ) from None
        except ValueError as exc:
            raise SerializationError(f"value cannot be written as JSON: {exc}") from None

    def loads(self, text: str) -> Any:
        if text == "null":
            return None
        try:
            return _read_tagged(text) if TAG in text else _read_plain(text)
        except SerializationError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SerializationError(
                f"stored value is not valid relos JSON ({exc}): {text[:80]!r}"
            ) from None


class PickleSerializer:
    """Opt-in: stores any picklable object. Only use it with a database you trust."""

    name: str = "pickle"
    prefix = "pickle:"

    def dumps(self, value: Any) -> str:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return self.prefix + base64.b64encode(data).decode("ascii")

    def loads(self, text: str) -> Any:
        if not text.startswith(self.prefix):
            raise SerializationError(
                f"stored value was not written by the pickle serializer ({text[:40]!r}): "
                f"the serializer was probably changed; configure the one that wrote it"
            )
        try:
            return pickle.loads(base64.b64decode(text[len(self.prefix) :], validate=True))
        except Exception as exc:
            raise SerializationError(f"stored pickle value cannot be loaded: {exc}") from None


_JSON = JSONSerializer()
_SERIALIZERS: dict[str, Serializer] = {"json": _JSON, "pickle": PickleSerializer()}


def get_serializer(name: str) -> Serializer:
    """The serializer called ``name``; raises ConfigError for unknown names."""
    try:
        return _SERIALIZERS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(n) for n in _SERIALIZERS)
        raise ConfigError(f"unknown serializer {name!r}: valid names are {valid}") from None


# --- runtime helpers ----------------------------------------------------------------------


def _failure(subject: str, value: Any, exc: Exception, serializer: Serializer) -> SerializationError:
    if isinstance(exc, _Unserializable):
        return SerializationError(exc.describe(subject))
    return SerializationError(
        f"{subject} (type {type(value).__qualname__}) cannot be serialized by the "
        f"{serializer.name!r} serializer: {exc}"
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
    try:
        sig = inspect.signature(func)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return [(f"#{i} (positional)", a) for i, a in enumerate(args)] + [
            (repr(k), v) for k, v in kwargs.items()
        ]
    out: list[tuple[str, Any]] = []
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            out += [(repr(f"*{name}[{i}]"), v) for i, v in enumerate(value)]
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out += [(repr(k), v) for k, v in value.items()]
        else:
            out.append((repr(name), value))
    return out


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
    """Errors always use the JSON encoding (whatever ``serializer`` is) so they stay readable."""
    return _write(_encode_exception(exc))


def deserialize_exception(serializer: Serializer, text: str) -> BaseException:
    """Rebuild a recorded error: its original type when possible, else a RecordedError.

    Either way ``__relos_traceback__`` holds the traceback text recorded when it was raised.
    """
    value = _JSON.loads(text)
    if not isinstance(value, BaseException):
        raise SerializationError(f"stored error is not a relos exception record: {text[:80]!r}")
    return value
