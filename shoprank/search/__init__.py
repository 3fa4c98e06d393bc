"""Search candidates: a bm25s index of the catalog (``index``), filtered BM25 retrieval with a
popular-in-category backfill (``retrieve``) and its recall (``recall``).

Example::

    index = open_index(settings)  # built once per catalog, then loaded
    retrieve(index, "cordless drill", k=100, category="Tools & Garden", price_max=150)
"""

from shoprank.search.index import CatalogIndex, build_index, open_index
from shoprank.search.retrieve import retrieve, retrieve_batch

__all__ = ["CatalogIndex", "build_index", "open_index", "retrieve", "retrieve_batch"]
