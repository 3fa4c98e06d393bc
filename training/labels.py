"""Label sources: where the rows of a training frame come from.

Every source yields the same entity rows, one per (group, item): ``query_id`` (the group: one
served list, one search, or one user x cutoff), ``user_id``, ``item_id``, ``event_timestamp``
(when the ranking happened: features must come from before it) and a graded ``label`` in 0..3,
plus the context columns ``position``, ``surface``, ``query`` and ``query_norm`` (missing where a
source has none). ``training.dataset`` joins them to a feature service point in time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from shoprank.config import Settings
from shoprank.errors import ConfigError, ContractError
from shoprank.warehouse import literal, mart
from training.pit import connect
from training.signals import (
    EVENTS,
    GRADE,
    HISTORY,
    as_of,
    interval,
    neighbours,
    popularity,
    recent_items,
    register_events,
)

LABEL_COLUMNS = ("query_id", "user_id", "item_id", "event_timestamp", "label")
CONTEXT_COLUMNS = ("position", "surface", "query", "query_norm")
SEARCH_SURFACES = ("search",)
LIST_SURFACES = ("recommend", "browse")


@dataclass(frozen=True)
class LabelSource:
    """A named way to make labelled entity rows.

    Attributes:
        name: Recorded with every model trained on it (``served``, ``candidates``, ``judgments``).
        select: Given an in-memory DuckDB connection and the workdir, returns a ``select`` of
            ``LABEL_COLUMNS + CONTEXT_COLUMNS`` (it may register relations on the connection).
        recall: For generated candidate lists, measures what share of the positives they hold
            (the cap of every ranker trained on them).
    """

    name: str
    select: Callable[[duckdb.DuckDBPyConnection, Settings], str]
    recall: Callable[[Settings], CandidateRecall] | None = None


def served(surfaces: tuple[str, ...]) -> LabelSource:
    """Served lists with graded interactions (the ``fct_labels`` mart) of the given surfaces."""

    def select(con: duckdb.DuckDBPyConnection, settings: Settings) -> str:
        labels = mart(settings, "fct_labels")
        found = {s for (s,) in con.execute(f"select distinct surface from read_parquet({literal(labels)})").fetchall()}
        if not found & set(surfaces):
            raise ContractError(
                f"No labels with surface in {list(surfaces)} in {labels} (it has {sorted(found)}); "
                'pick surfaces the shop serves or run "shoprank pipeline"'
            )
        columns = ", ".join((*LABEL_COLUMNS, *CONTEXT_COLUMNS))
        return f"select {columns} from read_parquet({literal(labels)}) where surface in ({quoted(surfaces)})"

    return LabelSource("served", select)


def quoted(values: tuple[str, ...]) -> str:
    """SQL string literals, comma separated."""
    return ", ".join(map(literal, values))


GENERATORS = ("repeat", "item_cf", "popularity", "category_popularity")
PER_GENERATOR = dict.fromkeys(GENERATORS, 20)


def candidates(
    cutoffs: str | Sequence[datetime] = "daily",
    window: timedelta = timedelta(days=1),
    per_generator: Mapping[str, int] | None = None,
    history: timedelta = HISTORY,
) -> LabelSource:
    """Candidate lists labelled by the next window, for shops that log no served lists.

    For each cutoff and each user with events in ``history`` before it, the candidates are the
    union of generators, each made only from events strictly before the cutoff and mart rows
    dated at or before it: ``repeat`` (the user's most recent items), ``item_cf`` (co-visitation
    neighbours of those items in ``item_pair_features_weekly``), ``popularity`` (the items with
    most interactions in the 7 days before) and ``category_popularity`` (the top items of the
    categories of the user's recent items). A candidate's label is the user's strongest
    interaction with it in ``[cutoff, cutoff + window)``: 3 purchase, 2 add_to_cart, 1 click,
    favorite or view, 0 none. A view counts as a click because click-less logs (Taobao's are
    ~89% page views, "pv") record interest as views. ``query_id`` is ``<user_id>@<cutoff, %Y-%m-%dT%H>``,
    ``event_timestamp`` the cutoff, ``surface`` "candidates", ``position`` missing.

    Args:
        cutoffs: ``"daily"`` (every midnight UTC after the first event day up to the last event
            day) or the cutoff times (naive times are UTC).
        window: How long after a cutoff interactions label its candidates.
        per_generator: Candidates per user and cutoff of each generator (``PER_GENERATOR`` by
            default; 0 turns a generator off).
        history: How far back a user's recent items and categories reach.

    Raises:
        ConfigError: Unknown cutoffs or generator names.
    """
    plan = _candidate_plan(cutoffs, window, per_generator, history)

    def select(con: duckdb.DuckDBPyConnection, settings: Settings) -> str:
        _candidate_tables(con, settings, plan)
        return (
            "select c.user_id || '@' || strftime(c.ts, '%Y-%m-%dT%H') as query_id, c.user_id, c.item_id, "
            "c.ts as event_timestamp, cast(coalesce(o.label, 0) as integer) as label, cast(null as integer) as position, "
            "'candidates' as surface, cast(null as varchar) as query, cast(null as varchar) as query_norm "
            "from candidates c left join outcomes o using (user_id, ts, item_id)"
        )

    return LabelSource(
        "candidates", select, lambda settings: candidate_recall(settings, cutoffs, window, per_generator, history)
    )


@dataclass(frozen=True)
class CandidateRecall:
    """How many next-window positives the candidate lists contain: the cap of every ranker.

    Attributes:
        positives: (user, cutoff, item) with an interaction in the window, of users with candidates.
        recall: Share of ``positives`` among the candidates.
        by_generator: Share of ``positives`` each generator proposes.
        groups: (user, cutoff) lists with at least one positive candidate (what metrics average over).
        candidates: Candidate rows (all lists).
        uncovered: Positives of users without events in the history (they get no list).
    """

    positives: int
    recall: float
    by_generator: dict[str, float]
    groups: int
    candidates: int
    uncovered: int


def candidate_recall(
    settings: Settings,
    cutoffs: str | Sequence[datetime] = "daily",
    window: timedelta = timedelta(days=1),
    per_generator: Mapping[str, int] | None = None,
    history: timedelta = HISTORY,
) -> CandidateRecall:
    """The recall of ``candidates(cutoffs, window, per_generator, history)`` on ``settings``' shop."""
    plan = _candidate_plan(cutoffs, window, per_generator, history)
    con = connect(settings.datasets / ".spill")
    try:
        _candidate_tables(con, settings, plan)
        flags = ", ".join(f"count(*) filter (where c.{g})" for g in plan.generators)
        positives, found, groups, *proposed = con.execute(
            f"select count(*), count(c.item_id), count(distinct (o.user_id, o.ts)) filter (where c.item_id is not null), {flags} "
            "from outcomes o left join candidates c using (user_id, ts, item_id)"
        ).fetchone()
        (rows,) = con.execute("select count(*) from candidates").fetchone()
        (uncovered,) = con.execute(
            f"select count(distinct (e.user_id, c.ts, e.item_id)) from cutoffs c inner join {EVENTS} e "
            f"on e.event_time >= c.ts and e.event_time < c.ts + {interval(plan.window)} "
            "anti join anchors a on a.user_id = e.user_id and a.ts = c.ts"
        ).fetchone()
    finally:
        con.close()
    share = [n / positives if positives else float("nan") for n in (found, *proposed)]
    return CandidateRecall(
        positives, share[0], dict(zip(plan.generators, share[1:], strict=True)), groups, rows, uncovered
    )


@dataclass(frozen=True)
class _CandidatePlan:
    cutoffs: tuple[datetime, ...] | None  # None: daily
    window: timedelta
    per_generator: dict[str, int]
    history: timedelta

    @property
    def generators(self) -> tuple[str, ...]:
        return tuple(g for g in GENERATORS if self.per_generator[g] > 0)


def _candidate_plan(
    cutoffs: str | Sequence[datetime],
    window: timedelta,
    per_generator: Mapping[str, int] | None,
    history: timedelta,
) -> _CandidatePlan:
    unknown = set(per_generator or {}) - set(GENERATORS)
    if unknown:
        raise ConfigError(f"Unknown candidate generator(s) {sorted(unknown)}; use {', '.join(GENERATORS)}")
    if isinstance(cutoffs, str) and cutoffs != "daily":
        raise ConfigError(f'Unknown cutoffs "{cutoffs}"; use "daily" or a list of times')
    times = None if isinstance(cutoffs, str) else tuple(_utc(t) for t in cutoffs)
    return _CandidatePlan(times, window, {**PER_GENERATOR, **(per_generator or {})}, history)


def _candidate_tables(con: duckdb.DuckDBPyConnection, settings: Settings, plan: _CandidatePlan) -> None:
    """Create ``cutoffs``, ``anchors`` (user, cutoff), ``candidates`` (user, cutoff, item and a
    flag per generator) and ``outcomes`` (user, cutoff, item, label of the next window)."""
    register_events(con, settings)
    if plan.cutoffs is None:
        con.execute(
            "create or replace temp table cutoffs as select cast(range as timestamp) as ts from "
            f"(select min(event_time)::date + 1 as first, max(event_time)::date + 1 as last from {EVENTS}), "
            "range(first, last, interval 1 day)"
        )
    else:
        con.execute("create or replace temp table cutoffs (ts timestamp)")
        con.executemany("insert into cutoffs values (?)", [(t,) for t in plan.cutoffs])
    con.execute(
        "create or replace temp table anchors as select distinct e.user_id, c.ts from cutoffs c "
        f"inner join {EVENTS} e on e.event_time < c.ts and e.event_time >= c.ts - {interval(plan.history)}"
    )
    con.execute(f"create or replace temp table recent as {recent_items('select * from anchors', plan.history)}")
    proposals = " union all ".join(
        f"select user_id, ts, item_id, '{g}' as generator from ({_GENERATORS[g](settings, plan.per_generator[g])})"
        for g in plan.generators
    )
    flags = ", ".join(f"bool_or(generator = '{g}') as {g}" for g in plan.generators)
    con.execute(
        f"create or replace temp table candidates as select user_id, ts, item_id, {flags} from ({proposals}) group by all"
    )
    con.execute(
        f"create or replace temp table outcomes as select a.user_id, a.ts, e.item_id, max({GRADE}) as label "
        f"from anchors a inner join {EVENTS} e on e.user_id = a.user_id "
        f"and e.event_time >= a.ts and e.event_time < a.ts + {interval(plan.window)} group by all"
    )


def _top(select: str, order: str, n: int) -> str:
    """The first ``n`` rows per (user, cutoff) of ``select`` by ``order``."""
    return f"select * from ({select}) qualify row_number() over (partition by user_id, ts order by {order}, item_id) <= {n}"


def _repeat(settings: Settings, n: int) -> str:
    return _top("select * from recent", "last_seen desc", n)


def _item_cf(settings: Settings, n: int) -> str:
    return _top(neighbours("select * from recent", settings), "similarity desc", n)


def _popularity(settings: Settings, n: int) -> str:
    top = (
        f"select * from ({popularity(settings)}) where popularity > 0 "
        f"qualify row_number() over (partition by event_timestamp order by popularity desc, item_id) <= {n}"
    )
    return (
        f"select a.user_id, a.ts, p.item_id from ({as_of('select * from anchors', popularity(settings))}) a "
        f"inner join ({top}) p on p.event_timestamp = a.snapshot"
    )


def _category_popularity(settings: Settings, n: int) -> str:
    """The top items of the user's recent categories, round robin (every category's first, then
    second, ...), categories with more of the user's interactions first."""
    items = popularity(settings)
    categories = (
        f"select r.user_id, r.ts, r.snapshot, p.category_path, sum(r.interactions) as weight "
        f"from ({as_of('select * from recent', items)}) r inner join ({items}) p "
        "on p.item_id = r.item_id and p.event_timestamp = r.snapshot group by all"
    )
    ranked = (
        f"select c.user_id, c.ts, p.item_id, p.category_rank, c.weight from ({categories}) c inner join ({items}) p "
        f"on p.category_path = c.category_path and p.event_timestamp = c.snapshot and p.category_rank <= {n}"
    )
    return _top(ranked, "category_rank, weight desc", n)


_GENERATORS = {
    "repeat": _repeat,
    "item_cf": _item_cf,
    "popularity": _popularity,
    "category_popularity": _category_popularity,
}


def _utc(moment: datetime) -> datetime:
    """A naive UTC time."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def judgments() -> LabelSource:
    """Human relevance judgments (the ``fct_judgments`` mart; e.g. Home Depot's).

    One group per normalized query: ``query_id`` = ``query_norm`` (so a split by ``query_id`` is a
    split by query), ``user_id`` "anonymous", ``surface`` "search", ``position`` missing, and one
    ``event_timestamp`` for all, the end of the last day with data (judgments carry no time, and
    the raters judged with the whole catalog known). The label cuts the raters' grade scale into
    quarters (Home Depot's averages 1..3: [1, 1.5) 0, [1.5, 2) 1, [2, 2.5) 2, [2.5, 3] 3); the
    select also carries the raw ``grade``.
    """

    def select(con: duckdb.DuckDBPyConnection, settings: Settings) -> str:
        path = mart(settings, "fct_judgments")
        columns = ", ".join((*LABEL_COLUMNS, *CONTEXT_COLUMNS, "grade"))
        return f"select {columns} from read_parquet({literal(path)})"

    return LabelSource("judgments", select)
