"""Named datasets, as in dask: ``client.publish_dataset(df=future)`` in one program,
``client.get_dataset("df")`` in another.

The scheduler keeps a published dataset's futures alive until it is deleted
(``unpublish_dataset``), also after the client that published it has gone; the data
itself (any picklable object, futures and persisted dask collections inside) is pickled
here and stored there as opaque bytes (``core/scheduler/datasets.py``). Getting it
unpickles it in this client, whose futures then hold the results too.

Both clients get the methods; the blocking one also has ``client.datasets``, a mapping
(``client.datasets["df"] = x``, ``del client.datasets["df"]``, ``"df" in ...``).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from . import protocol as p
from . import serialize
from .config import CLIENT_CALL_TIMEOUT
from .engine.context import binding_futures_to
from .engine.nested import futures_of
from .engine.session import Session
from .errors import ProtocolError

#: ``get_dataset``'s default when none is given: a missing name raises KeyError
_NO_DEFAULT: Any = object()


def _to_publish(args: tuple[Any, ...], name: str | None,
                kwargs: dict[str, Any]) -> dict[str, Any]:
    """dask's two spellings, ``publish_dataset(x=obj)`` and ``publish_dataset(obj,
    name="x")``, as ``{name: data}``.

    Raises:
        ValueError: objects without a name, or a name without an object.
    """
    datasets = dict(kwargs)
    if name is not None:
        if not args:
            raise ValueError("publish_dataset(obj, name='x') needs the object to publish")
        datasets[name] = args[0] if len(args) == 1 else args
    elif args:
        raise ValueError("publish_dataset needs names: publish_dataset(x=obj) or "
                         "publish_dataset(obj, name='x')")
    for key in datasets:
        if not isinstance(key, str) or not key:
            raise ValueError(f"a dataset name must be a non-empty string, got {key!r}")
    return datasets


def _request(data: Any) -> tuple[bytes, list[str]]:
    """What a publish sends: the pickled data and the keys of the futures inside it.

    Raises:
        SerializationError: ``data`` cannot be pickled; says where.
    """
    blob = serialize.dumps_value(data)
    return blob, [f.key for f in futures_of(data)]


def _check(reply: p.DatasetReply, name: str) -> p.DatasetReply:
    if reply.status == "ok":
        return reply
    if reply.status == "missing":
        raise KeyError(f"no dataset named {name!r} (list_datasets() names those there are)")
    if reply.status == "exists":
        raise KeyError(reply.text)
    if reply.status == "invalid":
        raise ValueError(reply.text)
    raise ProtocolError(f"the scheduler answered a dataset request with {reply.status!r}")


def _loads(session: Session, blob: bytes) -> Any:
    with binding_futures_to(session):  # (its futures are this client's, not the default's)
        return serialize.loads_value(blob)


class SyncDatasets:
    """The blocking client's datasets (mixed into ``Client``)."""

    _session: Session

    def _dataset(self, op: str, name: str = "", blob: bytes = b"", keys: list[str] | None = None,
                 override: bool = False) -> p.DatasetReply:
        services = self._session.services
        reply = self._on_loop(  # type: ignore[attr-defined]  # (the client's)
            lambda: services.dataset(op, name, blob, keys or [], override), CLIENT_CALL_TIMEOUT)
        return _check(reply, name)

    def publish_dataset(self, *args: Any, name: str | None = None, override: bool = False,
                        **kwargs: Any) -> None:
        """Publish data under names, for any client of the cluster to get:
        ``publish_dataset(x=future)`` or ``publish_dataset(future, name="x")``. The
        futures inside stay alive until the dataset is unpublished.

        Raises:
            KeyError: a dataset of that name exists (``override=True`` replaces it).
            ValueError: a future inside was released already, or a bad name.
            SerializationError: the data cannot be pickled.
        """
        for key, data in _to_publish(args, name, kwargs).items():
            blob, keys = _request(data)
            self._dataset("publish", key, blob, keys, override)

    def get_dataset(self, name: str, default: Any = _NO_DEFAULT) -> Any:
        """The data published as ``name`` (its futures are this client's now).

        Raises:
            KeyError: there is none (and no ``default`` was given).
        """
        try:
            reply = self._dataset("get", name)
        except KeyError:
            if default is _NO_DEFAULT:
                raise
            return default
        return _loads(self._session, reply.blob)

    def unpublish_dataset(self, name: str) -> None:
        """Delete dataset ``name``; its results are released unless held otherwise.

        Raises:
            KeyError: there is none.
        """
        self._dataset("delete", name)

    def list_datasets(self) -> list[str]:
        """The names of the published datasets, sorted."""
        return list(self._dataset("list").names)

    @property
    def datasets(self) -> DatasetMapping:
        """The published datasets as a mapping (get, set, delete, ``in``, iterate)."""
        return DatasetMapping(self)


class DatasetMapping(MutableMapping[str, Any]):
    """``client.datasets``: the cluster's published datasets, read and written through
    the blocking client (each operation is one request to the scheduler)."""

    def __init__(self, client: SyncDatasets) -> None:
        self._client = client

    def __getitem__(self, name: str) -> Any:
        return self._client.get_dataset(name)

    def __setitem__(self, name: str, data: Any) -> None:
        self._client.publish_dataset(data, name=name, override=True)

    def __delitem__(self, name: str) -> None:
        self._client.unpublish_dataset(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._client.list_datasets())

    def __len__(self) -> int:
        return len(self._client.list_datasets())

    def __contains__(self, name: object) -> bool:
        return name in self._client.list_datasets()


class AsyncDatasets:
    """``AsyncClient``'s datasets: the blocking client's methods, awaited."""

    _session: Session

    async def _dataset(self, op: str, name: str = "", blob: bytes = b"",
                       keys: list[str] | None = None, override: bool = False) -> p.DatasetReply:
        services = self._session.services
        reply = await self._on_trio(  # type: ignore[attr-defined]  # (AsyncioSupport's)
            lambda: services.dataset(op, name, blob, keys or [], override))
        return _check(reply, name)

    async def publish_dataset(self, *args: Any, name: str | None = None,
                              override: bool = False, **kwargs: Any) -> None:
        """See the blocking client's ``publish_dataset``."""
        for key, data in _to_publish(args, name, kwargs).items():
            blob, keys = _request(data)
            await self._dataset("publish", key, blob, keys, override)

    async def get_dataset(self, name: str, default: Any = _NO_DEFAULT) -> Any:
        """See the blocking client's ``get_dataset``."""
        try:
            reply = await self._dataset("get", name)
        except KeyError:
            if default is _NO_DEFAULT:
                raise
            return default
        return _loads(self._session, reply.blob)

    async def unpublish_dataset(self, name: str) -> None:
        """See the blocking client's ``unpublish_dataset``."""
        await self._dataset("delete", name)

    async def list_datasets(self) -> list[str]:
        """The names of the published datasets, sorted."""
        return list((await self._dataset("list")).names)
