"""The ``nurture`` command line: workspace, imports, each stage, full cycles and the outbox."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.resources
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from nurture.cli import api_key as api_key_commands
from nurture.cli import deliveries as delivery_commands
from nurture.cli import evaluate as evaluation_commands
from nurture.cli import journeys as journey_commands
from nurture.cli import preview as preview_commands
from nurture.cli import reports as report_commands
from nurture.cli import serve as serve_commands
from nurture.cli import status as status_commands
from nurture.cli.context import runtime_of
from nurture.cli.failure_messages import run_command
from nurture.cli.progress_bar import command_progress
from nurture.cli.recommend import recommend_app
from nurture.errors import NurtureError
from nurture.runtime import Runtime, resolve_now, settings_from, utc_now
from nurture.settings import DEVELOPMENT_SECRET

if TYPE_CHECKING:
    from nurture.segmentation import SegmentationSummary

# The stages, the orchestration and the domain packages are imported by the commands that run
# them, not here: `nurture --help` and `nurture --version` stay quick (see docs/operations.md).

__all__ = ["app", "main"]

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # error lines stay whole for grep

app = typer.Typer(
    name="nurture",
    help=(
        "Personalised content nurturing for communities: profile members, segment them, match "
        "content and send journeys by email.\n\n"
        "Every option can also be set with an environment variable NURTURE_<NAME> "
        "(NURTURE_DATABASE_URL, NURTURE_EMBEDDING_MODEL...)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
journeys_app = typer.Typer(
    help="The journeys of the workspace: check them, dry-run them, see where members stand, "
    "move members to a journey's current version.",
    no_args_is_help=True,
)
app.add_typer(journeys_app, name="journeys")
journey_commands.register(journeys_app)
member_app = typer.Typer(
    help=(
        "A member's data rights: export everything nurture holds about them (access), or erase "
        "it and never mail the address again (right to be forgotten)."
    ),
    no_args_is_help=True,
)
app.add_typer(member_app, name="member")
app.add_typer(recommend_app, name="recommend")
report_commands.register(app)
app.add_typer(evaluation_commands.evaluate_app, name="evaluate")
app.command()(serve_commands.serve)
preview_commands.register(app)
status_commands.register(app)
delivery_commands.register(app)
api_key_commands.register(app)

REPO_CONTENT = Path(__file__).resolve().parents[2] / "content"


def _show_version(value: bool) -> None:
    """Print ``nurture <version>`` and end the command (``--version``)."""
    if value:
        from nurture import __version__

        typer.echo(f"nurture {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace folder: library/, journeys/, templates/, questionnaire.yaml. "
            "[env NURTURE_WORKSPACE; default: the current folder]",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Folder for the SQLite database, the outbox and rejects files. "
            "[env NURTURE_DATA_DIR; default: ./nurture-data]",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the traceback of an error, and debug logs."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Read settings from the environment and the options common to every command.

    Builds the command's runtime (nothing is opened until a command needs it) and closes it
    when the command ends.
    """
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides: dict[str, Any] = {}
    if workspace is not None:
        overrides["workspace"] = workspace
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    runtime = Runtime(settings_from(overrides), progress=command_progress())
    ctx.obj = runtime
    ctx.call_on_close(runtime.close)


# --- workspace ------------------------------------------------------------------------------


def _workspace_template() -> Path:
    packaged = importlib.resources.files("nurture") / "_workspace_template"
    if packaged.is_dir():
        return Path(str(packaged))
    if REPO_CONTENT.is_dir():
        return REPO_CONTENT
    raise NurtureError("the workspace template is missing from this installation")


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder of the new workspace.")],
    force: Annotated[
        bool, typer.Option("--force", help="Write into a folder that is not empty.")
    ] = False,
) -> None:
    """Create a new workspace in DIRECTORY, copied from the demo workspace (content/)."""
    if directory.exists() and any(directory.iterdir()) and not force:
        raise NurtureError(f"{directory} is not empty; use --force to write into it")
    shutil.copytree(
        _workspace_template(),
        directory,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("nurture-data", "__pycache__"),
    )
    console.print(f"Workspace created in [bold]{directory}[/]. Next:")
    console.print(f"  nurture --workspace {directory} journeys validate")
    console.print(f"  nurture --workspace {directory} import members members.csv")


