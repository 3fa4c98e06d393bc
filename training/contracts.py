"""The Pandera contract of a training frame, derived from its feature service.

A frame has one row per shown item: the group ``query_id`` (contiguous, as LightGBM/XGBoost
group arrays need it), the entity keys, ``event_timestamp`` in UTC, a graded ``label`` in 0..3,
no duplicate ``(query_id, item_id)``, and every feature column of the service with its type.
"""

from __future__ import annotations

import json

import pandera.polars as pa
import polars as pl
from feast.types import Bool, FeastType, Float32, Float64, Int32, Int64, String, UnixTimestamp

from shoprank.errors import ContractError
from training.metrics import auc
from training.plan import ServicePlan

GROUP = "query_id"
LABELS = (0, 3)
POLARS_TYPES = {
    Int64: pl.Int64,
    Int32: pl.Int32,
    Float64: pl.Float64,
    Float32: pl.Float32,
    String: pl.Utf8,
    Bool: pl.Boolean,
    UnixTimestamp: pl.Datetime("us"),
}


def training_frame_schema(plan: ServicePlan) -> pa.DataFrameSchema:
    """The schema of the training frames of ``plan``'s feature service."""
    columns = {
        GROUP: pa.Column(pl.Utf8, nullable=False),
        "user_id": pa.Column(pl.Utf8, nullable=False),
        "item_id": pa.Column(pl.Utf8, nullable=False),
        "event_timestamp": pa.Column(pl.Datetime("us", "UTC"), nullable=False),
        "label": pa.Column(pl.Int32, pa.Check.in_range(*LABELS), nullable=False),
    }
    columns.update({name: pa.Column(_polars(name, dtype), nullable=True) for name, dtype in plan.dtypes.items()})
    contiguous = pa.Check(
        lambda d: d.lazyframe.select(pl.col(GROUP).rle_id().n_unique() == pl.col(GROUP).n_unique()),
        name=f"{GROUP} groups are contiguous",
    )
    return pa.DataFrameSchema(
        columns, checks=[contiguous], unique=[GROUP, "item_id"], name=f"training frame of {plan.service}"
    )


def validate_frame(schema: pa.DataFrameSchema, frame: pl.DataFrame, where: str) -> None:
    """Check a frame against its schema.

    Raises:
        ContractError: Naming ``where``, every failed check with an example value, and the fix.
    """
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.unique(subset=["column", "check"], keep="first", maintain_order=True)
        failures = "; ".join(_failure(row) for row in cases.to_dicts())
        raise ContractError(
            f"{schema.name} ({where}) breaks its contract: {failures}; "
            'fix the labels or feature marts ("shoprank build") or the feature definitions ("shoprank features apply")'
        ) from None


def _failure(failure: dict) -> str:
    """A failed check with an example: a column's value, a missing column, or a row's group and item."""
    case = str(failure["failure_case"])
    if failure["schema_context"] != "DataFrameSchema":
        return f"{failure['column']}: {failure['check']} (e.g. {case})"
    if not case.startswith("{"):
        return f"{failure['check']} ({case})"
    row = json.loads(case)
    return f"rows: {failure['check']} (e.g. {GROUP}={row.get(GROUP)}, item_id={row.get('item_id')})"


def _polars(name: str, dtype: FeastType) -> pl.DataType:
    if dtype not in POLARS_TYPES:
        raise ContractError(f'Feature "{name}" has type {dtype}, which training frames do not hold; use a scalar type')
    return POLARS_TYPES[dtype]


LEAKY_AUC = 0.98


def check_leakage(frame: pl.DataFrame, features: tuple[str, ...]) -> None:
    """Reject features that tell the label almost perfectly on their own: a feature computed from
    the label (or from after the ranking) would look like this, and no honest one does.

    Raises:
        ContractError: Naming each such feature and its AUC against ``label > 0``.
    """
    positive = (frame["label"] > 0).to_numpy()
    if positive.all() or not positive.any():
        return
    leaky = []
    for name in features:
        if frame.schema[name].is_numeric():
            values = frame[name].cast(pl.Float64).fill_null(float("-inf")).fill_nan(float("-inf")).to_numpy()
            separation = abs(auc(positive, values) - 0.5) + 0.5
            if separation >= LEAKY_AUC:
                leaky.append(f"{name} (AUC {separation:.3f})")
    if leaky:
        raise ContractError(
            f"Feature(s) {', '.join(leaky)} separate the labels almost perfectly on the training rows: "
            "they probably leak the label (computed from it, or from after the ranking); "
            "fix their mart or feature view, or drop them from the feature service"
        )
