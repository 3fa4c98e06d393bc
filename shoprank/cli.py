"""The ``shoprank`` command line: a thin click layer over the library.

User mistakes (``ShoprankError``) become one-line errors with a non-zero exit, never tracebacks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from shoprank import summary
from shoprank.config import PROFILES, Settings, load_settings
from shoprank.errors import ConfigError, ShoprankError
from shoprank.progress import progress_bar

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# serving and the loop on Spark's workdirs are to come
DISTRIBUTED_COMMANDS = (
    "simulate", "ingest", "build", "validate", "features", "dataset", "train", "report", "models", "pipeline", "status",
)  # fmt: skip


class _Group(click.Group):
    """A click group that prints shoprank errors as one line and exits with status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShoprankError as exc:
            raise click.ClickException(str(exc)) from None


ENGINE = click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark", "feast"]),
    help="duckdb: our point-in-time joins in DuckDB; spark: ours on the distributed profile's Spark; feast: Feast's "
    "get_historical_features on the profile's offline store (the reference) "
    "[default: spark on the distributed profile, else duckdb].",
)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for everything a run writes [env SHOPRANK_HOME; default ./data].",
)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="TOML settings file.")
@click.option("--seed", type=int, help="Seed of every random choice [env SHOPRANK_SEED; default 7].")
@click.option(
    "--profile",
    type=click.Choice(list(PROFILES)),
    help="Stores: embedded (DuckDB, SQLite), production (Redis + PostgreSQL) or distributed (production's, "
    "with dbt and the offline store on Spark) [env SHOPRANK_PROFILE].",
)
@click.option(
    "--project",
    help="Feast project name [env SHOPRANK_PROJECT; default shoprank, on the production profile one per workdir].",
)
@click.version_option(package_name="shoprank", message="shoprank %(version)s")
@click.pass_context
def cli(
    ctx: click.Context,
    workdir: Path | None,
    config_file: Path | None,
    seed: int | None,
    profile: str | None,
    project: str | None,
) -> None:
    """shoprank: raw shop behavior in, search and recommendation rankings out.

    \b
    Example:
        shoprank pipeline                  # simulate -> ingest -> build -> features -> train -> report
        shoprank --workdir /tmp/shop ingest events.parquet
    """
    options = {"workdir": workdir, "seed": seed, "profile": profile, "project": project}
    ctx.obj = load_settings(config_file, options=options)
    command = ctx.invoked_subcommand
    if ctx.obj.profile == "distributed":
        if command not in DISTRIBUTED_COMMANDS:
            raise ConfigError(
                f'"shoprank {command}" does not run on the distributed profile yet (only '
                f"{', '.join(DISTRIBUTED_COMMANDS)} do); run it on the embedded or production profile"
            )
        from shoprank.warehouse import DRIVER_MEMORY, MEMORY_VARIABLE

        os.environ.setdefault(MEMORY_VARIABLE, DRIVER_MEMORY)  # the driver's DuckDB leaves room for Python


_preset = click.option("--preset", help="Simulator preset: tiny, small, medium or large [default small].")
_days = click.option("--days", type=click.IntRange(min=1), help="Days of shop activity (overrides the preset).")


@cli.command(context_settings=CONTEXT)
@_preset
@_days
@click.pass_obj
def simulate(settings: Settings, preset: str | None, days: int | None) -> None:
    """Generate a realistic shop into WORKDIR/landing (ground truth into WORKDIR/truth).

    \b
    Example:
        shoprank simulate --preset tiny --days 7
    """
    from shoprank.pipeline import run_simulation

    settings = settings.with_overrides(preset=preset, days=days)
    with progress_bar("simulating") as advance:
        result = run_simulation(settings, advance)
    click.echo(summary.simulation(result, settings))


@cli.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    default="contract",
    show_default=True,
    help="Input format: contract, taobao, diginetica, retailrocket or homedepot.",
)
@click.option(
    "--mapping",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML column mapping for any CSV/Parquet/JSONL (overrides --format).",
)
@click.pass_obj
def ingest(settings: Settings, paths: tuple[Path, ...], fmt: str, mapping: Path | None) -> None:
    """Validate files against the raw contracts and load them into the warehouse.

    Accepted rows go to raw.<table>, rejected rows to quarantine.<table> with the reason;
    rows already in the warehouse are counted as duplicates and skipped. All or nothing.

    \b
    Example:
        shoprank ingest data/landing
        shoprank ingest UserBehavior.csv --format taobao
    """
    from shoprank.ingest.run import ingest as run_ingest

    with progress_bar("ingesting") as advance:
        report = run_ingest(
            settings.warehouse, list(paths), fmt, mapping, lambda source, rows: advance(rows, source), settings.raw_lake
        )
    click.echo(summary.ingest(report, settings))