# --- import ---------------------------------------------------------------------------------


def _print_import(kind: str, path: Path, summary: Any) -> None:
    console.print(
        f"{kind} from {path}: {summary.read} read, {summary.stored} new, "
        f"{summary.updated} updated, {summary.unchanged} unchanged, {summary.refused} refused"
    )
    for problem in summary.problems:
        errors.print(f"  [yellow]refused[/] {escape(str(problem))}", highlight=False)
    if summary.refused:
        errors.print(f"  every refused record is in {summary.rejects_path}")


@app.command("import")
def import_(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="What the file holds: members, answers or activity.")],
    file: Annotated[
        Path, typer.Argument(help="A CSV or JSON Lines file.", exists=True, dir_okay=False)
    ],
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="Where refused records go; default: <data-dir>/rejects/<file>.rejects.csv."
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            help="The CSV delimiter: ',', ';', '|' or 'tab'; default: found from the header."
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="The file's encoding (utf-8, cp1252, latin-1...); default: UTF-8, or "
            "Windows-1252 for a CSV file that is not UTF-8."
        ),
    ] = None,
) -> None:
    """Import members, questionnaire answers or activity events; re-importing adds nothing."""
    from nurture import stages

    if kind not in ("members", "answers", "activity"):
        raise typer.BadParameter("expected members, answers or activity", param_hint="KIND")
    try:
        summary = stages.import_file(
            runtime_of(ctx),
            kind,  # type: ignore[arg-type]
            file,
            rejects,
            delimiter=delimiter,
            encoding=encoding,
        )
    except KeyboardInterrupt:
        errors.print(
            "interrupted: the batches already committed are kept; "
            "run the same command again to finish the import"
        )
        raise typer.Exit(130) from None
    _print_import(kind, file, summary)


# --- stages ---------------------------------------------------------------------------------


def _everyone(runtime: Runtime) -> Runtime:
    """The runtime with the incremental nightly off: a command run by hand redoes everyone."""
    settings = runtime.settings.model_copy(update={"incremental_nightly": False})
    return Runtime(settings, engine=runtime.engine)


@app.command()
def profile(ctx: typer.Context) -> None:
    """Build every member's profile from their answers and activity."""
    from nurture import stages
    from nurture.orchestration import run_stage

    summary = run_stage(_everyone(runtime_of(ctx)), stages.NIGHTLY.stage("profile"), utc_now())
    console.print(
        f"{summary['profiled']} members profiled; {summary['texts_embedded']} new texts embedded"
    )


def _print_segments(summary: SegmentationSummary) -> None:
    table = Table(title=f"{summary.n_segments} segments of {summary.n_members} members")
    table.add_column("segment")
    table.add_column("kind")
    table.add_column("label")
    table.add_column("members", justify="right")
    for key, label in summary.labels.items():
        table.add_row(key, "cluster", label, str(summary.sizes.get(key, 0)))
    for key, label in summary.rule_labels.items():
        table.add_row(key, "rule", label, str(summary.rule_sizes.get(key, 0)))
    console.print(table)
    if summary.quality is not None:
        console.print(f"silhouette score: {summary.quality:.3f} (-1..1, higher is better)")
    for key, error in summary.rule_errors.items():
        errors.print(f"[yellow]rule segment {escape(key)}:[/] {escape(error)}", highlight=False)


@app.command()
def segment(ctx: typer.Context) -> None:
    """Cluster the profiled members into labelled segments and show them."""
    from nurture import stages

    _print_segments(stages.segment(_everyone(runtime_of(ctx)), utc_now()))


