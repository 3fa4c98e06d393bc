"""What ``shoprank serve`` needs before it listens, checked once in the process that starts the
workers: the registry, the online store and the models. One that cannot be reached stops the
start with one line naming it and the fix (``ShoprankError``), instead of a traceback per worker.
"""

from __future__ import annotations

import sqlite3

from feast import FeatureStore
from redis.backoff import NoBackoff
from redis.retry import Retry

from shoprank.config import Settings
from shoprank.errors import FeatureStoreError, described
from shoprank.features.store import online_store_kind, open_store
from training.registry import load_ranker

CONNECT_SECONDS = 3.0  # how long the online store may take to answer at start


def check(settings: Settings, service: str, version: str | None) -> FeatureStore:
    """The workdir's feature store once its registry, its online store and ``service``'s model
    (``version``, else production) answered.

    Raises:
        ShoprankError: One of them cannot be reached or loaded; the message names it and the fix.
    """
    store = open_store(settings)
    _online_store(store)
    load_ranker(settings, service, version)
    return store


def _online_store(store: FeatureStore) -> None:
    """Ask the online store for anything: Redis a PING, SQLite its table list."""
    online = store.config.online_store
    if online_store_kind(store) == "redis":
        from feast.infra.online_stores.redis import RedisOnlineStore

        client = RedisOnlineStore()._get_client(online)
        pool = client.connection_pool.connection_kwargs
        pool["socket_connect_timeout"] = pool["socket_timeout"] = CONNECT_SECONDS
        pool["retry"] = Retry(NoBackoff(), 0)
        try:
            client.ping()
        except Exception as exc:  # noqa: BLE001 - refused, timed out, bad password: all unreachable
            raise FeatureStoreError(
                f"The online store, Redis at {online.connection_string}, does not answer: "
                f"{described(exc)}; start it or point redis / SHOPRANK_REDIS at it"
            ) from None
        finally:
            client.close()
        return
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    path = SqliteOnlineStore._get_db_path(store.config)
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=CONNECT_SECONDS) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except sqlite3.Error as exc:
        raise FeatureStoreError(
            f'The online store {path} cannot be read ({exc}); run "shoprank features materialize"'
        ) from None