@cli.command(context_settings=CONTEXT)
@click.option("--select", "-s", "select", help="dbt node selection, e.g. marts or +item_features_daily.")
@click.option("--full-refresh", is_flag=True, help="Rebuild incremental models from scratch.")
@click.pass_obj
def build(settings: Settings, select: str | None, full_refresh: bool) -> None:
    """Run `dbt build` (models, snapshots, tests) on the warehouse and export the marts.

    \b
    Example:
        shoprank build
        shoprank build --select marts --full-refresh
    """
    from shoprank.build import dbt_build

    with progress_bar("dbt build") as advance:
        result = dbt_build(settings, select=select, full_refresh=full_refresh, progress=advance)
    click.echo(summary.build(result))


@cli.command(context_settings=CONTEXT)
@click.argument("user_ids", nargs=-1, required=True)
@click.pass_obj
def forget(settings: Settings, user_ids: tuple[str, ...]) -> None:
    """Erase users from the workdir: warehouse tables, marts (rebuilt), files (landing, served
    logs, rejected events, training frames) and the online store; a tombstone keeps an old file
    from bringing them back. Models trained before keep what they learned: retrain them.

    \b
    Example:
        shoprank forget u000042 u000107
    """
    from shoprank.forget import forget as run_forget

    erasure = run_forget(settings, user_ids, lambda place: click.echo(f"Erasing from the {place}..."))
    for place, count in erasure.removed.items():
        click.echo(f"  {place}: {count:,} removed")
    users = ", ".join(erasure.users)
    click.echo(
        f"Forgot {users}: {sum(erasure.removed.values()):,} rows, lines and keys in {len(erasure.removed)} places"
    )
    click.echo('Models trained before still carry what they learned from them: run "shoprank train" to retrain')


@cli.command(context_settings=CONTEXT)
@click.pass_obj
def validate(settings: Settings) -> None:
    """Check every mart against its Pandera contract; fails on the first broken mart.

    \b
    Example:
        shoprank validate
    """
    from shoprank.validate import validate_marts

    with progress_bar("validating") as advance:
        reports = validate_marts(settings, advance)
    click.echo(summary.validation(reports))


@cli.command(context_settings=CONTEXT)
@_preset
@_days
@click.pass_obj
def pipeline(settings: Settings, preset: str | None, days: int | None) -> None:
    """The main job: simulate -> ingest -> dbt build -> validate -> features apply ->
    materialize -> training frames -> train, evaluate, register and report a ranker.

    \b
    Example:
        shoprank pipeline
        shoprank --workdir /tmp/shop pipeline --preset tiny
    """
    from shoprank.pipeline import run_pipeline

    settings = settings.with_overrides(preset=preset, days=days)
    result = run_pipeline(settings, progress_bar)
    click.echo(summary.pipeline(result, settings))


@cli.command(context_settings=CONTEXT)
@_preset
@click.option(
    "--days", type=click.IntRange(min=1), default=1, show_default=True, help="Live days after the served data."
)
@click.option(
    "--speed",
    type=click.FloatRange(min=1.0),
    help="How much faster than the wall clock the service's clock runs (3600: a day in 24 s) "
    "[default: the fastest, up to 3600, that asks no list over 5 minutes late].",
)
@click.pass_obj
def loop(settings: Settings, preset: str | None, days: int, speed: float | None) -> None:
    """Close the loop on a workdir `shoprank pipeline` ran on: serve its models
    (`shoprank serve --as-of materialized --speed SPEED`) to the simulator's users for DAYS live
    days (their clicks, carts and purchases posted to /v1/events), then ingest what they did,
    rebuild, rematerialize and retrain, and show each new model next to the one that served, on
    the same test rows. The simulator's preset is found from the workdir's users; give the --seed
    (and [simulate] options) it was simulated with.

    \b
    Example:
        shoprank --workdir /tmp/shop pipeline --preset tiny
        shoprank --workdir /tmp/shop loop --days 1
    """
    from shoprank.loop import run_loop

    settings = settings.with_overrides(preset=preset)
    result = run_loop(settings, days, speed, progress_bar)
    click.echo(summary.loop(result, settings))


