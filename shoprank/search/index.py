"""The catalog's text index: one bm25s index over each item's title, brand and category path.

An item's document is the words (``shoprank.text.tokens``) of its title, of its brand that the
title lacks, and of its category path, so every field's words weigh like title words. A brand is
usually named in the title: counting it twice and lengthening the document lowered recall (see
benchmarks/README.md), while a category word repeating a title word ("Jeans" for a pair of jeans)
confirms the match and raised it. An item without any word is left out.

The index is saved under ``WORKDIR/search_index/<fingerprint>/`` and reused while the
fingerprint is unchanged: it covers the catalog rows (``marts.dim_items``), the fields, BM25's
parameters, the bm25s version and the tokenizer's source, so a changed catalog or tokenizer
rebuilds it (under a second for 40k items; bm25s has no incremental update). Popularity, which
changes daily without the catalog, is read afresh on every open.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import bm25s
import numpy as np
import polars as pl

from shoprank import text
from shoprank.config import Settings
from shoprank.errors import ConfigError, WarehouseError
from shoprank.features.bm25 import K1, B, index_documents
from shoprank.text import Speller, tokens
from shoprank.warehouse import mart, read

FIELDS = ("title", "brand", "category_path")
FOLDER = "search_index"
FORMAT = 1  # of the saved files and of document_words: bump it on a change to rebuild every saved index
STOCK = "in_stock"
MANIFEST = "index.json"


@dataclass(frozen=True)
class CatalogIndex:
    """A bm25s index of the catalog and the item attributes that retrieval filters on.

    Attributes:
        bm25: The index; document ``d`` is row ``d`` of ``items``.
        items: ``item_id, category_path, price``, ``in_stock`` when the catalog has it, and
            ``popularity`` (views in the past 7 days; 0 when unknown).
        fields: The catalog columns indexed.
        fingerprint: Digest of what the index was built from.
        speller: Corrects a query word the index lacks to its most frequent word one edit away
            (counted in documents).
        item_ids: The items' ids, by document.
        by_popularity: The documents, most popular first (ties by item id).
        ranks: Each document's place in ``by_popularity``.
        by_category: Of each category path, its documents, most popular first.
        category: Each document's category path, as an index of ``by_category`` (-1: none).
    """

    bm25: bm25s.BM25
    items: pl.DataFrame
    fields: tuple[str, ...]
    fingerprint: str
    speller: Speller = field(init=False)
    item_ids: list[str] = field(init=False)
    by_popularity: np.ndarray = field(init=False)
    ranks: np.ndarray = field(init=False)
    by_category: list[np.ndarray] = field(init=False)
    category: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        frequencies = np.diff(self.bm25.scores["indptr"])
        counts = {
            word: int(frequencies[i]) for word, i in self.bm25.vocab_dict.items() if word and i < len(frequencies)
        }
        ordered = self.items.with_row_index("document").sort(["popularity", "item_id"], descending=[True, False])
        by_popularity = ordered["document"].to_numpy().astype(np.int64)
        ranks = np.empty_like(by_popularity)
        ranks[by_popularity] = np.arange(len(by_popularity))
        category = self.items.select(pl.col("category_path").rank("dense") - 1)["category_path"]
        category = category.fill_null(-1).to_numpy().astype(np.int64)
        grouped = np.lexsort((ranks, category))
        starts = np.searchsorted(category[grouped], np.arange(category.max(initial=-1) + 2))
        by_category = [grouped[start:end] for start, end in zip(starts[:-1], starts[1:], strict=True)]
        derived = {
            "speller": Speller(counts),
            "item_ids": self.items["item_id"].to_list(),
            "by_popularity": by_popularity,
            "ranks": ranks,
            "by_category": by_category,
            "category": category,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)


def build_index(catalog: pl.DataFrame, fields: tuple[str, ...] = FIELDS) -> CatalogIndex:
    """Index a catalog: ``item_id``, the ``fields``, ``category_path``, ``price``, optionally
    ``in_stock`` and ``popularity``.

    Raises:
        ConfigError: A field is not one of ``FIELDS``.
        WarehouseError: No item has a word in the fields.
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ConfigError(f"Cannot index the catalog field(s) {unknown}; index some of {', '.join(FIELDS)}")
    documents = [document_words(row) for row in catalog.select(fields).iter_rows(named=True)]
    kept = pl.Series([bool(words) for words in documents])
    if not kept.any():
        raise WarehouseError(
            f"The catalog ({catalog.height:,} items) has no word in {', '.join(fields)} to index; "
            'ingest items with titles and run "shoprank build"'
        )
    attributes = ["item_id", "category_path", "price", *([STOCK] if STOCK in catalog.columns else [])]
    items = catalog.filter(kept).select(
        *attributes, pl.col("popularity") if "popularity" in catalog.columns else pl.lit(0.0).alias("popularity")
    )
    bm25 = index_documents([words for words in documents if words])
    return CatalogIndex(bm25, items, fields, fingerprint(catalog, fields))