@app.command("rename-segment")
def rename_segment(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The segment's key, e.g. seg-3 (see `segments`).")],
    label: Annotated[str | None, typer.Argument(help="The new name; omit it with --reset.")] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Go back to the name segmentation suggests.")
    ] = False,
) -> None:
    """Give a segment the name you chose; later segmentation runs keep it."""
    from nurture.segmentation import rename_segment as rename

    if (label is None) == (not reset):
        raise typer.BadParameter("give a LABEL, or --reset without one")
    with runtime_of(ctx).session() as session:
        try:
            renamed = rename(session, key, None if reset else label)
        except (LookupError, ValueError) as error:
            raise NurtureError(str(error)) from error
        console.print(f"{renamed.key}: {renamed.label}")


@app.command()
def match(
    ctx: typer.Context,
    member: Annotated[
        str | None,
        typer.Option(help="Show this member's recommendations (email) instead of matching."),
    ] = None,
) -> None:
    """Match the content library to every member, or show one member's recommendations."""
    from nurture import stages
    from nurture.orchestration import run_stage

    runtime = runtime_of(ctx)
    now = utc_now()
    if member is not None:
        _show_recommendations(runtime, member, now)
        return
    runtime = _everyone(runtime)
    run_stage(runtime, stages.NIGHTLY.stage("content"), now)
    matched = run_stage(runtime, stages.NIGHTLY.stage("match"), now)
    console.print(
        f"{matched['recommendations']} recommendations for {matched['listed']} members "
        f"(match run {matched['run_id']})"
    )


def _show_recommendations(runtime: Runtime, email: str, now: dt.datetime) -> None:
    from nurture.recommend import recommendations_for
    from nurture.storage import Member

    with runtime.session() as session:
        found = session.scalar(select(Member).where(Member.email == email.strip().lower()))
        if found is None:
            raise NurtureError(f"no member with email {email}")
        items = recommendations_for(session, found.id, now=now)
    if not items:
        console.print(
            f"no recommendations for {escape(email)}: `nurture match` ranks the library for "
            "every member (none when no item is in their language)"
        )
        return
    table = Table(title=f"Recommendations for {escape(email)}")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("item")
    table.add_column("kind")
    table.add_column("lang")
    table.add_column("why")
    for rank, item in enumerate(items, start=1):
        table.add_row(
            str(rank),
            f"{item.score:.3f}",
            f"{escape(item.title)}\n[dim]{escape(item.key)}[/]",
            item.kind,
            item.language,
            escape(item.reason),
        )
    console.print(table)


# --- full cycles ----------------------------------------------------------------------------


def _cycle(runtime: Runtime, now: dt.datetime, use_prefect: bool) -> None:
    from nurture.orchestration import CYCLE, IN_PROCESS, CycleReport, load_orchestrator

    runtime.check_workspace()
    orchestrator = load_orchestrator("prefect" if use_prefect else IN_PROCESS)
    report = CycleReport(orchestrator.run(runtime, CYCLE, now))
    console.print(
        f"profiled {report.profiled} members ({report.texts_embedded} new texts embedded); "
        f"{report.recommendations} recommendations"
    )
    if report.segmentation is not None:
        _print_segments(report.segmentation)
    journeys = vars(report.journeys) if report.journeys else {}
    sent = report.delivery
    console.print(
        f"journeys: {journeys.get('enrolled', 0)} enrolled, "
        f"{journeys.get('messages_queued', 0)} messages queued, "
        f"{journeys.get('quiet_deferred', 0)} held for quiet hours, "
        f"{journeys.get('budget_deferred', 0) + journeys.get('budget_skipped', 0)} over budget, "
        f"{journeys.get('goal_reached', 0)} reached their goal"
    )
    console.print(f"delivery: {sent.sent} sent, {sent.suppressed} suppressed, {sent.failed} failed")
    settings = runtime.settings
    if settings.mail_backend == "outbox":
        index = settings.resolved_outbox_dir / "index.html"
        console.print(f"outbox: {index.resolve()}")


PrefectOption = Annotated[
    bool,
    typer.Option(
        "--prefect/--no-prefect",
        help="Run as Prefect flows (seen in the Prefect UI) or directly in this process.",
    ),
]
NowOption = Annotated[
    dt.datetime | None,
    typer.Option(
        help="Act as if it were this time (UTC), e.g. to see a wait step end; default: now."
    ),
]