@cli.group(context_settings=CONTEXT)
def features() -> None:
    """The Feast feature store over the marts: apply definitions, materialize, status.

    \b
    Example:
        shoprank features apply
        shoprank --profile production features materialize
    """


@features.command("apply", context_settings=CONTEXT)
@click.pass_obj
def features_apply(settings: Settings) -> None:
    """Register feature_repo/ (entities, views, services) in the workdir's feature store.

    \b
    Example:
        shoprank --workdir /tmp/shop features apply
    """
    from shoprank.features.definitions import apply

    with progress_bar("feast apply"):
        result = apply(settings)
    click.echo(summary.definitions(result, settings))


@features.command("materialize", context_settings=CONTEXT)
@click.option(
    "--end",
    type=click.DateTime(),
    help="Materialize up to this time (UTC) [default: the newest event time in the marts].",
)
@click.option("--view", "views", multiple=True, help="Only this feature view (repeatable).")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Refill the views from their marts whatever the registry records (an emptied store, a lost table).",
)
@click.pass_obj
def features_materialize(settings: Settings, end, views: tuple[str, ...], rebuild: bool) -> None:
    """Write the latest feature values into the online store, from where the last run stopped
    (with --rebuild: from the marts, as a first run would, recreating missing tables).

    \b
    Example:
        shoprank features materialize
        shoprank --profile production features materialize --view user_features
        shoprank features materialize --rebuild     # after "features status" found the store emptied
    """
    from shoprank.features.materialize import materialize

    with progress_bar("rebuilding" if rebuild else "materializing") as advance:
        result = materialize(settings, end, list(views) or None, advance, rebuild)
    click.echo(summary.materialized(result))


@features.command("status", context_settings=CONTEXT)
@click.pass_context
def features_status(ctx: click.Context) -> None:
    """Show each online view: materialized until, newest value, entities, what the online store
    really holds (entities, sampled newest ones), rows still pending. Exits with 1 when the store
    holds less than the registry says was materialized.

    \b
    Example:
        shoprank features status
    """
    from shoprank.features.online_status import online_status

    statuses = online_status(ctx.obj)
    click.echo(summary.online(statuses, ctx.obj))
    if any(status.problem for status in statuses):
        ctx.exit(1)


@cli.group(context_settings=CONTEXT)
def dataset() -> None:
    """Point-in-time training frames from the feature store.

    \b
    Example:
        shoprank dataset build --service ranker_v1
    """


@dataset.command("build", context_settings=CONTEXT)
@click.option("--service", required=True, help="Feature service, e.g. ranker_v1 or search_ranker_v1.")
@ENGINE
@click.pass_obj
def dataset_build(settings: Settings, service: str, engine: str | None) -> None:
    """Join the labels mart to a feature service, point in time, into WORKDIR/datasets/SERVICE.

    \b
    Example:
        shoprank dataset build --service search_ranker_v1
    """
    from training.dataset import build_dataset

    with progress_bar(f"dataset {service}") as advance:
        result = build_dataset(settings, service, engine, progress=advance)
    click.echo(summary.dataset(result))


_labels = click.option(
    "--labels",
    type=click.Choice(["served", "candidates", "judgments"]),
    default="served",
    show_default=True,
    help="Label source: served lists, candidate lists with next-day interactions, or human judgments.",
)


def _label_source(name: str):
    """The named label source (None: the service's served lists)."""
    from training import labels

    if name == "candidates":
        return labels.candidates()
    return labels.judgments() if name == "judgments" else None


@cli.command(context_settings=CONTEXT)
@click.option("--service", default="ranker_v2", show_default=True, help="Feature service the model reads.")
@_labels
@click.option("--algorithm", type=click.Choice(["lightgbm", "xgboost"]), help="Model [default: [train] or lightgbm].")
@click.option(
    "--position",
    type=click.Choice(["feature", "unbiased", "none"]),
    help="Position-bias handling [default: [train] or feature].",
)
@click.option("--prior", help="Feature to boost from, e.g. query_title_match__title_bm25 [default: [train] or none].")
@click.option("--tune", "trials", type=click.IntRange(min=0), default=0, help="Random-search trials before training.")
@click.pass_obj
def train(
    settings: Settings,
    service: str,
    labels: str,
    algorithm: str | None,
    position: str | None,
    prior: str | None,
    trials: int,
) -> None:
    """Train a ranker on the past, evaluate it against baselines on the future, register it and
    write its report.

    \b
    Example:
        shoprank train
        shoprank train --service search_ranker_v1 --algorithm xgboost --tune 8
        shoprank train --labels judgments --service search_ranker_v2 --prior query_title_match__title_bm25
    """
    from training.run import ranker_config, train_model

    config = ranker_config(settings, algorithm=algorithm, position=position, prior=prior)
    with progress_bar(f"train {service}") as advance:
        run = train_model(settings, service, _label_source(labels), config, trials, advance)
    click.echo(summary.trained(run))


