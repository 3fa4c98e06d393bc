"""The distributed profile's Spark, as our own jobs use it (training frames, materialization).

The session is Feast's, from the Spark offline store's ``spark_conf``, so our jobs and Feast's run
in one configuration; its Python workers run this interpreter. An error our code raises on an
executor comes back to the driver as the same shoprank error.
"""

from __future__ import annotations

import os
import sys

from pyspark.errors import PythonException
from pyspark.sql import SparkSession

from shoprank.errors import ShoprankError


def spark_session(offline_store) -> SparkSession:
    """Feast's Spark session for an offline store config (``type: spark``), writing Parquet
    timestamps in microseconds, logging errors only."""
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
        get_spark_session_or_start_new_with_repoconfig,
    )

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = get_spark_session_or_start_new_with_repoconfig(offline_store)
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    spark.sparkContext.setLogLevel("ERROR")  # its warnings are about itself, not the user's data
    return spark


def raised(exc: PythonException, *kinds: type[ShoprankError]) -> Exception:
    """The error of one of ``kinds`` an executor raised, rebuilt with its message (else ``exc``)."""
    text = str(exc)
    for kind in kinds:
        marker = f"{kind.__module__}.{kind.__name__}: "
        if marker in text:
            return kind(text.split(marker, 1)[1].strip().splitlines()[0])
    return exc
