"""Plain-text summaries that every command prints at the end of its run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only types: `shoprank --help` stays fast
    from serving.judgments import JudgmentCheck
    from serving.search import SearchResult
    from shoprank.build import BuildResult
    from shoprank.config import Settings
    from shoprank.features.definitions import Definitions
    from shoprank.features.materialize import MaterializeResult
    from shoprank.features.online_status import ViewStatus
    from shoprank.ingest.run import IngestReport
    from shoprank.loop import Comparison, LoopResult
    from shoprank.pipeline import PipelineResult, WorkdirStatus
    from shoprank.simulate import SimulationSummary
    from shoprank.simulate.live import LiveReport
    from shoprank.validate import MartReport
    from training.dataset import DatasetResult
    from training.registry import ModelVersion
    from training.run import TrainingRun


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], indent: int = 2) -> str:
    """Align ``rows`` under ``headers``: text left, numbers right with thousands separators."""
    rows = list(rows)
    cells = [list(headers)] + [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], int) for row in rows) for i in range(len(headers))] if rows else []
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(w) if numeric and numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(" " * indent + "  ".join(parts).rstrip())
    return "\n".join(lines)


def simulation(result: SimulationSummary, settings: Settings) -> str:
    """Rows per table and dirt injected by ``shoprank simulate``."""
    options = dict(settings.simulate)
    dirt = ", ".join(f"{kind.replace('_', ' ')} {count:,}" for kind, count in result.dirt.items())
    return "\n".join(
        [
            f"Simulated preset {options.pop('preset')} (seed {settings.seed}) in {result.seconds:.1f} s "
            f"into {settings.landing}",
            table(["table", "rows"], sorted(result.rows.items())),
            f"Dirt injected: {dirt}",
            f"Ground truth, for evaluation only: {settings.truth}",
        ]
    )


def ingest(report: IngestReport, settings: Settings) -> str:
    """Counts per table, quarantine reasons and source notes of ``shoprank ingest``."""
    rows = [(name, c.read, c.accepted, c.quarantined, c.duplicates) for name, c in sorted(report.tables.items())]
    lines = [
        f"Ingested {report.files} file(s) in {report.seconds:.1f} s into {settings.warehouse} (batch {report.batch_id})",
        table(["table", "read", "accepted", "quarantined", "duplicates"], rows),
    ]
    reasons = [
        (name, count, reason) for name, c in sorted(report.tables.items()) for reason, count in c.reasons.most_common()
    ]
    if reasons:
        lines += ["Quarantined by reason:", table(["table", "rows", "reason"], reasons)]
    lines += [f"Note: {note}" for note in report.notes]
    if report.recovered:
        lines.append(f"Rolled back {len(report.recovered)} earlier run(s) cut off before they finished")
    return "\n".join(lines)


def build(result: BuildResult) -> str:
    """What ``dbt build`` ran and the size of each mart."""
    statuses = ", ".join(f"{key} {count}" for key, count in sorted(result.statuses.items()))
    return "\n".join(
        [
            f"dbt build passed in {result.seconds:.1f} s: {statuses}",
            table(["mart", "rows"], sorted(result.marts.items())),
        ]
    )


def validation(reports: list[MartReport]) -> str:
    """Marts checked by ``shoprank validate``."""
    return "\n".join(
        [
            f"All {len(reports)} marts meet their contracts",
            table(["mart", "rows", "columns"], [(r.name, r.rows, r.columns) for r in reports]),
        ]
    )


def pipeline(result: PipelineResult, settings: Settings) -> str:
    """Every step's summary, then the time each step took."""
    return "\n\n".join(
        [
            simulation(result.simulation, settings),
            ingest(result.ingest, settings),
            build(result.build),
            validation(result.marts),
            definitions(result.definitions, settings),
            materialized(result.materialized),
            "\n".join(dataset(d) for d in result.datasets),
            *(trained(run) for run in result.trainings),
            finished("Pipeline", result.seconds, settings),
        ]
    )


def finished(job: str, seconds: dict[str, float], settings: Settings) -> str:
    """How long a job and each of its steps took."""
    timings = ", ".join(f"{step} {took:.1f} s" for step, took in seconds.items())
    return f"{job} finished in {sum(seconds.values()):.1f} s ({timings}); workdir {settings.workdir}"


def status(result: WorkdirStatus, settings: Settings) -> str:
    """Rows per table of the workdir's warehouse."""
    rows = [(schema, name, count) for schema, tables in result.schemas.items() for name, count in tables.items()]
    return "\n".join([f"Warehouse {settings.warehouse}", table(["schema", "table", "rows"], rows)])


