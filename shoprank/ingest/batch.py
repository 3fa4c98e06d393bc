"""A batch of rows for one raw table, and its casting to the contract's types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from shoprank.contracts import RAW_TABLES

_TIMESTAMP_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M%z",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


@dataclass(frozen=True)
class Batch:
    """Rows read from one source for one raw table.

    Attributes:
        table: Raw table name (a key of ``RAW_TABLES``).
        frame: Contract columns, typed or as text; absent nullable columns are filled with nulls.
        source: Where the rows came from (a file path), kept on every row for lineage.
        notes: Remarks on the source worth showing the user (e.g. rows outside a dataset's window).
    """

    table: str
    frame: pl.DataFrame
    source: str
    notes: tuple[str, ...] = ()


def coerce(frame: pl.DataFrame, table: str) -> tuple[pl.DataFrame, pl.Series]:
    """Cast ``frame`` to the columns and types of ``raw.<table>``.

    Values that cannot be cast become null and are reported, so the row can be quarantined with
    its original text rather than dropped.

    Returns:
        The typed frame in contract column order, and one reason per row (null when every value
        was castable), e.g. ``"position: not an integer"``.
    """
    columns = RAW_TABLES[table].columns
    present = {name: frame[name] for name in columns if name in frame.columns}
    typed: dict[str, pl.Series] = {}
    reasons: list[pl.Expr] = []
    for name, dtype in columns.items():
        if name not in present:
            typed[name] = pl.repeat(None, frame.height, dtype=dtype, eager=True).alias(name)
            continue
        source = present[name]
        cast = _cast(source, dtype)
        failed = source.is_not_null() & cast.is_null()
        if source.dtype == pl.Utf8:
            failed &= source.str.strip_chars().str.len_chars() > 0
        if failed.any():
            reasons.append(pl.when(failed).then(pl.lit(f"{name}: not {_type_name(dtype)}")))
        typed[name] = cast.alias(name)
    typed_frame = pl.DataFrame(typed)
    if not reasons:
        return typed_frame, pl.repeat(None, frame.height, dtype=pl.Utf8, eager=True)
    reason = pl.select(pl.concat_str(reasons, separator="; ", ignore_nulls=True)).to_series()
    return typed_frame, reason.replace("", None)


def _type_name(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "a timestamp"
    return {pl.Int32: "an integer", pl.Float64: "a number"}.get(dtype, "text")


def _cast(series: pl.Series, dtype: pl.DataType) -> pl.Series:
    if isinstance(dtype, pl.Datetime):
        # clipped to the years Python can hold, so the contract can check (and name) year 57386
        return _to_timestamp(series).clip(datetime.min, datetime.max)
    if series.dtype == dtype:
        return series
    if series.dtype == pl.Boolean and dtype != pl.Utf8:  # true is not a price of 1.0
        return pl.repeat(None, len(series), dtype=dtype, eager=True).alias(series.name)
    if dtype == pl.Utf8:
        if series.dtype.is_float():
            return _float_to_text(series)
        return series.cast(pl.Utf8)
    if series.dtype == pl.Utf8:
        series = series.str.strip_chars()
        if dtype.is_integer():
            as_float = series.cast(pl.Float64, strict=False)
            integral = as_float == as_float.round(0)
            return pl.select(pl.when(integral).then(as_float).cast(dtype, strict=False)).to_series().alias(series.name)
    if series.dtype.is_float() and dtype.is_integer():
        integral = series == series.round(0)
        return pl.select(pl.when(integral).then(series).cast(dtype, strict=False)).to_series().alias(series.name)
    return series.cast(dtype, strict=False)


def _float_to_text(series: pl.Series) -> pl.Series:
    """Integral floats (ids read through pandas with NaNs) as "42", not "42.0"."""
    as_int = series.cast(pl.Int64, strict=False)
    frame = pl.DataFrame({"f": series, "i": as_int})
    return (
        frame.select(
            pl.when(pl.col("i").cast(pl.Float64) == pl.col("f"))
            .then(pl.col("i").cast(pl.Utf8))
            .otherwise(pl.col("f").cast(pl.Utf8))
        )
        .to_series()
        .alias(series.name)
    )


def _to_timestamp(series: pl.Series) -> pl.Series:
    """Naive UTC microsecond timestamps from datetimes (any zone), dates or ISO-8601 text."""
    if isinstance(series.dtype, pl.Datetime):
        if series.dtype.time_zone is not None:
            series = series.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return series.dt.cast_time_unit("us")
    if series.dtype == pl.Date:
        return series.cast(pl.Datetime("us"))
    if series.dtype != pl.Utf8:
        return pl.repeat(None, len(series), dtype=pl.Datetime("us"), eager=True).alias(series.name)
    text = series.str.strip_chars().str.replace("T", " ", literal=True).str.replace(r"Z$", "+00:00")
    parsed = [
        text.str.to_datetime(fmt, time_zone="UTC" if fmt.endswith("%z") else None, strict=False, time_unit="us")
        for fmt in _TIMESTAMP_FORMATS
    ]
    naive = [p.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if p.dtype.time_zone else p for p in parsed]
    return pl.select(pl.coalesce(naive)).to_series().alias(series.name)
