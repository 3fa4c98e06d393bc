"""The marts of the tiny shop: point-in-time correct, no leakage, no PII, clean inputs."""

from __future__ import annotations

import duckdb
import pyarrow.parquet as pq
import pytest

from shoprank.contracts.marts import MART_KEYS


@pytest.fixture(scope="module")
def con(tiny_shop):
    connection = duckdb.connect(str(tiny_shop.warehouse), read_only=True)
    yield connection
    connection.close()


def _scalar(con, sql: str):
    return con.execute(sql).fetchall()[0][0]


# For every entity and every day boundary of the data, the row a point-in-time join picks (the
# latest at or before the boundary) must equal the window recomputed from the cleaned events
# strictly before the boundary: no stale value, no future value.
CATEGORIZED_EVENTS = """(select s.*, v.category_path from intermediate.int_events_sessionized s
    left join intermediate.int_item_versions v on v.item_id = s.item_id and v.valid_to is null) e"""
AS_OF_CHECKS = {
    "user_features_daily": (
        ["user_id"],
        {
            "views_7d": "count(*) filter (where e.event_type = 'view' and e.event_time >= g.t - interval 7 day)",
            "clicks_1d": "count(*) filter (where e.event_type = 'click' and e.event_time >= g.t - interval 1 day)",
            "purchases_30d": "count(*) filter (where e.event_type = 'purchase')",
            "categories_30d": "count(distinct e.category_path)",
        },
        f"{CATEGORIZED_EVENTS} on e.user_id = g.user_id",
    ),
    "item_features_daily": (
        ["item_id"],
        {
            "views_1d": "count(*) filter (where e.event_type = 'view' and e.event_time >= g.t - interval 1 day)",
            "carts_30d": "count(*) filter (where e.event_type = 'add_to_cart')",
        },
        "intermediate.int_events_sessionized e on e.item_id = g.item_id",
    ),
    "user_category_features_daily": (
        ["user_id", "category_path"],
        {"category_interactions_30d": "count(e.event_id)"},
        f"{CATEGORIZED_EVENTS} on e.user_id = g.user_id and e.category_path = g.category_path",
    ),
}


@pytest.mark.parametrize("mart", sorted(AS_OF_CHECKS))
def test_as_of_rows_equal_windows_recomputed_from_events(con, mart):
    keys, measures, join = AS_OF_CHECKS[mart]
    names = list(measures)
    sql = f"""
        with grid as (
            select x.*, cast(c.as_of_date as timestamp) as t
            from (select distinct {", ".join(keys)} from marts.{mart}) x cross join intermediate.int_calendar c
        ),
        picked as (
            select g.*, {", ".join(f"coalesce(f.{n}, 0) as {n}" for n in names)}
            from grid g asof left join marts.{mart} f
                on {" and ".join(f"f.{k} = g.{k}" for k in keys)} and f.event_timestamp <= g.t
        ),
        truth as (
            select {", ".join(f"g.{k}" for k in keys)}, g.t, {", ".join(f"{expr} as {n}" for n, expr in measures.items())}
            from grid g left join {join} and e.event_time < g.t and e.event_time >= g.t - interval 30 day
            group by all
        )
        select count(*), count(*) filter (where {" or ".join(f"p.{n} <> t.{n}" for n in names)})
        from picked p join truth t using ({", ".join(keys)}, t)
    """
    compared, mismatched = con.execute(sql).fetchall()[0]
    assert compared > 1000
    assert mismatched == 0


def test_category_affinities_of_a_user_are_shares_that_sum_to_one(con):
    worst = con.execute(
        """select max(abs(total - 1)) from (
               select user_id, event_timestamp, sum(category_affinity_30d) as total
               from marts.user_category_features_daily group by all having sum(category_interactions_30d) > 0)"""
    ).fetchall()[0][0]
    assert worst < 1e-9


def test_no_mart_row_lies_after_the_data_horizon(con):
    horizon = _scalar(con, "select cast(max(as_of_date) as timestamp) from intermediate.int_calendar")
    for mart in MART_KEYS:
        assert _scalar(con, f"select count(*) from marts.{mart} where event_timestamp > '{horizon}'") == 0, mart


def test_labels_come_from_interactions_after_the_list_and_within_30_minutes(con):
    grades = dict(con.execute("select label, count(*) from marts.fct_labels group by 1").fetchall())
    assert set(grades) == {0, 1, 2, 3}
    late = _scalar(
        con,
        """select count(*) from marts.fct_labels l
           where l.label = 3 and not exists (
               select 1 from intermediate.int_events_sessionized e
               where e.user_id = l.user_id and e.item_id = l.item_id and e.event_type = 'purchase'
                 and e.event_time >= l.event_timestamp and e.event_time < l.event_timestamp + interval 30 minute)""",
    )
    assert late == 0


def test_pii_never_leaves_staging_in_clear(con):
    columns = con.execute(
        """select table_schema, table_name, column_name from information_schema.columns
           where table_schema in ('staging', 'intermediate', 'marts', 'snapshots') and data_type = 'VARCHAR'"""
    ).fetchall()
    assert len(columns) > 20
    for schema, table, column in columns:
        leaked = _scalar(con, f'select count(*) from {schema}."{table}" where "{column}" like \'%@%\'')
        assert leaked == 0, f"{schema}.{table}.{column}"
    assert _scalar(con, "select count(*) from raw.users where email like '%@%'") > 0
    assert _scalar(con, "select count(*) from marts.dim_users where length(email_hash) = 64") > 0


def test_bots_duplicates_and_skewed_clocks_are_cleaned(tiny_run, con):
    _, result = tiny_run
    bots = [u for (u,) in con.execute("select user_id from intermediate.int_users_classified where is_bot").fetchall()]
    assert len(bots) == result.simulation.dirt["bot_users"] >= 1
    assert (
        _scalar(con, f"select count(*) from intermediate.int_events_sessionized where user_id in {tuple(bots) + ('',)}")
        == 0
    )
    raw = _scalar(con, "select count(*) from raw.events")
    cleaned = _scalar(con, "select count(*) from intermediate.int_events_cleaned")
    assert raw - cleaned >= result.simulation.dirt["duplicate_new_id"]
    early = _scalar(
        con,
        """select count(*) from intermediate.int_events_cleaned e
           join (select request_id, min(request_time) as t from raw.requests group by 1) r using (request_id)
           where e.event_time < r.t or e.event_time > r.t + interval 24 hour""",
    )
    assert early == 0
    assert _scalar(con, "select count(*) from intermediate.int_events_cleaned where clock_corrected") > 0


def test_mart_files_are_parquet_with_microsecond_timestamps_and_64_bit_numbers(tiny_shop):
    for path in sorted(tiny_shop.marts.glob("*.parquet")):
        for field in pq.read_schema(path):
            kind = str(field.type)
            assert not kind.startswith("decimal"), f"{path.name}.{field.name} is {kind}"
            if kind.startswith("timestamp"):
                assert kind == "timestamp[us]", f"{path.name}.{field.name} is {kind}"