AllowBackfillOption = Annotated[
    bool,
    typer.Option(
        "--allow-backfill",
        help="Send even if the journeys would start emailing more of the community at once "
        "than sending.yaml's backfill limit allows (a first run on an existing community); "
        "without it such a run is refused and nothing is enrolled. Same as "
        "NURTURE_ALLOW_BACKFILL=true.",
    ),
]


@contextlib.contextmanager
def _backfill_allowed(runtime: Runtime, allowed: bool) -> Iterator[None]:
    """While the block runs, let the runtime and the flows' tasks send a backfill.

    The tasks of the flows build their settings from the ``NURTURE_*`` environment of this
    process, hence the variable as well as the runtime's settings; both are restored after.
    """
    if not allowed:
        yield
        return
    settings, variable = runtime.settings, os.environ.get(_ALLOW_BACKFILL)
    os.environ[_ALLOW_BACKFILL] = "true"
    runtime.settings = settings.model_copy(update={"allow_backfill": True})
    try:
        yield
    finally:
        runtime.settings = settings
        if variable is None:
            os.environ.pop(_ALLOW_BACKFILL, None)
        else:
            os.environ[_ALLOW_BACKFILL] = variable


_ALLOW_BACKFILL = "NURTURE_ALLOW_BACKFILL"


@app.command()
def run(
    ctx: typer.Context,
    prefect: PrefectOption = True,
    now: NowOption = None,
    allow_backfill: AllowBackfillOption = False,
) -> None:
    """Run one full cycle: import waiting files, profile, segment, match, advance journeys, deliver.

    Files waiting in <data-dir>/imports (members*.csv, answers*.jsonl, activity*.jsonl) are
    imported first, then moved to imports/done or imports/failed. A run that would start
    emailing more of the community at once than the backfill limit of sending.yaml allows is
    refused (see `nurture journeys simulate`) unless --allow-backfill.
    """
    runtime = runtime_of(ctx)
    with _backfill_allowed(runtime, allow_backfill):
        _cycle(runtime, resolve_now(now), prefect)


@app.command()
def demo(
    ctx: typer.Context,
    members: Annotated[int, typer.Option(help="Members in the synthetic community.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the generator.")] = 7,
    prefect: PrefectOption = True,
    now: NowOption = None,
) -> None:
    """Seed a synthetic community (members, answers, activity), then run one full cycle.

    The community is the same for a given seed, so running the demo again sends nothing new.
    Its first run is a backfill (a whole community seen at once), allowed here. How many emails
    go out depends on the hour (members' quiet hours): ``--now`` fixes it.
    """
    from nurture import stages
    from nurture.demo import generate_library_community

    runtime = runtime_of(ctx)
    settings = runtime.settings
    check = runtime.check_workspace()
    now = resolve_now(now)
    specs = check.content_items
    files = generate_library_community(
        settings.data_dir / "demo",
        members,
        seed,
        # Midnight today: re-running the demo the same day generates the same files.
        now=now.replace(hour=0, minute=0, second=0, microsecond=0),
        library=specs,
        questionnaire=check.questionnaire,
    )
    for kind, path in (
        ("members", files.members),
        ("answers", files.answers),
        ("activity", files.activity),
    ):
        _print_import(kind, path, stages.import_file(runtime, kind, path))  # type: ignore[arg-type]
    with _backfill_allowed(runtime, True):
        _cycle(runtime, now, prefect)


# --- outbox ---------------------------------------------------------------------------------


