"""Helpers shared by the dataset adapters (reading helpers live in ``shoprank.ingest.mapping``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprank.errors import InputError


def wrong_format(path: Path, dataset: str, expected: str, found: str) -> InputError:
    """The error for a file that is not in the format its adapter reads."""
    return InputError(
        f'File "{path}" does not look like {dataset} (expected {expected}, found {found}); pass the right --format'
    )


class FirstSeen:
    """One row per key over all the chunks of a file: the first row wins.

    Rows that repeat a key with other values are not kept but counted in a note, so a conflict in
    the source (e.g. a product listed under two titles) is reported, not hidden.
    """

    def __init__(self, path: Path, key: str, label: str) -> None:
        self._path = path
        self._key = key
        self._label = label
        self._kept: pl.DataFrame | None = None

    def keep(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, tuple[str, ...]]:
        """The rows of ``frame`` whose key was not seen before, and a note on rows that disagree."""
        new = frame.unique(subset=self._key, keep="first", maintain_order=True)
        if self._kept is not None:
            new = new.join(self._kept, on=self._key, how="anti", maintain_order="left")
        self._kept = new if self._kept is None else pl.concat([self._kept, new])
        differing = frame.join(self._kept, on=frame.columns, how="anti", nulls_equal=True).height
        if not differing:
            return new, ()
        note = (
            f'{differing} rows of "{self._path}" give an item another {self._label} than its first row; '
            "kept the first (one items row per item)"
        )
        return new, (note,)