@cli.command(context_settings=CONTEXT)
@click.option("--service", default="ranker_v2", show_default=True, help="Feature service of the model.")
@click.option("--version", help="Model version [default: production, else the newest].")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="HTML file [default: in the version].")
@click.pass_obj
def report(settings: Settings, service: str, version: str | None, output: Path | None) -> None:
    """Write a model's self-contained HTML report (metrics vs baselines, curves, importance, lineage).

    \b
    Example:
        shoprank report --service search_ranker_v1 --output report.html
    """
    from training.registry import get
    from training.report import write_report

    model = get(settings, service, version)
    click.echo(f"Report of {model.name}: {write_report(model.path, output)}")


@cli.command(context_settings=CONTEXT)
@click.argument("query")
@click.option("--user", "user_id", help="Rank for this user's features [default: anonymous].")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Results to print.")
@click.option("--service", default="search_ranker_v2", show_default=True, help="Feature service of the model.")
@click.option("--version", help="Model version [default: production, else the newest].")
@click.pass_obj
def search(settings: Settings, query: str, user_id: str | None, k: int, service: str, version: str | None) -> None:
    """Answer QUERY as serving would: candidates from the catalog's text index (misspellings
    corrected, backfilled with popular items of the matched categories), features from the online
    store, ordered by the search model; each result with its three largest feature contributions.

    \b
    Example:
        shoprank search "cordless drill 18v" --user u000042 -k 5
    """
    import asyncio

    from serving.search import Searcher

    searcher = Searcher.open(settings, service, version)
    click.echo(summary.searched(query, asyncio.run(searcher.search(query, user_id, k, explain=True))))


@cli.command(context_settings=CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--service", default="search_ranker_v2", show_default=True, help="Feature service of the model.")
@click.option("--version", help="Model version [default: production, else the newest].")
@click.option("--keyed-ranking", is_flag=True, help="Ranking endpoints also need the SHOPRANK_API_KEY key.")
@click.option(
    "--as-of",
    default="now",
    show_default=True,
    help='The service\'s clock: "now", "materialized" (a past shop served from the end of its online data on) '
    "or an ISO time.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=1.0),
    default=1.0,
    help="How much faster than the wall clock a clock of --as-of runs (3600: an hour a second).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes answering on the port (a ranking is CPU-bound: one per core).",
)
@click.option(
    "--store-budget-ms",
    type=click.FloatRange(min=1.0),
    help="Time an online read may take, connect included; past it the ranking answers from its fallback [default: 20].",
)
@click.pass_obj
def serve(
    settings: Settings,
    host: str,
    port: int,
    service: str,
    version: str | None,
    keyed_ranking: bool,
    as_of: str,
    speed: float,
    workers: int,
    store_budget_ms: float | None,
) -> None:
    """Serve search, recommendations and rerank over HTTP (FastAPI + uvicorn; OpenAPI at /docs):
    POST /v1/search, /v1/recommend, /v1/rerank and /v1/events; GET /health and /metrics.

    \b
    Example:
        shoprank serve --port 8000
        curl -s localhost:8000/v1/search -H 'content-type: application/json' -d '{"query": "drill", "k": 5}'
    """
    from serving import startup
    from serving.clock import Clock
    from serving.online import BUDGET_SECONDS
    from serving.workers import ServeOptions, run

    clock = Clock.parse(as_of, startup.check(settings, service, version), speed)
    click.echo(f"Starting shoprank on http://{host}:{port} with {workers} worker(s) (OpenAPI at /docs)")
    budget = BUDGET_SECONDS if store_budget_ms is None else store_budget_ms / 1000
    options = ServeOptions(settings, service, version, keyed_ranking, clock, budget)
    run(options, host, port, workers)


@cli.command(context_settings=CONTEXT)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Served requests to check (all their items), chosen at random with --seed.",
)
@ENGINE
@click.pass_obj
def parity(settings: Settings, sample: int, engine: str | None) -> None:
    """Check training-serving parity: recompute the features `shoprank serve` logged for served
    items (WORKDIR/serving/features) offline at their request times, the way training frames are
    built, and compare them value by value; exit with 1 on any mismatch (for CI).

    A past shop (simulated, replayed) served on the wall clock reads online values that training
    would see expired (older than their view's TTL) or not at all: serve it with
    `shoprank serve --as-of materialized`, whose clock starts where the online data ends.

    \b
    Example:
        shoprank serve --as-of materialized     # serve some requests, then stop it
        shoprank parity --sample 500
    """
    from serving.parity import check_parity, render

    report = check_parity(settings, sample, engine=engine)
    click.echo(render(report))
    if report.mismatches:
        raise click.exceptions.Exit(1)