def definitions(result: Definitions, settings: Settings) -> str:
    """Views and services registered by ``shoprank features apply``."""
    rows = [
        (
            v.name,
            v.kind,
            ", ".join(v.entities) or "-",
            v.features,
            v.source,
            "-" if v.ttl_days is None else f"{v.ttl_days:g} d",
        )
        for v in result.views
    ]
    services = ", ".join(f"{name} ({count} features)" for name, count in result.services.items())
    return "\n".join(
        [
            f"Feature store of {settings.workdir} (profile {settings.profile}, project {settings.project})",
            table(["view", "kind", "entities", "features", "source", "ttl"], rows),
            f"Services: {services}",
        ]
    )


def materialized(result: MaterializeResult) -> str:
    """Entity rows written per view by ``shoprank features materialize``."""
    rows = [
        (v.view, f"{v.start:%Y-%m-%d %H:%M}", f"{v.end:%Y-%m-%d %H:%M}", v.rows, f"{v.seconds:.1f}")
        for v in result.views
    ]
    return "\n".join(
        [
            f"Materialized {sum(v.rows for v in result.views):,} entity rows into {result.online_store} "
            f"up to {result.end:%Y-%m-%d %H:%M} UTC in {result.seconds:.1f} s",
            table(["view", "from", "to", "rows", "seconds"], rows),
        ]
    )


def online(statuses: list[ViewStatus], settings: Settings) -> str:
    """Per view: how far it is materialized, its newest value, what the store holds of it (the
    entities online, and of the sampled newest ones) and what is still pending; then each view
    whose store disagrees with the registry, with the fix."""

    def when(moment):
        return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"

    rows = [
        (
            s.view,
            when(s.materialized_until),
            when(s.newest_value_at),
            s.entities,
            "missing" if s.stored is None else s.stored,
            f"{s.present}/{s.sampled}",
            s.pending_rows,
        )
        for s in statuses
    ]
    problems = [f"  {s.view}: {s.problem}" for s in statuses if s.problem]
    verdict = (
        [f"{len(problems)} view(s) hold less online than the registry says was materialized:", *problems]
        if problems
        else ["The online store holds what the registry says was materialized."]
    )
    return "\n".join(
        [
            f"Online store of {settings.workdir} (profile {settings.profile}, project {settings.project})",
            table(
                ["view", "materialized until", "newest value", "entities", "online", "sampled", "pending rows"], rows
            ),
            *verdict,
        ]
    )


def dataset(result: DatasetResult) -> str:
    """Where a training frame went and its size."""
    return (
        f"Training frame of {result.service} ({result.engine}): {result.rows:,} rows x {len(result.columns)} columns "
        f"({len(result.features)} features) in {result.seconds:.1f} s -> {result.path}"
    )


HEADLINE_METRICS = ("ndcg@5", "ndcg@10", "ndcg@20", "map", "mrr", "recall@20", "auc")


def trained(run: TrainingRun) -> str:
    """The headline of a training run, its test metrics against the baselines, and its report."""
    card, metrics = run.model.card, run.evaluation.metrics
    lines = [trained_headline(run)]
    if "candidate_recall" in card:
        recall = card["candidate_recall"]
        shares = ", ".join(f"{name} {share:.3f}" for name, share in recall["by_generator"].items())
        lines.append(
            f"  candidate recall {recall['recall']:.3f} of {recall['positives']:,} next-window positives "
            f"({shares}): the cap of every ranker on these lists"
        )
    lines.append("")
    for against in dict.fromkeys(metrics["against"].to_list()):
        chosen = metrics.filter(metrics["against"] == against)
        rankers = list(dict.fromkeys(chosen["ranker"].to_list()))
        values = {(r, m): v for r, m, v in zip(chosen["ranker"], chosen["metric"], chosen["value"], strict=True)}
        lines.append(f"Test metrics against {'true relevance' if against == 'truth' else 'observed labels'}:")
        rows = [[r, *(f"{values.get((r, m), float('nan')):.4f}" for m in HEADLINE_METRICS)] for r in rankers]
        lines += [table(["ranker", *HEADLINE_METRICS], rows), ""]
        if "random" in rankers and against == "labels" and card["label_source"] == "judgments":
            lines += [_random_gaps(rankers, values), ""]
    lines.append(f"Report: {run.report}")
    return "\n".join(lines)


def trained_headline(run: TrainingRun) -> str:
    """What a training run trained, on what, and its headline."""
    card = run.model.card
    return (
        f"Trained {run.model.name}: {card['algorithm']} on {card['rows']['train']:,} rows "
        f"({card['label_source']} labels, {len(card['features'])} features, {card['best_iteration']} rounds) in {run.seconds:.1f} s\n"
        f"  {headline(run.evaluation.headline)}"
    )


