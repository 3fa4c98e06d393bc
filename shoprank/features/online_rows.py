"""Feast's online rows built a column at a time, byte for byte what Feast 0.67 writes.

Feast serializes online rows in Python, one protobuf message per value. These functions build the
same bytes for whole Arrow columns with NumPy and Arrow kernels: entity keys
(``serialize_entity_key``, version 3), ``ValueProto`` and ``Timestamp`` messages, and the
``value_text`` and ``event_ts`` columns of the SQLite store. A missing value (null, or NaN in a
double column) is an empty ``ValueProto``, except for timestamps, which Feast writes as the NaT
sentinel. ``distinct`` lets a writer serialize each distinct value of a column once.
``tests/code/test_online_rows.py`` compares every type with Feast's own serialization.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast.utils import make_tzaware, to_naive_utc
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

VALUE_TYPES = (ValueType.INT64, ValueType.DOUBLE, ValueType.STRING, ValueType.UNIX_TIMESTAMP)
KEY_TYPES = (ValueType.STRING, ValueType.INT64)
BINARY = pa.large_binary()

# Wire tags of the ValueProto fields: (field number << 3) | wire type.
_TAGS = {ValueType.STRING: 0x12, ValueType.INT64: 0x20, ValueType.DOUBLE: 0x29, ValueType.UNIX_TIMESTAMP: 0x40}
_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)

Piece = tuple[np.ndarray, np.ndarray]  # (bytes of each row, padded: n x width uint8; used length of each row)


def entity_keys(columns: Sequence[tuple[str, ValueType, pa.Array]]) -> pa.Array:
    """Serialized entity keys (``serialize_entity_key``, version 3) of rows.

    Args:
        columns: ``(join key, value type, values)`` of each join key; values must not be null.
    """
    ordered = sorted(columns, key=lambda column: column[0])
    n = len(ordered[0][2])
    parts: list[Any] = [pa.scalar(entity_key_header([name for name, _, _ in ordered]), BINARY)]
    for _, value_type, values in ordered:
        if value_type == ValueType.STRING:
            data = values.cast(BINARY)
            lengths = pc.binary_length(data).to_numpy()
            parts += [from_pieces([_fixed(n, struct.pack("<I", ValueType.STRING.value)), _uint32(lengths)]), data]
        else:
            numbers = values.cast(pa.int64()).to_numpy()
            prefix = _fixed(n, struct.pack("<II", ValueType.INT64.value, 8))
            parts.append(from_pieces([prefix, (numbers.astype("<i8").view(np.uint8).reshape(n, 8), np.full(n, 8))]))
    return join(parts)


def entity_key_header(names: Sequence[str]) -> bytes:
    """The start of a serialized entity key (version 3): the count and names of its join keys,
    in sorted order."""
    header = struct.pack("<I", len(names))
    for name in names:
        header += struct.pack("<II", ValueType.STRING.value, len(name.encode())) + name.encode()
    return header


def key_part(value: str) -> bytes:
    """One string join key value as serialized in an entity key, after the header."""
    data = value.encode()
    return struct.pack("<II", ValueType.STRING.value, len(data)) + data


def value_protos(values: pa.Array, value_type: ValueType) -> pa.Array:
    """``ValueProto.SerializeToString()`` of each value, as Feast converts a column of ``value_type``."""
    n = len(values)
    tag = _fixed(n, bytes([_TAGS[value_type]]))
    if value_type == ValueType.STRING:
        data = values.cast(BINARY)
        header = from_pieces([tag, _varints(pc.binary_length(data).fill_null(0).to_numpy())])
        return pc.fill_null(join([header, data]), pa.scalar(b"", BINARY))
    if value_type == ValueType.DOUBLE:
        numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        present = ~np.isnan(numbers)
        body = (numbers.astype("<f8").view(np.uint8).reshape(n, 8), np.full(n, 8))
        return from_pieces([tag, body], present)
    if value_type == ValueType.INT64:
        present = values.is_valid().to_numpy(zero_copy_only=False)
        return from_pieces([tag, _varints(values.cast(pa.int64()).fill_null(0).to_numpy())], present)
    seconds = _datetimes(values).astype("datetime64[s]").astype(np.int64)  # NaT: Feast's null sentinel
    return from_pieces([tag, _varints(seconds)])


def value_texts(values: pa.Array, value_type: ValueType, missing: str | None = None) -> list[str | None]:
    """The SQLite store's ``value_text`` column: the string, or ``str()`` of a number.

    Args:
        values: A column of ``value_type``.
        value_type: Its Feast type.
        missing: The text of a missing number (Feast writes NULL).
    """
    if value_type == ValueType.STRING:
        return values.cast(pa.string()).to_pylist()
    if value_type == ValueType.INT64:
        return values.cast(pa.int64()).cast(pa.string()).fill_null(missing).to_pylist()
    if value_type == ValueType.DOUBLE:
        numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        texts = list(map(repr, numbers.tolist()))
        for index in np.flatnonzero(np.isnan(numbers)).tolist():
            texts[index] = missing
        return texts
    return [None] * len(values)


def distinct(values: pa.Array, value_type: ValueType) -> tuple[pa.Array, np.ndarray]:
    """A column's distinct values (a missing one among them) and the index of each row's value, to
    serialize each value once. Doubles are told apart by their bits (``-0.0`` is not ``0.0``)."""
    if value_type == ValueType.DOUBLE:
        numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False)  # null: NaN, missing as in Feast
        bits, index = np.unique(numbers.view(np.int64), return_inverse=True)
        return pa.array(bits.view(np.float64)), index
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    return encoded.dictionary, encoded.indices.to_numpy()


def timestamp_protos(times: pa.Array) -> pa.Array:
    """``google.protobuf.Timestamp`` bytes of event times, as Feast's Redis store writes them."""

    def encode(moment: datetime) -> bytes:
        proto = Timestamp()
        proto.FromDatetime(make_tzaware(moment))
        return proto.SerializeToString()

    return _per_unique(times, encode, BINARY)


