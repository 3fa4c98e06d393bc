"""The fast online read: a feature service's values for one request, read straight from the Feast
online store's tables (SQLite) or hashes (Redis), equal to ``get_online_features``.

Feast's ``get_online_features`` resolves the service in the registry, builds entity-key protos and
parses a ``ValueProto`` per value on every call: 16-21 ms for 100 candidates here. This reader
resolves the service once, serializes entity keys as Feast does (``serialize_entity_key``,
version 3), reads every view of the request in one round trip (one ``HMGET`` per view and Redis
hash, all pipelined; one query per SQLite table) and decodes numbers without protobuf. Values
read are kept in memory for ``CACHE_SECONDS`` (the ``CACHE_KEYS`` keys of each view read last): a
materialized value reaches serving at most that late. An on-demand view whose function hands its
inputs to a row-wise transformation of ``shoprank.features.transforms`` runs that transformation's
form over Python values (no DataFrame: microseconds instead of a millisecond); any other runs its
own function on the inputs Feast gives it. ``tests/data/test_online_read.py`` compares both paths on
random requests (at request times in whole seconds, as the service's clock gives them: Feast's
online read cuts request times to seconds before its on-demand views, training frames do not).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import queue
import re
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import hiredis
import pandas as pd
import polars as pl
import pyarrow as pa
from feast import FeatureStore
from feast.infra.online_stores.helpers import _mmh3, compute_table_id
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from serving.features import NO_KEY, one_object, transpose
from shoprank.errors import ContractError, FeatureStoreError, described
from shoprank.features import online_rows, transforms
from shoprank.features.online_redis import Wire
from shoprank.features.store import online_store_kind
from training.plan import OnDemandPlan, ServicePlan

CACHE_SECONDS = 60.0  # how long a value read from the store is served from memory
CACHE_KEYS = 50_000  # keys of a view kept in memory (the least recently read forgotten first)
BUDGET_SECONDS = 0.02  # a read's default budget (connect included): past it the request takes the fallback
MEMO_ROWS = 200_000  # on-demand outputs remembered per view, by their input row
SQLITE_LOCK_SECONDS = 0.002  # how long a SQLite read waits for a writer's lock (then: the fallback)
_SQLITE_STEPS = 1000  # SQLite virtual machine steps between two checks of a read's deadline
_DOUBLE, _INT64 = ValueType.DOUBLE, ValueType.INT64
# a view function that only hands its inputs to a transformation of ``shoprank.features.transforms``
_DELEGATING = re.compile(r":\n\s+from shoprank\.features\.transforms import (\w+)\n\s*return \1\(inputs\)\s*$")


@dataclass(frozen=True)
class _View:
    """One feature view as stored online.

    Attributes:
        name: Its stored name (Redis field prefix, SQLite table suffix).
        keys: Its join keys (sorted, as Feast serializes them) and the request column of each.
        features: The features read, with their value types.
    """

    name: str
    keys: tuple[tuple[str, str], ...]
    features: tuple[tuple[str, ValueType], ...]

    def key_header(self) -> bytes:
        """The start of its serialized entity keys: the key count and names."""
        return online_rows.entity_key_header([name for name, _ in self.keys])


class OnlineReader:
    """Reads one feature service's online values for request rows (thread-safe)."""

    def __init__(self, store: FeatureStore, plan: ServicePlan, budget: float = BUDGET_SECONDS) -> None:
        self.plan, self.budget = plan, budget
        registry = {view.name: view for view in store.list_feature_views()}
        self.views = [_stored_view(registry, view) for view in plan.views]
        self._headers = [view.key_header() for view in self.views]
        self._tables = _tables(store, registry, self.views, budget)
        self._caches = [_Fresh() for _ in self.views]
        self._columns = [view.columns for view in plan.views]
        self._features = plan.features
        self._row_wise = {odfv.view.name: _values_form(odfv.view) for odfv in plan.on_demand}
        self._short_names = {odfv.view.name: _short_names(odfv.view) for odfv in plan.on_demand}
        # outputs of the other views, by input row
        self._memo: dict[str, dict[tuple, tuple]] = {name: {} for name, form in self._row_wise.items() if form is None}
        self._memo_lock = threading.Lock()

    def close(self) -> None:
        self._tables.close()

    def forget_absent(self) -> None:
        """Drop the values kept in memory as absent from the store (read while it was
        emptied or lacked a table): the next reads ask the store for those again. Values read
        present stay (the store answered them; they age out after ``CACHE_SECONDS``), and so do
        on-demand outputs (a function of their inputs): a recovered store is not read cold."""
        for cache in self._caches:
            cache.drop_absent()

    def forget(self) -> None:
        """Drop what is kept in memory (the views' values, on-demand outputs): the next reads go
        to the store."""
        self._caches = [_Fresh() for _ in self.views]
        with self._memo_lock:
            for memo in self._memo.values():
                memo.clear()

    def read(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` with the service's features appended, as ``serving.features.online_features``
        returns them.

        Raises:
            ContractError: ``rows`` lack an entity column the service needs.
            FeatureStoreError: The store failed or did not answer within the reader's budget.
        """
        given = {column: rows[column].to_list() for column in self.plan.entity_columns if column in rows.columns}
        values = pl.DataFrame(self.features(given), strict=False)
        if values.height != rows.height:
            values = pl.DataFrame(schema=values.schema)  # a service of on-demand features only
        return pl.concat([rows, values], how="horizontal")

    def features(self, rows: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """The service's features (Python values by column, in the service's order) of request rows
        given as columns (``serving.features.RequestRows.columns``), the store read within the
        reader's budget.

        Raises:
            ContractError: ``rows`` lack an entity column the service needs.
            FeatureStoreError: The store failed or did not answer within the budget.
        """
        wanted, finish = self._pending(rows)
        deadline = time.monotonic() + self.budget
        return finish(self._tables.read(wanted, deadline) if wanted else [])

    async def features_async(self, rows: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """``features`` for the event loop: a Redis round trip is awaited (the loop serves other
        requests meanwhile), a SQLite read runs in place; either within the reader's budget."""
        wanted, finish = self._pending(rows)
        deadline = time.monotonic() + self.budget
        return finish(await self._tables.read_async(wanted, deadline) if wanted else [])

    def held(self, view: str, keys: list[bytes], budget: float | None = None) -> int:
        """How many of ``keys`` (serialized entity keys, as Feast stores them) the store holds
        values of ``view`` for, read within ``budget`` seconds (default: the reader's).

        Raises:
            FeatureStoreError: The store failed or did not answer within the budget.
        """
        [stored] = [each for each in self.views if each.name == view]
        [values] = self._tables.read([(stored, keys)], time.monotonic() + (budget or self.budget))
        return sum(value is not None for value in values)

    def _pending(self, rows: dict[str, list[Any]]) -> tuple[list[tuple[_View, list[bytes]]], Callable]:
        """What the store must be asked for ``rows`` (each view and its keys not kept in memory),
        and what turns its answer into the service's features."""
        missing = [column for column in self.plan.entity_columns if column not in rows]
        if missing:
            raise ContractError(
                f'Feature service "{self.plan.service}" needs request column(s) {missing}; add them to the rows'
            )
        given = {column: rows[column] for column in self.plan.entity_columns}
        keys = [list(zip(*(given[column] for _, column in view.keys), strict=True)) for view in self.views]
        now = time.monotonic()
        kept, asked = self._kept(keys, now)
        wanted = [(self.views[index], _keys(self._headers[index], missing)) for index, missing in asked]

        def finish(read: list[list[list[bytes | None] | None]]) -> dict[str, list[Any]]:
            columns = dict(given)
            values = self._merged(kept, asked, read, now)
            for names, view_keys, by_key in zip(self._columns, keys, values, strict=True):
                per_row = list(map(by_key.__getitem__, view_keys))
                columns.update(zip(names, transpose(per_row, len(names)), strict=True))
            for odfv in self.plan.on_demand:
                columns.update(self._on_demand(odfv, columns))
            return {name: columns[name] for name in self._features}

        return wanted, finish

    def _on_demand(self, odfv: OnDemandPlan, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """One on-demand view's outputs for every row: a row-wise transformation in its form over
        Python values; any other from its function run on the distinct input rows not seen
        before (its outputs depend on its own row only, as in training)."""
        values_form, short_names = self._row_wise[odfv.view.name], self._short_names[odfv.view.name]
        if values_form is not None:
            return _row_wise(odfv, values_form, short_names, columns)
        names = [*odfv.sources, *odfv.requests]
        distinct: dict[tuple, int] = {}  # each input row hashed once: many are alike (one user, one time)
        slots = [
            distinct.setdefault(row, len(distinct)) for row in zip(*(columns[name] for name in names), strict=True)
        ]
        memo = self._memo[odfv.view.name]
        with self._memo_lock:
            outputs = list(map(memo.get, distinct))
        unseen = [row for row, output in zip(distinct, outputs, strict=True) if output is None]
        if unseen:
            computed = dict(zip(unseen, _transform(odfv, short_names, names, unseen), strict=True))
            outputs = [
                computed[row] if output is None else output for row, output in zip(distinct, outputs, strict=True)
            ]
            with self._memo_lock:
                memo.update(computed)
                if len(memo) > MEMO_ROWS:  # forget the oldest half
                    for row in list(itertools.islice(memo, len(memo) - MEMO_ROWS // 2)):
                        del memo[row]
        return {column: [outputs[slot][index] for slot in slots] for index, column in enumerate(odfv.columns)}

    def _kept(self, keys: list[list[tuple]], now: float) -> tuple[list[dict], list[tuple[int, list[tuple]]]]:
        """Each view's values kept in memory and fresh, by distinct key of its rows (None: none
        kept), and the views' keys to read from the store (by view index)."""
        kept, asked = [], []
        for index, (cache, view_keys) in enumerate(zip(self._caches, keys, strict=True)):
            distinct = list(dict.fromkeys(view_keys))
            values = dict(zip(distinct, cache.get(distinct, now - CACHE_SECONDS), strict=True))
            kept.append(values)
            if None in values.values():
                asked.append((index, [key for key, value in values.items() if value is None]))
        return kept, asked

    def _merged(self, kept: list[dict], asked, read, now: float) -> list[dict]:
        """Each view's decoded values by key (all None: not stored): ``kept`` completed by what
        the store ``read`` for the ``asked`` keys (kept from ``now`` on)."""
        for (index, missing), blobs in zip(asked, read, strict=True):
            kinds = [kind for _, kind in self.views[index].features]
            nothing = (None,) * len(kinds)
            decoded = [nothing if row is None else tuple(map(_decode, row, kinds)) for row in blobs]
            values = dict(zip(missing, decoded, strict=True))
            self._caches[index].put(values, now)
            kept[index].update(values)
        return kept


class _Fresh:
    """Values kept in memory since they were read (thread-safe). Kept in the order read, so the
    stale ones, and the oldest past ``CACHE_KEYS``, are at the front: each lookup first drops the
    stale ones."""

    def __init__(self) -> None:
        self._values: dict[tuple, tuple] = {}
        self._read: dict[tuple, float] = {}  # when each was read, oldest first
        self._lock = threading.Lock()

    def get(self, keys: list[tuple], stale: float) -> list[tuple | None]:
        """The value of each key, None where it is not kept or was read at ``stale`` or before."""
        with self._lock:
            if next(iter(self._read.values()), math.inf) <= stale:
                for key in list(itertools.takewhile(lambda key: self._read[key] <= stale, self._read)):
                    del self._values[key], self._read[key]
            return list(map(self._values.get, keys))

    def drop_absent(self) -> None:
        """Forget the values that are all missing."""
        with self._lock:
            for key in [key for key, value in self._values.items() if value.count(None) == len(value)]:
                del self._values[key], self._read[key]

    def put(self, values: dict[tuple, tuple], now: float) -> None:
        """Keep ``values`` (by key), read at ``now``; past ``CACHE_KEYS`` keys, forget the oldest read."""
        with self._lock:
            for key, value in values.items():
                self._read.pop(key, None)  # to the back
                self._read[key] = now
                self._values[key] = value
            if len(self._read) > CACHE_KEYS:
                for key in list(itertools.islice(self._read, len(self._read) - CACHE_KEYS)):
                    del self._values[key], self._read[key]


def _transform(odfv: OnDemandPlan, short_names: dict[str, str], names: list[str], rows: list[tuple]) -> list[tuple]:
    """The view's outputs of each input row, as Feast's ``transform_arrow`` gives them: its
    function run on the rows as Arrow turns them into pandas (each source feature under its short
    name too, ``short_names``), NaN and NaT read back as None. Called without Feast's own Arrow round trip around it,
    which costs 2 ms for one row."""
    view = odfv.view
    inputs = {name: pa.array(list(values)) for name, values in zip(names, zip(*rows, strict=True), strict=True)}
    if view.mode != "pandas":  # Feast's own call
        done = view.transform_arrow(pa.table(inputs), True)
        return list(zip(*(done[column].to_pylist() for column in odfv.columns), strict=True))
    for long, short in short_names.items():
        inputs.setdefault(short, inputs[long])  # one array, as Feast does
    done = view.feature_transformation.udf(pa.table(inputs).to_pandas(split_blocks=True))
    prefix = f"{view.projection.name_to_use()}__"
    outputs = [done[c] if c in done else done[c.removeprefix(prefix)] for c in odfv.columns]  # long or short names
    return list(zip(*map(_python_values, outputs), strict=True))


def _short_names(view) -> dict[str, str]:
    """The short name of each source feature the view reads, by its long one
    (``<source>__<feature>``): a view's function receives both, as Feast gives them."""
    return {
        f"{source.name}__{feature.name}": feature.name
        for source in view.source_feature_view_projections.values()
        for feature in source.features
    }


def _python_values(output: pd.Series) -> list[Any]:
    """A pandas output column's values as Arrow reads them back (``from_pandas``: NaN is None)."""
    if output.dtype.kind in "biuf":  # NumPy numbers: the same values without Arrow
        return transforms.python_values(output.to_numpy())
    return pa.array(output, from_pandas=True).to_pylist()


def _values_form(view) -> Callable[[dict], dict] | None:
    """The form over Python values (``transforms.VALUES``) of the row-wise transformation the
    view's function hands its inputs to unchanged; None for any other function (Feast's path)."""
    udf_string = view.feature_transformation.udf_string if view.mode == "pandas" else ""
    match = _DELEGATING.search(udf_string or "")
    return transforms.VALUES.get(match.group(1)) if match else None


def _row_wise(
    odfv: OnDemandPlan, values_form: Callable[[dict], dict], short_names: dict[str, str], columns: dict[str, list[Any]]
) -> dict:
    """A row-wise view's outputs from its transformation's form over Python values, given its
    inputs as its function receives them (each source feature under its short name,
    ``short_names``). Inputs that are one object on every row (one user's, the request's) are
    transformed once."""
    view = odfv.view
    inputs = {name: columns[name] for name in odfv.requests}
    inputs.update({short: columns[long] for long, short in short_names.items()})
    rows = len(next(iter(inputs.values())))
    alike = rows > 1 and all(map(one_object, inputs.values()))
    done = values_form({name: values[:1] for name, values in inputs.items()} if alike else inputs)
    prefix = f"{view.projection.name_to_use()}__"
    return {column: done[column.removeprefix(prefix)] * (rows if alike else 1) for column in odfv.columns}


def _keys(header: bytes, rows: list[tuple]) -> list[bytes]:
    """Feast's ``serialize_entity_key`` (version 3) of each row's string join key values, after
    ``header``."""
    return [header + b"".join(map(_key_part, row)) for row in rows]


@lru_cache(maxsize=1 << 17)
def _key_part(value: str | None) -> bytes:
    """One join key value as serialized in entity keys (a missing one is ``NO_KEY``)."""
    return online_rows.key_part(NO_KEY if value is None else value)


def _decode(blob: bytes | None, kind: ValueType) -> Any:
    """A ``ValueProto``'s Python value as Feast's ``to_dict`` gives it; numbers without protobuf."""
    if not blob:
        return None
    if kind is _DOUBLE and blob[0] == 0x29:
        return struct.unpack_from("<d", blob, 1)[0]
    if kind is _INT64 and blob[0] == 0x20:
        number, shift = 0, 0
        for byte in blob[1:]:
            number |= (byte & 0x7F) << shift
            shift += 7
        return number - (1 << 64) if number >= 1 << 63 else number
    return feast_value_type_to_python_type(ValueProto.FromString(blob), kind)


def _stored_view(registry: dict, view) -> _View:
    """How ``view`` (a plan's view) is stored online."""
    stored = registry.get(view.name)
    if stored is None:
        raise FeatureStoreError(f'Feature view "{view.name}" is not registered; run "shoprank features apply"')
    kinds = {field.name: field.dtype.to_value_type() for field in stored.features}
    keys = tuple(sorted(view.join_keys.items()))
    return _View(stored.name, keys, tuple((name, kinds[name]) for name in view.features))


def _tables(store: FeatureStore, registry: dict, views: list[_View], budget: float) -> _SqliteTables | _RedisHashes:
    """The reader of the store's online store type (``registry``: its feature views by name;
    ``budget``: a read's, of which a SQLite read waits ``SQLITE_LOCK_SECONDS`` at most for a writer's lock).

    Raises:
        FeatureStoreError: The online store is neither SQLite nor Redis.
    """
    kind = online_store_kind(store)
    if kind == "sqlite":
        return _SqliteTables(store, registry, views, min(budget, SQLITE_LOCK_SECONDS))
    if kind == "redis":
        return _RedisHashes(store, views)
    raise FeatureStoreError(f'The fast online read supports SQLite and Redis, not "{kind}"; use online_features()')


class _SqliteTables:
    """Reads views from Feast's SQLite online store: one query per table for its keys' rows (one
    seek a key: 10-30% faster than a seek per key and feature), a connection per thread.
    A read is bounded by its deadline: it waits ``busy`` seconds at most for a writer that holds the
    file (a materialization committing; the read runs on the event loop, so it must not wait long),
    and its query is interrupted at the deadline (a progress handler)."""

    def __init__(self, store: FeatureStore, registry: dict, views: list[_View], busy: float) -> None:
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        config = store.config
        self.path, self.busy = SqliteOnlineStore._get_db_path(config), busy
        versioned = config.registry.enable_online_feature_view_versioning
        self.tables = {view.name: compute_table_id(config.project, registry[view.name], versioned) for view in views}
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []  # every thread's, to close them all
        self._opening = threading.Lock()

    def close(self) -> None:
        with self._opening:
            for conn in self._opened:
                conn.close()
            self._opened.clear()

    def read(self, wanted: Iterable[tuple[_View, list[bytes]]], deadline: float) -> list[list[list[bytes | None]]]:
        """For each view and its keys: each key's value blobs in feature order (None: not stored).

        Raises:
            FeatureStoreError: A table is missing or unreadable, or the deadline passed.
        """
        try:
            conn = self._connection()
        except sqlite3.Error as exc:
            raise FeatureStoreError(f"Online store {self.path} cannot be opened: {exc}") from exc
        conn.set_progress_handler(lambda: time.monotonic() > deadline, _SQLITE_STEPS)
        results = []
        try:
            for view, keys in wanted:
                names = [name for name, _ in view.features]
                marks = ",".join("?" * len(keys))
                try:  # every feature of the keys (one seek a key), those not read skipped here
                    rows = conn.execute(
                        f'SELECT entity_key, feature_name, value FROM "{self.tables[view.name]}" '
                        f"WHERE entity_key IN ({marks})",
                        keys,
                    ).fetchall()
                except sqlite3.Error as exc:
                    raise self._failed(view.name, exc, deadline) from exc
                position = {name: index for index, name in enumerate(names)}
                by_key: dict[bytes, list[bytes | None]] = {}
                for key, name, value in rows:
                    if (index := position.get(name)) is not None:
                        by_key.setdefault(key, [None] * len(names))[index] = value
                results.append([by_key.get(key) for key in keys])
        finally:
            conn.set_progress_handler(None, 0)
        return results

    async def read_async(self, wanted: Iterable[tuple[_View, list[bytes]]], deadline: float) -> list:
        """``read`` (a file of this process: read in place, within the same deadline)."""
        return self.read(wanted, deadline)

    def _failed(self, view: str, exc: sqlite3.Error, deadline: float) -> FeatureStoreError:
        """The error of a failed read of ``view``'s table, with the fix when it is missing."""
        table = self.tables[view]
        if f"no such table: {table}" in str(exc):
            return FeatureStoreError(
                f'Online table "{table}" of view "{view}" is missing in {self.path}; '
                f'refill it with "shoprank features materialize --rebuild --view {view}"'
            )
        late = " (past the read's budget)" if time.monotonic() > deadline else ""
        return FeatureStoreError(f'Online table of view "{view}" unreadable in {self.path}: {exc}{late}')

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # used by its thread only; closed by whichever thread closes the reader
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self.busy, check_same_thread=False)
            self._local.conn = conn
            with self._opening:
                self._opened.append(conn)
        return conn


class _RedisHashes:
    """Reads views from Feast's Redis online store: one ``HMGET`` per view and entity hash (views
    sharing an entity key share its hash), all pipelined on one connection per request. Connecting
    and every reply are bounded by the read's deadline (a connection whose read failed or ran out
    of time is closed: its replies may still come); redis-py's retries are off."""

    def __init__(self, store: FeatureStore, views: list[_View]) -> None:
        from feast.infra.online_stores.redis import RedisOnlineStore, RedisType

        self.online = store.config.online_store
        if self.online.redis_type != RedisType.redis:
            raise FeatureStoreError(
                f'The fast online read supports a single Redis, not "{self.online.redis_type}"; use online_features()'
            )
        self.project = store.config.project.encode()
        self._feast = RedisOnlineStore()
        fields = {view.name: [_mmh3(f"{view.name}:{name}") for name, _ in view.features] for view in views}
        # of each view's HMGET: its length (the command, the key, the fields) and its fields
        self._arguments = {name: (2 + len(each), b"".join(map(_bulk, each))) for name, each in fields.items()}
        self._idle: queue.SimpleQueue = queue.SimpleQueue()  # blocking connections (``read``)
        self._idle_async: list[tuple[Any, Any, Any]] = []  # event loops' (``read_async``): loop, connection, parser

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get().close()
        self._drop_idle_async()

    def read(self, wanted: Iterable[tuple[_View, list[bytes]]], deadline: float) -> list[list[list[bytes | None]]]:
        """For each view and its keys: each key's value blobs in feature order (None: not stored).
        An idle connection Redis has closed is dropped with the other idle ones, and the read
        retried once on a new connection.

        Raises:
            FeatureStoreError: Redis failed or did not answer by the deadline.
        """
        wanted = list(wanted)
        commands, count = self._commands(wanted)
        wire = None
        try:
            try:
                wire = self._idle.get_nowait()
                wire.sock.settimeout(_left(deadline))
                replies = _sent(wire, commands, count)
            except queue.Empty:
                wire = None
            except (OSError, ConnectionError):  # closed while idle: so are the others
                wire.close()
                while not self._idle.empty():
                    self._idle.get().close()
                wire = None
            if wire is None:
                connection = self._feast._get_client(self.online).connection_pool.make_connection()
                connection.retry = Retry(NoBackoff(), 0)
                connection.socket_connect_timeout = connection.socket_timeout = _left(deadline)
                connection.connect()
                wire = Wire(connection._sock, connection)
                wire.sock.settimeout(_left(deadline))
                replies = _sent(wire, commands, count)
        except (OSError, ConnectionError, RedisError, ValueError) as exc:
            if wire is not None:
                wire.close()
            raise self._failed(exc, deadline) from exc
        self._idle.put(wire)
        return self._split(wanted, replies)

    async def read_async(self, wanted: Iterable[tuple[_View, list[bytes]]], deadline: float) -> list:
        """``read`` on the event loop: the round trip awaited, the loop free meanwhile. An idle
        connection Redis has closed (it restarted) is dropped with the other idle ones, and the
        read retried once on a new connection."""
        wanted = list(wanted)
        commands, count = self._commands(wanted)
        loop = asyncio.get_running_loop()
        self._idle_async = [idle for idle in self._idle_async if idle[0] is loop]  # a connection is its loop's
        connection, replies = None, []
        try:
            try:
                async with asyncio.timeout(_left(deadline)):
                    if self._idle_async:
                        _, connection, parser = self._idle_async.pop()
                        try:
                            await _exchange(connection, parser, commands, count, replies)
                        except (OSError, ConnectionError):  # closed while idle: so are the others
                            self._drop_idle_async()
                            connection = None
                    if connection is None:
                        client = await self._feast._get_client_async(self.online)
                        connection, parser = client.connection_pool.make_connection(), hiredis.Reader()
                        connection.retry = Retry(NoBackoff(), 0)
                        await connection.connect()
                        await _exchange(connection, parser, commands, count, replies)
            except TimeoutError:
                if connection is None or connection._reader is None or not _arrived(connection, parser, count, replies):
                    raise
        except (OSError, ConnectionError, RedisError, ValueError, TimeoutError) as exc:
            if connection is not None and connection._writer is not None:
                connection._writer.close()
            raise self._failed(exc, deadline) from exc
        self._idle_async.append((loop, connection, parser))
        return self._split(wanted, replies)

    def _drop_idle_async(self) -> None:
        for _, connection, _ in self._idle_async:
            connection._writer.close()
        self._idle_async.clear()

    def _commands(self, wanted: list[tuple[_View, list[bytes]]]) -> tuple[bytes, int]:
        """The pipelined ``HMGET``s of every view's keys, and their count."""
        project, suffix = self.project, len(self.project)
        commands = b"".join(
            b"*%d\r\n$5\r\nHMGET\r\n$%d\r\n%s%s\r\n%s" % (count, len(key) + suffix, key, project, fields)
            for view, keys in wanted
            for count, fields in [self._arguments[view.name]]
            for key in keys
        )
        return commands, sum(len(keys) for _, keys in wanted)

    @staticmethod
    def _split(wanted: list[tuple[_View, list[bytes]]], replies: list[Any]) -> list[list[list[bytes | None]]]:
        """The replies per view and key (None: no field of the view stored)."""
        replies = iter(replies)
        return [
            [values if values.count(None) < len(values) else None for values in itertools.islice(replies, len(keys))]
            for _, keys in wanted
        ]

    def _failed(self, exc: BaseException, deadline: float) -> FeatureStoreError:
        """The error of a failed read, saying when it ran out of time."""
        where = f"Redis at {self.online.connection_string}"
        if isinstance(exc, TimeoutError) or time.monotonic() >= deadline:
            return FeatureStoreError(f"{where} did not answer within the read's budget")
        return FeatureStoreError(f"{where} failed: {described(exc)}")


def _sent(wire: Wire, commands: bytes, count: int) -> list[Any]:
    """Send pipelined ``commands`` on a blocking connection; return their ``count`` replies."""
    wire.send(memoryview(commands))
    return wire.replies(count)


async def _exchange(connection: Any, parser: Any, commands: bytes, count: int, replies: list[Any]) -> None:
    """Send pipelined ``commands`` on a connected redis-py asyncio connection; await their
    ``count`` replies into ``replies``, parsed by ``parser`` (a ``hiredis.Reader`` of that connection).

    Raises:
        ConnectionError: Redis closed the connection.
        RedisError: A reply is an error.
    """
    connection._writer.write(commands)
    while len(replies) < count:
        reply = parser.gets()
        if reply is False:
            data = await connection._reader.read(1 << 20)
            if not data:
                raise ConnectionError("Redis closed the connection")
            parser.feed(data)
        else:
            replies.append(_checked(reply))


def _arrived(connection: Any, parser: Any, count: int, replies: list[Any]) -> bool:
    """Whether the replies a read's deadline cut short had arrived after all: the event loop was
    busy with other requests when they came, so the read's task had not run yet (the store was in
    time). What the connection's stream holds is parsed into ``replies``."""
    buffered = connection._reader._buffer  # read from the socket, not yet consumed
    parser.feed(bytes(buffered))
    buffered.clear()
    while len(replies) < count and (reply := parser.gets()) is not False:
        replies.append(_checked(reply))
    return len(replies) == count


def _checked(reply: Any) -> Any:
    """A reply, unless it is an error.

    Raises:
        RedisError: It is.
    """
    if isinstance(reply, hiredis.ReplyError):
        raise RedisError(str(reply))
    return reply


def _left(deadline: float) -> float:
    """Seconds until ``deadline`` (a little above 0 once it has passed: sockets read 0 as non-blocking)."""
    return max(deadline - time.monotonic(), 1e-4)


def _bulk(data: bytes) -> bytes:
    """``data`` as a Redis protocol bulk string."""
    return b"$%d\r\n%s\r\n" % (len(data), data)