def document_words(fields: dict[str, str | None]) -> list[str]:
    """An item's document: the words of its title, of its brand that the title lacks, and of its
    category path (each field if given)."""
    title = tokens(fields.get("title"))
    named = set(title)
    brand = [word for word in tokens(fields.get("brand")) if word not in named]
    return title + brand + tokens(fields.get("category_path"))


def open_index(settings: Settings, fields: tuple[str, ...] = FIELDS) -> CatalogIndex:
    """The index of the warehouse's current catalog: loaded when saved for this catalog, else
    built and saved (older indexes are removed). Popularity comes from the newest rows of the
    ``item_features_daily`` mart.

    Raises:
        WarehouseError: The warehouse, ``marts.dim_items`` or the mart is missing.
    """
    catalog = read_catalog(settings)
    folder = settings.workdir / FOLDER / fingerprint(catalog, fields)[:16]
    index = load_index(folder) if (folder / MANIFEST).is_file() else save_index(build_index(catalog, fields), folder)
    return with_popularity(index, read_popularity(settings))


def with_popularity(index: CatalogIndex, popularity: pl.DataFrame) -> CatalogIndex:
    """The index with the items' ``popularity`` (``item_id, popularity``; 0 for an item without)."""
    items = index.items.drop("popularity").join(popularity, on="item_id", how="left", maintain_order="left")
    return replace(index, items=items.with_columns(pl.col("popularity").cast(pl.Float64).fill_null(0.0)))


def read_catalog(settings: Settings) -> pl.DataFrame:
    """``item_id, title, brand, category_path, price`` (and ``in_stock`` if present) of
    ``marts.dim_items``, by item.

    Raises:
        WarehouseError: The warehouse or the model is missing.
    """
    names = read(settings.warehouse, "describe marts.dim_items")["column_name"].to_list()
    columns = ["item_id", *FIELDS, "price", *([STOCK] if STOCK in names else [])]
    return read(settings.warehouse, f"select {', '.join(columns)} from marts.dim_items order by item_id")


def read_popularity(settings: Settings) -> pl.DataFrame:
    """``item_id, popularity``: each item's views in the 7 days before its newest
    ``item_features_daily`` row.

    Raises:
        WarehouseError: The mart is missing.
    """
    newest = pl.scan_parquet(mart(settings, "item_features_daily")).filter(
        pl.col("event_timestamp") == pl.col("event_timestamp").max().over("item_id")
    )
    return newest.select("item_id", popularity=pl.col("views_7d").cast(pl.Float64)).collect()


def fingerprint(catalog: pl.DataFrame, fields: tuple[str, ...]) -> str:
    """SHA-256 of the catalog rows (in item order), the fields, the index parameters and the
    tokenizer's source."""
    digest = hashlib.sha256()
    recipe = {"format": FORMAT, "fields": fields, "k1": K1, "b": B, "bm25s": bm25s.__version__}
    digest.update(json.dumps({**recipe, "tokenizer": tokenizer_digest()}, sort_keys=True).encode())
    digest.update(catalog.sort("item_id").write_csv().encode())
    return digest.hexdigest()


def tokenizer_digest() -> str:
    """SHA-256 of the source of ``shoprank.text`` (every file of the package, or the module)."""
    source = Path(text.__file__)
    files = sorted(source.parent.rglob("*.py")) if source.name == "__init__.py" else [source]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def save_index(index: CatalogIndex, folder: Path) -> CatalogIndex:
    """Write the index to ``folder`` (atomically: a reader sees all of it or nothing) and remove
    the other indexes beside it."""
    staging = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    index.bm25.save(staging / "bm25", show_progress=False)
    index.items.drop("popularity").write_parquet(staging / "items.parquet")
    manifest = {"fingerprint": index.fingerprint, "fields": index.fields, "items": index.items.height}
    (staging / MANIFEST).write_text(json.dumps(manifest))
    try:
        staging.rename(folder)
    except OSError:  # another process saved the same index first
        shutil.rmtree(staging)
    for other in folder.parent.iterdir():
        if other.name != folder.name and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
    return index


def load_index(folder: Path) -> CatalogIndex:
    """The index saved in ``folder`` (with popularity 0)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    bm25 = bm25s.BM25.load(folder / "bm25", show_progress=False)
    items = pl.read_parquet(folder / "items.parquet").with_columns(popularity=pl.lit(0.0))
    return CatalogIndex(bm25, items, tuple(manifest["fields"]), manifest["fingerprint"])