@cli.command("evaluate-judgments", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--service", default="search_ranker_v2", show_default=True, help="Feature service of the model.")
@click.option("--version", help="Model version [default: production, else the newest].")
@click.option("--scale", nargs=2, type=float, default=(1.0, 3.0), show_default=True, help="Lowest and highest grade.")
@click.pass_obj
def evaluate_judgments(
    settings: Settings, file: Path, service: str, version: str | None, scale: tuple[float, float]
) -> None:
    """Rank each query's judged items at random, by BM25 and with the search model (as serving
    ranks them), and print NDCG@5 and NDCG@10 with the share of the random -> ideal gap each
    closes. FILE is a judgment list in Home Depot's format (id,product_uid,product_title,
    search_term,relevance); items absent from the catalog are ranked on the file's titles. Use
    judgments the model was not trained on.

    \b
    Example:
        shoprank evaluate-judgments judgments.csv --service search_ranker_v2
    """
    from serving.judgments import check_judgments

    click.echo(summary.judgments(check_judgments(settings, file, service, version, scale), file))


@cli.group(context_settings=CONTEXT)
def models() -> None:
    """The model registry: list, show, promote and compare trained versions.

    \b
    Example:
        shoprank models list
        shoprank models promote ranker_v1 v0002
    """


@models.command("list", context_settings=CONTEXT)
@click.option("--service", help="Only this feature service's models.")
@click.pass_obj
def models_list(settings: Settings, service: str | None) -> None:
    """One line per version: algorithm, labels, NDCG@10 vs best baseline, when trained.

    \b
    Example:
        shoprank models list --service ranker_v1
    """
    from training.registry import promoted, versions

    found = versions(settings, service)
    click.echo(summary.model_list(found, {m.card["service"]: promoted(settings, m.card["service"]) for m in found}))


@models.command("show", context_settings=CONTEXT)
@click.argument("service")
@click.argument("version", required=False)
@click.pass_obj
def models_show(settings: Settings, service: str, version: str | None) -> None:
    """A version's card: features, windows, lineage, parameters, metrics.

    \b
    Example:
        shoprank models show ranker_v1 v0001
    """
    from training.registry import get

    click.echo(summary.model_card(get(settings, service, version)))


@models.command("promote", context_settings=CONTEXT)
@click.argument("service")
@click.argument("version")
@click.pass_obj
def models_promote(settings: Settings, service: str, version: str) -> None:
    """Make VERSION the production model of SERVICE (what serving loads).

    \b
    Example:
        shoprank models promote ranker_v1 v0002
    """
    from training.registry import promote

    click.echo(f"Promoted {promote(settings, service, version).name} to production")


@models.command("compare", context_settings=CONTEXT)
@click.argument("service")
@click.argument("versions", nargs=-1, required=True)
@click.pass_obj
def models_compare(settings: Settings, service: str, versions: tuple[str, ...]) -> None:
    """Test metrics of versions side by side.

    \b
    Example:
        shoprank models compare ranker_v1 v0001 v0002
    """
    from training.registry import get

    click.echo(summary.model_comparison([get(settings, service, v) for v in versions]))


@cli.command(context_settings=CONTEXT)
@click.pass_obj
def status(settings: Settings) -> None:
    """Show what the workdir holds: rows per warehouse table and mart files.

    \b
    Example:
        shoprank --workdir /tmp/shop status
    """
    from shoprank.pipeline import workdir_status

    click.echo(summary.status(workdir_status(settings), settings))


def main() -> None:
    """Entry point of the ``shoprank`` script."""
    cli(prog_name="shoprank")
