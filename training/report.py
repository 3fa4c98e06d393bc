"""The self-contained HTML report of one registered model version.

It reads a registry version directory (``card.json``, ``evaluation/*.parquet``,
``importance.parquet``, ``learning_curve.parquet``) and writes one HTML file that needs nothing
else: tables in HTML, plots as base64 PNG images drawn by matplotlib. A missing optional file
(slices, truth metrics, curves) leaves its section out.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from shoprank.errors import InputError

HEADLINE = "ndcg@10"
TOP_FEATURES = 25
KINDS = {"model": 0, "baseline": 1, "oracle": 2}
COUNTS = {"groups"}
METRIC, COUNT, GAIN = ".4f", ",.0f", ",.1f"  # number formats
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}"
    "img{max-width:100%}.headline{font-size:1.2em}"
)


def write_report(version_dir: Path, output: Path | None = None) -> Path:
    """Write the HTML report of the model version stored in ``version_dir``.

    Args:
        version_dir: A registry version directory, ``<workdir>/models/<service>/<version>``.
        output: The HTML file to write; ``<version_dir>/report.html`` by default.

    Returns:
        The path of the written report.

    Raises:
        InputError: ``card.json`` or ``evaluation/metrics.parquet`` is missing.
    """
    import matplotlib

    matplotlib.use("Agg")
    version_dir = Path(version_dir)
    card = json.loads(_required(version_dir, "card.json").read_text())
    metrics = pl.read_parquet(_required(version_dir, "evaluation/metrics.parquet"))
    rankers = _ranker_order(metrics)
    title = f"{card['service']} {card['version']} ({card['algorithm']})"
    sections = [
        _headline(card["headline"]),
        _metric_table("Test metrics against logged labels", metrics.filter(pl.col("against") == "labels"), rankers),
        _metric_table("Test metrics against true relevance", metrics.filter(pl.col("against") == "truth"), rankers),
        _optional(version_dir / "evaluation" / "ndcg_curve.parquet", lambda df: _ndcg_curves(df, rankers)),
        _optional(version_dir / "importance.parquet", _importance),
        _optional(version_dir / "evaluation" / "slices.parquet", lambda df: _slices(df, rankers)),
        _optional(version_dir / "learning_curve.parquet", lambda df: _learning_curves(df, card)),
        _lineage(card),
    ]
    body = "\n".join(section for section in sections if section)
    output = Path(output) if output is not None else version_dir / "report.html"
    output.write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body><h1>{_esc(title)}</h1>\n{body}\n</body></html>\n"
    )
    return output


def _required(version_dir: Path, name: str) -> Path:
    path = version_dir / name
    if not path.exists():
        raise InputError(
            f"{version_dir} has no {name}: it is not a complete registry version directory; "
            "pass a version directory written by the registry (<workdir>/models/<service>/<version>)"
        )
    return path


def _optional(path: Path, render: Callable[[pl.DataFrame], str]) -> str:
    return render(pl.read_parquet(path)) if path.exists() else ""


def _ranker_order(metrics: pl.DataFrame) -> list[str]:
    """Rankers: the model(s) first, then baselines by NDCG@10 against labels descending, the oracle last."""
    headline = metrics.filter((pl.col("metric") == HEADLINE) & (pl.col("against") == "labels"))
    score = dict(zip(headline["ranker"], headline["value"], strict=True))
    kinds = dict(zip(metrics["ranker"], metrics["kind"], strict=True))
    return sorted(kinds, key=lambda ranker: (KINDS.get(kinds[ranker], 1), -score.get(ranker, float("-inf")), ranker))


def _headline(headline: dict[str, Any]) -> str:
    text = (
        f"Model {_esc(headline['metric'])} <b>{headline['model']:{METRIC}}</b> "
        f"vs best baseline {_esc(headline['best_baseline'])} "
        f"<b>{headline['baseline']:{METRIC}}</b>: lift <b>{headline['lift']:+.1f}%</b>"
    )
    if headline.get("gap_closed") is not None:
        text += f", closes <b>{headline['gap_closed']:.1f}%</b> of the gap between the logging policy and the oracle"
    return f'<p class="headline">{text}</p>'


def _metric_table(title: str, metrics: pl.DataFrame, rankers: list[str]) -> str:
    if metrics.is_empty():
        return ""
    names = metrics["metric"].unique(maintain_order=True).to_list()
    value = {(r, m): v for r, m, v in metrics.select("ranker", "metric", "value").iter_rows()}
    rows = [
        [_text(ranker), *(_cell(value.get((ranker, name)), COUNT if name in COUNTS else METRIC) for name in names)]
        for ranker in rankers
        if any((ranker, name) in value for name in names)
    ]
    return _section(title, _table(["ranker", *names], rows))


def _ndcg_curves(curve: pl.DataFrame, rankers: list[str]) -> str:
    def draw(ax: Any) -> None:
        for ranker in _ordered(rankers, curve["ranker"]):
            line = curve.filter(pl.col("ranker") == ranker).sort("k")
            ax.plot(line["k"], line["ndcg"], marker=".", label=ranker)
        ax.set(xlabel="k", ylabel="NDCG@k", xticks=curve["k"].unique().sort().to_list())
        ax.legend(fontsize="small")

    return _section("NDCG@k", _image(draw, "NDCG@k curves, one line per ranker"))


def _importance(importance: pl.DataFrame) -> str:
    top = importance.sort("gain", descending=True).head(TOP_FEATURES)

    def draw(ax: Any) -> None:
        ax.barh(top["feature"].to_list()[::-1], top["gain"].to_list()[::-1])
        ax.set(xlabel="total gain")

    rows = [[_text(feature), _cell(gain, GAIN), _cell(splits, COUNT)] for feature, gain, splits in top.iter_rows()]
    chart = _image(draw, f"top {TOP_FEATURES} features by gain", height=0.25 * len(top) + 1)
    return _section(
        f"Feature importance (top {TOP_FEATURES} by gain)", chart + _table(["feature", "gain", "splits"], rows)
    )


def _slices(slices: pl.DataFrame, rankers: list[str]) -> str:
    slices = slices.filter(pl.col("metric") == HEADLINE)
    columns = _ordered(rankers, slices["ranker"])
    score = {(s, v, r): x for s, v, r, x in slices.select("slice", "slice_value", "ranker", "score").iter_rows()}
    keys = slices.group_by("slice", "slice_value", maintain_order=True).agg(pl.col("groups").max())
    rows = [
        [_text(s), _text(v), _cell(groups, COUNT), *(_cell(score.get((s, v, r))) for r in columns)]
        for s, v, groups in keys.iter_rows()
    ]
    return _section(f"Slices ({HEADLINE})", _table(["slice", "slice_value", "groups", *columns], rows))


def _learning_curves(curve: pl.DataFrame, card: dict[str, Any]) -> str:
    metrics = curve["metric"].unique(maintain_order=True).to_list()
    metric = card["headline"]["metric"] if card["headline"]["metric"] in metrics else metrics[0]

    def draw(ax: Any) -> None:
        for dataset in ("train", "valid"):
            line = curve.filter((pl.col("metric") == metric) & (pl.col("dataset") == dataset)).sort("iteration")
            ax.plot(line["iteration"], line["value"], label=dataset)
        if card.get("best_iteration") is not None:
            ax.axvline(card["best_iteration"], color="grey", linestyle="--", label="best iteration")
        ax.set(xlabel="iteration", ylabel=metric)
        ax.legend(fontsize="small")

    return _section(f"Learning curves ({metric})", _image(draw, f"train and valid {metric} per iteration"))


def _lineage(card: dict[str, Any]) -> str:
    window, rows, groups = card["window"], card["rows"], card.get("groups", {})
    splits = [
        [
            _text(split),
            _text(start),
            _text(end),
            _cell(rows.get(split), COUNT),
            _cell(groups.get(split), COUNT),
        ]
        for split, (start, end) in window.items()
    ]
    lineage = card["lineage"]
    facts = {
        "trained at": card["trained_at"],
        "training time": f"{card['train_seconds']:,.1f} s" if "train_seconds" in card else None,
        "label source": card["label_source"],
        "seed": card["seed"],
        "best iteration": card.get("best_iteration"),
        "features": f"{len(card['features'])} (hash {card['features_hash']})",
        **{
            key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            for key, value in lineage.items()
        },
    }
    params = [[_text(key), _text(json.dumps(value))] for key, value in sorted(card["config"].items())]
    features = "".join(f"<li>{_esc(feature)}</li>" for feature in card["features"])
    return _section(
        "Data window and lineage",
        _table(["split", "from", "to", "rows", "groups"], splits)
        + _table(["field", "value"], [[_text(key), _text(value)] for key, value in facts.items() if value is not None])
        + f"<details><summary>features in order</summary><ol>{features}</ol></details>"
        + "<h3>Parameters</h3>"
        + _table(["parameter", "value"], params),
    )


def _image(draw: Callable[[Any], None], alt: str, height: float = 4.0) -> str:
    """A plot drawn on a fresh matplotlib Axes, as an ``<img>`` with an inline PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, height), dpi=100)
    draw(figure.add_subplot())
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png.getvalue()).decode()}">'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """An HTML table: escaped header names over rows of ``<td>`` cells (``_text``, ``_cell``)."""
    head = "".join(f"<th>{_esc(name)}</th>" for name in header)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(title: str, content: str) -> str:
    return f"<section><h2>{_esc(title)}</h2>{content}</section>"


def _text(value: object) -> str:
    return f"<td>{_esc(value)}</td>"


def _cell(value: float | None, spec: str = METRIC) -> str:
    """A right-aligned number cell in format ``spec``; a dash when the value is missing."""
    if value is None or math.isnan(value):
        return '<td class="n">–</td>'
    return f'<td class="n">{value:{spec}}</td>'


def _ordered(rankers: list[str], present: pl.Series) -> list[str]:
    """``rankers`` restricted to those in ``present``, then any others of ``present`` by name."""
    names = set(present.to_list())
    return [r for r in rankers if r in names] + sorted(names - set(rankers))


def _esc(text: object) -> str:
    return html.escape(str(text))