@app.command()
def outbox(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Show at most this many messages.")] = 20,
    member: Annotated[str | None, typer.Option(help="Only messages to this email.")] = None,
) -> None:
    """Show what was sent, to whom and when, newest first."""
    from sqlalchemy import func

    from nurture.storage import Member, Message, MessageStatus

    runtime = runtime_of(ctx)
    settings = runtime.settings
    with runtime.session() as session:
        query = (
            select(Message, Member.email)
            .join(Member, Member.id == Message.member_id)
            .where(Message.status == MessageStatus.SENT)
        )
        if member:
            query = query.where(Member.email == member.strip().lower())
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.execute(
            query.order_by(Message.sent_at.desc(), Message.id.desc()).limit(limit)
        ).all()
        table = Table(title=f"{total} messages sent (newest {min(limit, total)})")
        for column in ("sent at (UTC)", "to", "journey / step", "backend"):
            table.add_column(column)
        for message, email in rows:
            sent_at = message.sent_at.strftime("%Y-%m-%d %H:%M") if message.sent_at else ""
            table.add_row(
                sent_at, email, f"{message.journey_key} / {message.step_id}", message.backend or ""
            )
    console.print(table)
    index = settings.resolved_outbox_dir / "index.html"
    if index.exists():
        console.print(f"browse them: {index.resolve()}")


# --- members' data rights ------------------------------------------------------------------

EmailArgument = Annotated[str, typer.Argument(help="The member's e-mail address (any case).")]


@member_app.command(
    "export",
    help=(
        "Export everything nurture holds about a member as JSON: the member record (consent and "
        "attributes included), questionnaire answers, activity, computed profile, segment "
        "memberships, recommendations, journey enrollments, messages, provider events, and "
        "whether the address is on the suppression list.\n\n"
        'The document\'s "about" key says what each section holds.'
    ),
)
def member_export(
    ctx: typer.Context,
    email: EmailArgument,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="Write the JSON to this file (readable by its owner only); default: stdout.",
        ),
    ] = None,
) -> None:
    """Export everything nurture holds about a member as JSON (right of access)."""
    from nurture import stages
    from nurture.rights import format_export

    data = stages.export_member(runtime_of(ctx), email)
    text = format_export(data)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    errors.print(f"exported {escape(data['email'])} to {escape(str(output))}", highlight=False)


@member_app.command(
    "erase",
    help=(
        "Erase a member for good and never mail their address again.\n\n"
        "Deletes the member and every row about them (answers, activity, profile, segment "
        "memberships, recommendations, enrollments, messages, provider events), removes their "
        "id and name from segment cards and their emails from the outbox folder, and puts a "
        'salted hash of the address on the suppression list (reason "erased"). If an import '
        "brings the address back, it is enrolled in no journey and gets no email, transactional "
        "or not.\n\n"
        "Cannot be undone: export the member first if they asked for their data too. Asks for "
        "confirmation unless --yes. Erasing an address twice is harmless."
    ),
)
def member_erase(
    ctx: typer.Context,
    email: EmailArgument,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Erase without asking for confirmation.")
    ] = False,
) -> None:
    """Erase a member for good and suppress their address (right to be forgotten)."""
    from nurture import stages

    runtime = runtime_of(ctx)
    settings = runtime.settings
    if not yes:
        typer.confirm(
            f"Erase everything nurture holds about {email} and never mail it again? "
            "This cannot be undone",
            abort=True,
        )
    summary = stages.erase_member(runtime, email)
    if summary.held_nothing:
        console.print(
            f"nothing held about {escape(email)} any more; its address is on the suppression list"
        )
        return
    console.print(f"erased {escape(email)}; rows deleted:")
    for name, count in summary.deleted.items():
        if count:
            console.print(f"  {name}: {count}")
    if summary.enrollments_stopped:
        console.print(f"active journeys stopped: {summary.enrollments_stopped}")
    if summary.segments_scrubbed:
        console.print(f"segment cards and labels scrubbed: {summary.segments_scrubbed}")
    console.print(
        "address added to the suppression list (reason: erased)"
        if summary.newly_suppressed
        else "address already on the suppression list"
    )
    if settings.suppression_salt.get_secret_value() == DEVELOPMENT_SECRET:
        errors.print(
            "[yellow]warning:[/] NURTURE_SUPPRESSION_SALT is the development default; set your "
            "own (and keep it) in production",
            highlight=False,
        )


def main() -> None:
    """Run the ``nurture`` command; a failure prints what to do and exits non-zero.

    See :mod:`nurture.cli.failure_messages`: the traceback shows only with ``--debug``.
    """
    run_command(app)