def sqlite_event_ts(times: pa.Array) -> pa.Array:
    """The SQLite store's ``event_ts``: Feast's adapter, ``int(naive UTC datetime.timestamp())``."""
    return _per_unique(times, lambda moment: int(to_naive_utc(moment).timestamp()), pa.int64())


def _per_unique(times: pa.Array, encode: Callable[[datetime], Any], kind: pa.DataType) -> pa.Array:
    unique = pc.unique(times)
    encoded = pa.array([encode(moment) for moment in unique.to_pylist()], kind)
    return encoded.take(pc.index_in(times, unique))


def _datetimes(values: pa.Array) -> np.ndarray:
    return values.cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)


def _fixed(n: int, constant: bytes) -> Piece:
    row = np.frombuffer(constant, np.uint8)
    return np.broadcast_to(row, (n, len(row))), np.full(n, len(row))


def _uint32(numbers: np.ndarray) -> Piece:
    return numbers.astype("<u4").view(np.uint8).reshape(-1, 4), np.full(len(numbers), 4)


def _varints(numbers: np.ndarray) -> Piece:
    """Protobuf varints of int64s (negative numbers take ten bytes, as two's complement)."""
    unsigned = numbers.astype(np.int64).view(np.uint64)[:, None]
    groups = (unsigned >> _SHIFTS) & np.uint64(0x7F)
    lengths = 1 + (unsigned >> _SHIFTS[1:] != 0).sum(axis=1)
    more = np.arange(len(_SHIFTS)) < (lengths - 1)[:, None]
    return np.where(more, groups | np.uint64(0x80), groups).astype(np.uint8), lengths


def from_pieces(pieces: list[Piece], present: np.ndarray | None = None) -> pa.Array:
    """A binary array whose rows are made of ``pieces`` side by side; rows not ``present`` are empty."""
    matrix = np.hstack([piece for piece, _ in pieces])
    used = np.hstack([np.arange(piece.shape[1]) < lengths[:, None] for piece, lengths in pieces])
    if present is not None:
        used &= present[:, None]
    offsets = np.zeros(len(matrix) + 1, np.int64)
    np.cumsum(used.sum(axis=1), out=offsets[1:])
    return pa.Array.from_buffers(BINARY, len(matrix), [None, pa.py_buffer(offsets), pa.py_buffer(matrix[used])])


def join(parts: list[Any]) -> pa.Array:
    """Concatenate, row by row, binary arrays and scalars (a scalar repeats on every row)."""
    return pc.binary_join_element_wise(*parts, pa.scalar(b"", BINARY))