def _random_gaps(rankers: list[str], values: dict[tuple[str, str], float]) -> str:
    """Each ranker's share of the gap from random order to the ideal order (NDCG 1)."""
    from training.metrics import gap_closed

    shares = {
        metric: {r: gap_closed(values[(r, metric)], values[("random", metric)]) for r in rankers}
        for metric in ("ndcg@5", "ndcg@10")
    }
    rows = [[r, *(f"{shares[m][r]:.1%}" for m in shares)] for r in rankers if r != "random"]
    return "\n".join(["Share of the random -> ideal gap closed:", table(["ranker", *shares], rows)])


def headline(head: dict) -> str:
    """Model vs best baseline on the headline metric, and the share of the oracle gap closed."""
    against = " against true relevance" if head.get("against") == "truth" else ""
    text = f"{head['metric']}{against}: model {head['model']:.4f}"
    if head.get("best_baseline"):
        text += f" vs best baseline {head['best_baseline']} {head['baseline']:.4f} ({head['lift']:+.1f}%)"
    if head.get("gap_closed") is not None:
        text += f"; closes {head['gap_closed']:.0f}% of the logging policy -> oracle gap"
    return text


def model_list(models: list[ModelVersion], promoted: dict[str, str | None]) -> str:
    """One line per registered version."""
    if not models:
        return 'No models yet; run "shoprank train"'
    rows = [
        (
            m.card["service"],
            m.card["version"] + (" *" if promoted.get(m.card["service"]) == m.card["version"] else ""),
            m.card["algorithm"],
            m.card["label_source"],
            f"{m.card['headline']['model']:.4f}",
            f"{m.card['headline']['best_baseline']} {m.card['headline']['baseline']:.4f}",
            m.card["trained_at"],
        )
        for m in models
    ]
    headers = ["service", "version", "algorithm", "labels", "ndcg@10", "best baseline", "trained at"]
    return "\n".join([table(headers, rows), "  * production"])


def model_card(model: ModelVersion) -> str:
    """A version's card in readable lines."""
    card = model.card
    windows = ", ".join(f"{part} {start} .. {end}" for part, (start, end) in card["window"].items())
    lines = [
        f"{model.name}  {card['algorithm']}  trained {card['trained_at']} in {card['train_seconds']} s",
        f"  path          {model.path}",
        f"  labels        {card['label_source']}; rows {card['rows']}; groups {card['groups']}",
        f"  windows       {windows}",
        f"  features      {len(card['features'])} (hash {card['features_hash']}): {', '.join(card['features'])}",
        f"  lineage       {card['lineage']}",
        f"  config        {card['config']}",
        f"  headline      {headline(card['headline'])}",
    ]
    for part, values in card["metrics"].items():
        lines.append(f"  {part:<13} " + ", ".join(f"{m} {v:.4f}" for m, v in values.items() if m != "groups"))
    return "\n".join(lines)


def model_comparison(models: list[ModelVersion]) -> str:
    """Test metrics of several versions side by side."""
    rows = [
        [m, *(f"{model.card['metrics']['test'].get(m, float('nan')):.4f}" for model in models)]
        for m in HEADLINE_METRICS
    ]
    return table(["test metric", *(f"{m.card['version']} {m.card['algorithm']}" for m in models)], rows)


def judgments(check: JudgmentCheck, path: Path) -> str:
    """NDCG of random order, BM25 and the model on a judgment list, with the gap each closes."""
    unknown = f" ({check.unknown_items:,} not in the catalog)" if check.unknown_items else ""
    rows = [
        [r["ranker"], f"{r['ndcg@5']:.4f}", f"{r['ndcg@10']:.4f}", f"{r['gap@5']:.1%}", f"{r['gap@10']:.1%}"]
        for r in check.table.iter_rows(named=True)
    ]
    return "\n".join(
        [
            f"Judgments of {path}: {check.queries:,} queries, {check.rows:,} judged items{unknown}; model {check.model}",
            table(["ranker", "ndcg@5", "ndcg@10", "gap@5", "gap@10"], rows),
            "gap: the share of the random -> ideal NDCG gap closed",
        ]
    )


def searched(query: str, result: SearchResult, title_width: int = 48) -> str:
    """The ranked results of a query, with where each came from and why it ranks there."""
    if not result.items:
        return f'No item matches "{query}", even with spelling corrected; try other words'
    rows = [
        [
            r["rank"],
            r["item_id"],
            f"{r['score']:.4f}",
            f"{r['bm25']:.2f}",
            "backfill" if r["backfill"] else "match",
            _clip(r["title"] or "", title_width),
            ", ".join(f"{c['feature']} {c['value']:+.2f}" for c in r["contributions"]),
        ]
        for r in result.items
    ]
    return "\n".join(
        [
            f'Search "{query}": {result.candidates:,} candidates ({result.backfilled:,} backfilled), '
            f"ranked by {result.model}",
            table(["rank", "item", "score", "bm25", "from", "title", "top contributions"], rows),
        ]
    )


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


