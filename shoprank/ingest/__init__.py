"""Ingestion: readers and adapters yield batches (``batch``), ``load`` enforces the contracts and
writes them, ``run.ingest`` drives a whole run atomically."""
