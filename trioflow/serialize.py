"""Turning functions, arguments, results and exceptions into bytes and back (cloudpickle).

Only workers and clients import this module; the scheduler never does (a test checks):
it must never unpickle, because unpickling is running code.

* Functions are pickled once per function object and named by a content hash, so a
  10,000-task ``map`` sends the function once per connection and once per worker.
* Futures inside arguments (also in nested lists, tuples, sets and dicts) are replaced
  by ``Dep`` placeholders before pickling; the keys become the task's dependencies and
  the worker swaps the placeholders for values before the call.
* A pickling failure names what could not be pickled and where it sits
  (``fn.__closure__['lock']``, ``args[1]['cfg'].handler``).
"""

from __future__ import annotations

import hashlib
import pickle
import traceback
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

import cloudpickle

from .errors import SerializationError, TaskFailed

PROTOCOL = 5
#: buffers at least this large travel beside the pickle stream, never copied into it
OUT_OF_BAND_MIN = 64 * 1024


class Dep:
    """Placeholder for a future's value inside pickled arguments."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __reduce__(self):
        return (Dep, (self.key,))

    def __repr__(self) -> str:
        return f"Dep({self.key!r})"


def _dumps(obj: Any, buffers: list[Any] | None = None) -> bytes:
    """Pickle with the C pickler when it is safe, else with cloudpickle.

    The C pickler is several times faster for plain data, but it pickles functions and
    classes by reference: anything from ``__main__`` (or local, or a lambda) would not
    exist on the worker. It raises for locals and lambdas; ``__main__`` references are
    found in the output. Either way cloudpickle then pickles them by value.

    With ``buffers``, contiguous buffers of ``OUT_OF_BAND_MIN`` bytes or more that pickle
    offers out of band (protocol 5: numpy arrays, ``PickleBuffer``) are appended to it
    instead of being copied into the stream.
    """
    callback = None if buffers is None else partial(_out_of_band, buffers)
    try:
        blob = pickle.dumps(obj, protocol=PROTOCOL, buffer_callback=callback)
    except Exception:
        blob = b"__main__"
    if b"__main__" in blob:
        if buffers is not None:
            buffers.clear()  # the first attempt's buffers
        return cloudpickle.dumps(obj, protocol=PROTOCOL, buffer_callback=callback)
    return blob


def _out_of_band(buffers: list[Any], pb: pickle.PickleBuffer) -> bool:
    try:
        raw = pb.raw()
    except BufferError:  # not contiguous: let pickle copy it in-band
        return True
    if raw.nbytes < OUT_OF_BAND_MIN:
        return True  # a false value means "out of band"
    buffers.append(raw)
    return False


# ------------------------------------------------------------------ functions

_weak_fn_cache: weakref.WeakKeyDictionary[Any, tuple[str, bytes]] = weakref.WeakKeyDictionary()
_strong_fn_cache: dict[int, tuple[Any, str, bytes]] = {}  # builtins cannot be weakly referenced


def dumps_function(fn: Callable[..., Any]) -> tuple[str, bytes]:
    """``(fn_id, blob)`` for ``fn``, cached per function object.

    Raises:
        SerializationError: ``fn`` cannot be pickled; says where the culprit sits.
    """
    try:
        return _weak_fn_cache[fn]
    except (KeyError, TypeError):
        pass
    hit = _strong_fn_cache.get(id(fn))
    if hit is not None and hit[0] is fn:
        return hit[1], hit[2]
    try:
        blob = cloudpickle.dumps(fn, protocol=PROTOCOL)
    except Exception as exc:
        raise SerializationError(describe_unpicklable(fn, "function", exc)) from exc
    fn_id = hashlib.blake2b(blob, digest_size=12).hexdigest()
    try:
        _weak_fn_cache[fn] = (fn_id, blob)
    except TypeError:
        if len(_strong_fn_cache) < 4096:
            _strong_fn_cache[id(fn)] = (fn, fn_id, blob)
    return fn_id, blob


def loads_function(blob: bytes) -> Callable[..., Any]:
    return pickle.loads(blob)


# ------------------------------------------------------------------ arguments

_CONTAINERS = (list, tuple, dict, set, frozenset)
#: how deep inside nested arguments futures are found (deeper ones are pickled as they are)
_MAX_DEPTH = 20


def is_namedtuple(obj: Any) -> bool:
    """A namedtuple (a tuple subclass with ``_fields``): futures inside it are found too,
    as in a tuple, and it is rebuilt as its own type (``type(obj)(*fields)``)."""
    return isinstance(obj, tuple) and type(obj) is not tuple and hasattr(type(obj), "_fields")


def _may_hold_futures(obj: Any, is_future: Callable[[Any], bool]) -> bool:
    return is_future(obj) or type(obj) in _CONTAINERS or is_namedtuple(obj)


#: what a ``map_nested`` callback returns for "not a leaf of mine: look inside"
DESCEND: Any = object()


def map_nested(obj: Any, leaf: Callable[[Any], Any], max_depth: int = 20,
               _depth: int = 0) -> Any:
    """``obj`` rebuilt with ``leaf(x)`` in place of each ``x`` inside it for which
    ``leaf`` does not return ``DESCEND``: through lists, tuples, sets, frozensets,
    namedtuples (as their own type) and dict values, ``max_depth`` levels deep.

    The one walk of nested arguments and results: futures become placeholders when a
    task is pickled (``dumps_payload``), placeholders become values when it runs
    (``loads_payload``), futures become values in ``gather`` (``engine/nested.py``).
    """
    found = leaf(obj)
    if found is not DESCEND:
        return found
    if _depth >= max_depth:
        return obj
    t = type(obj)
    d = _depth + 1
    if t is list:
        return [map_nested(x, leaf, max_depth, d) for x in obj]
    if t is tuple:
        return tuple(map_nested(x, leaf, max_depth, d) for x in obj)
    if t is dict:
        return {k: map_nested(v, leaf, max_depth, d) for k, v in obj.items()}
    if t is set or t is frozenset:
        return t(map_nested(x, leaf, max_depth, d) for x in obj)
    if is_namedtuple(obj):
        return t(*(map_nested(x, leaf, max_depth, d) for x in obj))
    return obj


#: argument types that hold no future and no buffer worth sending out of band
_SCALARS = frozenset({int, float, str, bool, type(None), complex})


def dumps_scalars(args: tuple[Any, ...]) -> bytes | None:
    """The pickled ``(args, {})`` when every argument is a scalar, else None.

    The common task (``submit(f, 17)``, a ``map`` over numbers or names) needs neither
    the search for futures nor the one for large arguments: about ten calls a task.
    (A large ``str`` stays inline here, as it would there: ``buffer_size`` has no size
    for it, and the payload's own size sends it out of band.)"""
    for a in args:
        if type(a) not in _SCALARS:
            return None
    return _dumps((args, {}))


def dumps_payload(
    args: tuple[Any, ...], kwargs: dict[str, Any], is_future: Callable[[Any], bool]
) -> tuple[bytes, list[str]]:
    """Pickle ``(args, kwargs)`` with futures replaced by placeholders.

    Returns:
        The blob and the keys of the futures found (the task's dependencies).

    Raises:
        SerializationError: an argument cannot be pickled; says which and where.
    """
    deps: list[str] = []
    if any(_may_hold_futures(a, is_future) for a in args) or any(
        _may_hold_futures(v, is_future) for v in kwargs.values()
    ):
        def placeholder(obj: Any) -> Any:
            if not is_future(obj):
                return DESCEND
            deps.append(obj.key)
            return Dep(obj.key)

        args = map_nested(args, placeholder, _MAX_DEPTH + 1)
        kwargs = map_nested(kwargs, placeholder, _MAX_DEPTH + 1)
    try:
        blob = _dumps((args, kwargs))
    except Exception as exc:
        culprit = None
        for i, a in enumerate(args):
            if _fails(a):
                culprit = describe_unpicklable(a, f"args[{i}]", exc)
                break
        else:
            for k, v in kwargs.items():
                if _fails(v):
                    culprit = describe_unpicklable(v, f"kwargs[{k!r}]", exc)
                    break
        raise SerializationError(culprit or f"cannot pickle the arguments: {exc}") from exc
    return blob, list(dict.fromkeys(deps))


def loads_payload(blob: bytes, values: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Unpickle ``(args, kwargs)`` and put dependency values where the futures were."""
    args, kwargs = pickle.loads(blob)
    if values:
        def value(obj: Any) -> Any:
            return values[obj.key] if type(obj) is Dep else DESCEND

        args = map_nested(args, value, _MAX_DEPTH + 1)
        kwargs = map_nested(kwargs, value, _MAX_DEPTH + 1)
    return args, kwargs


# ------------------------------------------------------------------ results and data


def dumps_value(value: Any) -> bytes:
    """Pickle a result or scattered value.

    Raises:
        SerializationError: naming the culprit inside ``value``.
    """
    try:
        return _dumps(value)
    except Exception as exc:
        raise SerializationError(describe_unpicklable(value, "result", exc)) from exc


def loads_value(blob: bytes | list[Any]) -> Any:
    """A value from its pickled bytes, or from the frames of :func:`dumps_frames`."""
    if isinstance(blob, list):
        return loads_frames(blob)
    return pickle.loads(blob)


# The first frame says how to read the rest. A pickle (protocol >= 2) starts with the
# PROTO opcode 0x80, so these one-byte markers cannot be mistaken for one.
_RAW_BYTES = b"B"
_RAW_BYTEARRAY = b"A"
#: the first frame of a plain ``bytes`` value (readers may read its data into ``bytes``)
RAW_BYTES = _RAW_BYTES


def dumps_frames(value: Any) -> list[Any]:
    """Serialize ``value`` for the bulk data path without copying its large buffers.

    Returns frames: the first is a pickle stream (or a marker for a plain ``bytes`` or
    ``bytearray`` value), the others are the value's large buffers as they sit in memory
    (pickle protocol 5 out-of-band buffers: numpy arrays, PickleBuffers; a bytearray
    nested inside other data is pickled in-band, as pickle does).
    The frames stay valid as long as ``value`` is not mutated.

    Raises:
        SerializationError: naming the culprit inside ``value``.
    """
    t = type(value)
    if t is bytes or t is memoryview:
        return [_RAW_BYTES, value]
    if t is bytearray:
        return [_RAW_BYTEARRAY, value]
    buffers: list[Any] = []
    try:
        stream = _dumps(value, buffers)
    except Exception as exc:
        raise SerializationError(describe_unpicklable(value, "value", exc)) from exc
    return [stream, *buffers]


def loads_frames(frames: list[Any]) -> Any:
    """The value :func:`dumps_frames` made these frames from (buffers are not copied)."""
    head = frames[0]
    if head == _RAW_BYTES:
        buf = frames[1]
        if type(buf) is memoryview and type(buf.obj) is bytes and buf.nbytes == len(buf.obj):
            return buf.obj  # read into a bytes object of its own (shared memory): no copy
        return bytes(buf)
    if head == _RAW_BYTEARRAY:
        buf = frames[1]
        if type(buf) is memoryview and type(buf.obj) is bytearray and buf.nbytes == len(buf.obj):
            return buf.obj  # received into a bytearray of its own: hand that over
        return bytearray(buf)
    return pickle.loads(head, buffers=frames[1:])


def _refuse(text: str) -> Any:
    raise SerializationError(text)


class _Refusal:
    """Pickles to a call of ``_refuse``: unpickling it raises SerializationError."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_refuse, (self.text,))


def refusal_frames(text: str) -> list[Any]:
    """Frames that stand for a value which could not be serialized: whoever rebuilds
    them (a client's gather, a peer's run) gets ``SerializationError(text)``."""
    return [pickle.dumps(_Refusal(text), protocol=PROTOCOL)]


#: types that never carry a buffer: ``buffer_size`` answers for them without a failed
#: ``getattr`` (an exception inside, ~1 us: it runs for every argument of every submit)
_NO_BUFFER = frozenset({int, float, str, bool, type(None), tuple, list, dict, complex})


def buffer_size(value: Any) -> int | None:
    """The size of a value's data if it says so cheaply (bytes, arrays), else None."""
    if type(value) in _NO_BUFFER:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return memoryview(value).nbytes
    nbytes = getattr(value, "nbytes", None)
    return nbytes if isinstance(nbytes, int) else None


def frames_nbytes(frames: list[Any]) -> int:
    return sum(memoryview(f).nbytes for f in frames)


def type_name(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


# ------------------------------------------------------------------ exceptions


def dumps_exception(exc: BaseException) -> tuple[bytes, str, str, str]:
    """``(blob, type name, text, traceback text)``; blob is b"" if it will not pickle."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = cloudpickle.dumps(exc, protocol=PROTOCOL)
        pickle.loads(blob)  # some exceptions pickle but cannot be rebuilt
    except Exception:
        blob = b""
    return blob, type_name(exc), str(exc), tb


class RemoteTraceback(Exception):
    """Carries a worker's formatted traceback as the ``__cause__`` of a re-raised error."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return "\n\n" + self.tb


def loads_exception(key: str, blob: bytes, type_name_: str, text: str, tb: str) -> BaseException:
    """The original exception if it can be rebuilt here, else ``TaskFailed``."""
    exc: BaseException | None = None
    if blob:
        try:
            exc = pickle.loads(blob)
        except Exception:
            exc = None
    if not isinstance(exc, Exception):
        # not rebuilt, or a BaseException (SystemExit, KeyboardInterrupt, ...): raised
        # here it would end the program that waits on the task, not just the task
        return TaskFailed(key, type_name_, text, tb)
    if tb and exc.__cause__ is None:
        exc.__cause__ = RemoteTraceback(tb)
    return exc


# ------------------------------------------------------------------ diagnostics


def _fails(obj: Any) -> bool:
    try:
        cloudpickle.dumps(obj, protocol=PROTOCOL)
    except Exception:
        return True
    return False


def _children(obj: Any) -> list[tuple[str, Any]]:
    """Named parts of ``obj`` that pickling it would also pickle."""
    out: list[tuple[str, Any]] = []
    code = getattr(obj, "__code__", None)
    if code is not None:  # a function
        for name, cell in zip(code.co_freevars, obj.__closure__ or ()):
            try:
                out.append((f".__closure__[{name!r}]", cell.cell_contents))
            except ValueError:
                pass
        globs = getattr(obj, "__globals__", {})
        for name in code.co_names:
            if name in globs:
                out.append((f".__globals__[{name!r}]", globs[name]))
        for i, d in enumerate(getattr(obj, "__defaults__", None) or ()):
            out.append((f".__defaults__[{i}]", d))
        return out
    if isinstance(obj, dict):
        return [(f"[{k!r}]", v) for k, v in obj.items()]
    if isinstance(obj, list | tuple):
        return [(f"[{i}]", v) for i, v in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        return [(f"<item {i}>", v) for i, v in enumerate(obj)]
    for attr in ("func", "args", "keywords"):  # functools.partial
        if hasattr(obj, attr) and type(obj).__name__ == "partial":
            out.append((f".{attr}", getattr(obj, attr)))
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        out.extend((f".{k}", v) for k, v in d.items())
    return out


def describe_unpicklable(obj: Any, name: str, exc: BaseException, depth: int = 0) -> str:
    """Find the innermost part of ``obj`` that fails to pickle and say where it is."""
    path, culprit, culprit_exc = name, obj, exc
    for _ in range(8):
        for suffix, child in _children(culprit):
            if _fails(child):
                path += suffix
                culprit = child
                try:
                    cloudpickle.dumps(child, protocol=PROTOCOL)
                except Exception as e:
                    culprit_exc = e
                break
        else:
            break
    kind = type(culprit).__qualname__
    return (
        f"cannot pickle {path} (a {kind}): {culprit_exc}. Functions and arguments travel to "
        "workers with cloudpickle: create such objects inside the task, or pass what is "
        "needed to build them."
    )