COMPARED_METRICS = ("ndcg@5", "ndcg@10", "map", "mrr", "auc")


def loop(result: LoopResult, settings: Settings) -> str:
    """The live days, the rebuild's steps, the new models and each one next to the version that served."""
    return "\n\n".join(
        [
            live(result.live, result.earlier_lists, result.service_log),
            ingest(result.loaded.ingest, settings),
            build(result.loaded.build),
            validation(result.loaded.marts),
            materialized(result.trained.materialized),
            "\n".join(dataset(d) for d in result.trained.datasets),
            "\n".join(trained_headline(run) for run in result.trained.trainings),
            *(comparison(c) for c in result.comparisons),
            finished("Loop", result.seconds, settings),
        ]
    )


def live(report: LiveReport, earlier: dict[str, tuple[int, int]], log: Path) -> str:
    """Lists, impressions, clicks and click-through per surface of the live days (next to the
    lists served before), the events posted and what failed."""
    before = {**earlier, None: tuple(map(sum, zip(*earlier.values(), strict=True))) or (0, 0)}
    rows = []
    for surface in [*report.impressions, None]:
        lists, shown, clicked = report.totals(surface)
        shown_before, clicked_before = before.get(surface, (0, 0))
        ctr_before = f"{clicked_before / shown_before:.2%}" if shown_before else "-"
        rows.append([surface or "all", lists, shown, clicked, f"{report.ctr(surface):.2%}", ctr_before])
    models = ", ".join(f"{name} ({count:,} lists)" for name, count in report.models.most_common())
    events = ", ".join(f"{kind} {count:,}" for kind, count in report.events.most_common())
    late = report.last_request is not None and report.last_request > report.end
    asked = f", asked until {report.last_request:%Y-%m-%d %H:%M}" if late else ""
    lines = [
        f"Live {report.start:%Y-%m-%d %H:%M} .. {report.end:%Y-%m-%d %H:%M} UTC at {report.speed:,.0f}x on the "
        f"service's clock{asked}, served by {models}",
        table(["surface", "lists", "impressions", "clicks", "ctr", "ctr before"], rows),
        "  ctr: clicked impressions / impressions; before: the lists the warehouse held (the simulator's logging "
        "policy, and earlier loops); browse lists are asked of /v1/recommend with their category",
        f"Events posted: {report.accepted:,} accepted, {report.rejected:,} rejected ({events})",
        f"Failed requests: {report.failed.total():,}; empty answers: {report.empty:,}; rankings from a fallback: "
        f"{report.fallbacks:,}; lists past the live days' end, not asked: {report.past_end:,}; service log {log}",
    ]
    lines += [f"  {count:,} x {reason}" for reason, count in report.failed.most_common(5)]
    mean_delay = report.delay_seconds / max(report.asked(), 1) / 60
    lines.append(
        f"Lists asked {mean_delay:.1f} min after their users came on average, at most "
        f"{report.max_delay_seconds / 60:.1f} min (one client waits for each answer, {report.speed:,.0f} times faster)"
    )
    if report.too_late:
        lines.append(
            "  Some lists were asked later than the label window after their users came: the service answers "
            "slower than --speed asks; give a lower one"
        )
    return "\n".join(lines)


def comparison(result: Comparison) -> str:
    """Two versions side by side on the same test rows, against the true relevance and the labels."""
    values = {(v, a, m): x for v, a, m, x in result.metrics.iter_rows()}
    old, new = result.served, result.retrained
    rows = [
        [
            metric,
            against,
            f"{values[(old, against, metric)]:.4f}",
            f"{values[(new, against, metric)]:.4f}",
            f"{values[(new, against, metric)] - values[(old, against, metric)]:+.4f}",
        ]
        for against in ("truth", "labels")
        for metric in COMPARED_METRICS
        if (old, against, metric) in values
    ]
    start, end = result.window
    unseen = (
        f"; {old} trained and validated on lists up to {result.served_saw[:16]}, inside them: its figures flatter it"
        if result.served_saw
        else ", which neither trained nor validated on"
    )
    return "\n".join(
        [
            f"{result.service}: {old} (served live) vs {new} (retrained) on the same {result.groups:,} test lists "
            f"({start[:16]} .. {end[:16]}), the newest of {new}'s training frame{unseen}",
            table(["metric", "against", old, new, "change"], rows),
            "  truth: the simulator's true relevance; labels: the observed clicks, carts and purchases (on the live "
            f"lists biased to {old}'s order)",
            f"  Each version on its own test window: shoprank models compare {result.service} {old} {new}",
        ]
    )
