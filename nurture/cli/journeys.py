"""``nurture journeys validate``, ``simulate``, ``status``, ``migrate`` and ``results``.

Check the workspace, dry-run journeys over time, see where members stand, move them between
versions, compare a journey's arms (holdout control, split variants).

The commands are plain functions, registered on the ``journeys`` sub-app of
:mod:`nurture.cli.app` by :func:`register`; they read the settings from ``ctx.obj`` like every
command.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture.chunks import chunked
from nurture.cli.context import runtime_of, settings_of
from nurture.errors import (
    MemberNotFoundError,
    NurtureError,
    Problem,
    WorkspaceFileError,
)
from nurture.runtime import resolve_now, utc_now
from nurture.settings import Settings
from nurture.storage import Member

if TYPE_CHECKING:  # the journeys, reports and rights are imported by the commands that use
    # them, not by `nurture --help`
    from nurture.journeys import JourneyDefinition
    from nurture.journeys.journey_status import JourneyStatus
    from nurture.journeys.migrate import EnrollmentMove
    from nurture.journeys.results import JourneyResults
    from nurture.journeys.simulate import SimulationReport

__all__ = ["migrate", "register", "results", "simulate", "status", "validate"]

console = Console()
errors = Console(stderr=True, soft_wrap=True)

ALL = "all"


VALIDATE_HELP = (
    "Check the workspace and list every problem with its file, line and column.\n\n"
    "Without FILES, every file of the workspace is checked together: workspace.yaml (the "
    "languages), brand.yaml, the questionnaire, the library, segments.yaml, sending.yaml, the "
    "journeys and "
    "every email template in every language, with the journeys' subject lines. With FILES, "
    "those journey files are checked against the workspace's templates, rule segments and "
    "question keys. The exit status is 1 when any problem is found."
)
SIMULATE_HELP = (
    "Dry-run the journeys over the next days: who would get which email when.\n\n"
    "Runs the journey engine hour by hour (--tick) on every member, one member (--member) or a "
    "sample (--sample), then shows the emails of JOURNEY in each member's own time, the emails "
    "per day and journey (UTC days), the most emails any member gets in one budget window, and "
    "what the budget and the quiet hours hold back (--html: also as a page of charts), how "
    "many entered each arm of a holdout or split (control members are sent nothing), and "
    "any run that would start emailing more of the community at once than the backfill limit "
    "of sending.yaml allows (which `nurture run` refuses unless --allow-backfill).\n\n"
    "Nothing is sent and the database is left as it was (the run holds a database transaction "
    "meanwhile, as a real run does). The simulation knows nothing of what members will do: "
    "they post, read and answer nothing new, so silences grow and no email is opened."
)
STATUS_HELP = (
    "Show where members stand in each journey, version by version.\n\n"
    "For each version: the members in progress at each step, those held at a send step by "
    "their budget or their quiet hours, those who completed it, who left when they reached "
    "its goal or for another reason (consent withdrawn, step missing...), and its emails by "
    "status. Members held out as the control group (holdout) and the members of each split "
    "variant are counted too. The current version is the one of the workspace file."
)
MIGRATE_HELP = (
    "Move the members in progress in other versions of JOURNEY to its workspace file's "
    "version.\n\n"
    "Members in progress finish the version they started unless migrated. Moved members carry "
    "on from the step with the same id, with the same wait; an email they already got is never "
    "sent again. Members at a step the current version does not have are listed and left where "
    "they are. Finished members keep their version. A workspace file that never ran is first "
    "registered as the next version (not with --dry-run)."
)

RESULTS_HELP = (
    "Compare what JOURNEY changes: goal conversion and retention per arm.\n\n"
    "The arms are the control group of the journey's holdout and each variant of its split "
    "step (or 'journey' without a split). Each member counts once, by their first enrollment. "
    "A member converts when they do one of the goal's events (or --events) within the goal's "
    "window "
    "(goal.within, default 30 days) after enrolling; members whose window is still open are "
    "not counted yet. Each arm is compared with the control (else the first variant): the "
    "difference of rates with its 95% confidence interval (Newcombe) and the p-value of "
    "Fisher's exact test; a note says when the arms are too small to conclude, and how many "
    "members per arm would show a change of --effect points. Retention (active on day 30, 60, "
    "90: a post, comment, event or content view in the 30 days before) is shown beside it."
)


def register(journeys_app: typer.Typer) -> None:
    """Add ``validate``, ``simulate``, ``status``, ``migrate`` and ``results`` to the sub-app."""
    journeys_app.command("validate", help=VALIDATE_HELP)(validate)
    journeys_app.command("simulate", help=SIMULATE_HELP)(simulate)
    journeys_app.command("status", help=STATUS_HELP)(status)
    journeys_app.command("migrate", help=MIGRATE_HELP)(migrate)
    journeys_app.command("results", help=RESULTS_HELP)(results)


def _settings(ctx: typer.Context) -> Settings:
    return settings_of(ctx)


def _check_journey(definitions: list[JourneyDefinition], key: str, settings: Settings) -> None:
    """Raise a readable error when ``key`` names no journey of the workspace."""
    keys = sorted(definition.id for definition in definitions)
    if key not in keys:
        raise NurtureError(
            f"no journey {key!r} in {settings.journeys_dir}; expected one of: "
            f"{', '.join(keys) or 'none (the folder has no journey)'}"
        )


def _duration(text: str, option: str) -> dt.timedelta:
    from nurture.journeys import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=option) from None


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%a %Y-%m-%d %H:%M")


# --- validate -------------------------------------------------------------------------------


def validate(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Journey files to check; default: the whole workspace."),
    ] = None,
) -> None:
    """Check the workspace (or journey FILES against it) and list every problem."""
    from nurture.workspace import check_journey_files

    settings = _settings(ctx)
    definitions: list[JourneyDefinition] = []
    problems: list[Problem] = []
    if files:
        definitions, problems = check_journey_files(settings.workspace, files)
    else:
        try:
            workspace = runtime_of(ctx).check_workspace()
        except WorkspaceFileError as error:
            problems += error.problems
        else:
            definitions = workspace.journeys
            if workspace.brand is None:
                errors.print(
                    f"[yellow]note:[/] no {escape(str(workspace.paths.brand))}: the emails carry "
                    "no postal address (marketing email must, CAN-SPAM) and the built-in reason "
                    "for receiving them; see docs/workspace.md, 'Brand'",
                    highlight=False,
                )
            for code, keys in workspace.config.missing_ui_strings().items():
                errors.print(
                    f"[yellow]note:[/] language {code!r} has no UI strings {', '.join(keys)} "
                    f"in {escape(str(workspace.paths.config))}: emails show the "
                    f"{workspace.config.default_language!r} ones (else English)",
                    highlight=False,
                )
    if problems:
        for problem in problems:
            errors.print(escape(str(problem)), highlight=False)
        in_files = len({str(problem.path) for problem in problems})
        errors.print(
            f"[red]{len(problems)} problem{'s' * (len(problems) > 1)}[/] in {in_files} "
            f"file{'s' * (in_files > 1)}",
            highlight=False,
        )
        raise typer.Exit(1)
    for definition in definitions:
        console.print(
            f"[green]ok[/] {escape(definition.id)}: {definition.trigger.type} trigger, "
            f"{len(definition.steps)} steps",
            highlight=False,
        )
    console.print(f"{len(definitions)} journeys valid", highlight=False)


# --- simulate -------------------------------------------------------------------------------


def simulate(
    ctx: typer.Context,
    journey: Annotated[
        str,
        typer.Argument(
            help="The journey whose emails are listed (its id, e.g. digest), or 'all'. Every "
            "journey of the workspace runs either way: they share each member's budget.",
            show_default=False,
        ),
    ],
    days: Annotated[
        int, typer.Option(min=1, max=366, help="Length of the simulated period, in days.")
    ] = 30,
    start: Annotated[
        dt.datetime | None,
        typer.Option(
            help="Start of the period, in UTC (e.g. 2026-11-02T09:00:00); give it to get the "
            "same simulation again. Default: now."
        ),
    ] = None,
    member: Annotated[
        str | None,
        typer.Option(help="Simulate this member only (their e-mail address, any case)."),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Simulate N members picked at random: the same N for the same members and "
            "NURTURE_RANDOM_SEED. Default: every member.",
        ),
    ] = None,
    tick: Annotated[
        str,
        typer.Option(help="Time resolution: the engine runs at most this often (30m, 1h...)."),
    ] = "1h",
    trigger_every: Annotated[
        str,
        typer.Option(
            help="Check every trigger at least this often. Joins, answers, activity, "
            "anniversaries and schedules are also checked whenever they can fire; a silence, a "
            "content gap, a segment move, an audience or cooldown that changes with time may "
            "enrol up to this much later than for real. Equal to --tick: exact, slower."
        ),
    ] = "6h",
    limit: Annotated[
        int,
        typer.Option(min=0, help="Show at most this many emails (--json lists every one)."),
    ] = 50,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the report as JSON: the daily volumes, entries, held emails and budget "
            "peak of every journey, and the emails of JOURNEY (of every journey with 'all').",
        ),
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write the simulation to this HTML file: emails per day per journey and "
            "the emails the budget and the quiet hours hold back, as charts that open offline. "
            "It names no member.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Dry-run the journeys over a period and show who would get which email when."""
    from nurture.journeys.simulate import sample_members, simulate_journeys
    from nurture.reports import write_simulation_report
    from nurture.rights import find_members

    settings = _settings(ctx)
    if member is not None and sample is not None:
        raise typer.BadParameter("give --member or --sample, not both", param_hint="--member")
    step, every = _duration(tick, "--tick"), _duration(trigger_every, "--trigger-every")
    definitions = runtime_of(ctx).workspace.journeys
    focus = None if journey == ALL else journey
    if focus is not None:
        _check_journey(definitions, focus, settings)
    rules = runtime_of(ctx).workspace.sending_rules
    begin = resolve_now(start)
    with runtime_of(ctx).open_session() as session:
        ids: list[int] | None = None
        if member is not None:
            found = find_members(session, member)
            if not found:
                raise MemberNotFoundError(f"no member with email {member.strip()}")
            ids, member = [row.id for row in found], found[0].email
        elif sample is not None:
            ids = sample_members(session, sample, seed=settings.random_seed)
        population = len(ids) if ids is not None else _count_members(session)
        watched = runtime_of(ctx).progress.task("simulate", days * 24, "simulated hours")
        with watched:
            report = simulate_journeys(
                session,
                definitions,
                start=begin,
                days=days,
                tick=step,
                trigger_every=every,
                rules=rules,
                member_ids=ids,
                suppression_salt=settings.suppression_salt.get_secret_value(),
                chunk_size=settings.chunk_size,
            )
        session.rollback()
    if html is not None:
        written = write_simulation_report(
            report,
            html,
            generated_at=utc_now(),
            title=f"Journey simulation · {settings.community_name}",
        )
        # on stderr with --json: stdout stays the JSON document
        (errors if json_output else console).print(
            f"Simulation report: {escape(written.summary)}: {escape(str(written.path))}",
            highlight=False,
        )
    if json_output:
        typer.echo(
            json.dumps({"journey": journey, **report.to_dict(focus)}, ensure_ascii=False, indent=2)
        )
        return
    who = (
        f"member {member}"
        if member is not None
        else f"a sample of {population} members"
        if sample is not None
        else f"all {population} members"
    )
    console.print(
        f"Simulated {days} days from {report.start:%Y-%m-%d %H:%M} UTC for {escape(who)}, every "
        f"journey running (they share the budget): nothing was sent or saved.",
        highlight=False,
    )
    _print_volumes(report, focus)
    _print_sends(report, focus, limit)
    _print_journeys(report, focus)
    _print_budget(report)
    _print_backfill(report)


def _count_members(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Member)) or 0)


def _print_volumes(report: SimulationReport, focus: str | None) -> None:
    volumes = report.daily_volumes()
    shown = [focus] if focus else [k for k in report.journeys if report.members_reached(k)]
    table = Table(title="Emails per day (UTC)", caption="days without any email left out")
    table.add_column("day", no_wrap=True)
    for key in shown:
        table.add_column(key, justify="right")
    table.add_column("all journeys", justify="right")
    for day, counts in volumes.items():
        if not counts:
            continue
        table.add_row(
            day.strftime("%a %Y-%m-%d"),
            *(str(counts.get(key, 0)) for key in shown),
            str(sum(counts.values())),
        )
    totals = {key: sum(c.get(key, 0) for c in volumes.values()) for key in shown}
    table.add_section()
    table.add_row(
        "total", *(str(totals[key]) for key in shown), str(len(report.sends)), style="bold"
    )
    console.print(table)


def _print_sends(report: SimulationReport, focus: str | None, limit: int) -> None:
    sends = report.sends_of(focus)
    if not sends:
        what = f"{focus} sends" if focus else "the journeys send"
        console.print(f"[yellow]{escape(what)} no email in this period.[/]")
        return
    if limit == 0:
        return
    title = f"{len(sends)} emails" + (f" of {focus}" if focus else "")
    table = Table(title=escape(title))
    table.add_column("when (member's time)")
    table.add_column("member", no_wrap=True)
    table.add_column("step" if focus else "journey / step", overflow="fold")
    for send in sends[:limit]:
        table.add_row(
            f"{_when(send.local_at)} [dim]{escape(send.time_zone)}[/]",
            escape(send.email),
            escape(send.step_id if focus else f"{send.journey_key} / {send.step_id}"),
        )
    console.print(table)
    if len(sends) > limit:
        console.print(f"... and {len(sends) - limit} more (--limit, or --json for every one)")


def _print_budget(report: SimulationReport) -> None:
    if report.budget is None:
        console.print("No message budget (sending.yaml): members may get any number of emails.")
        return
    budget = report.budget
    text = (
        f"Budget: {budget.messages} emails per member in any {budget.window}; the most any "
        f"member gets in one such window is {report.max_in_window}"
    )
    over = report.over_budget
    if not over:
        console.print(f"{text}: [green]nobody is over the budget.[/]", highlight=False)
        return
    emails = {send.member_id: send.email for send in report.sends}
    listed = ", ".join(emails.get(member_id, str(member_id)) for member_id in over[:10])
    more = f" and {len(over) - 10} more" if len(over) > 10 else ""
    console.print(
        f"{text}: [red]{len(over)} members over the budget[/]: {escape(listed)}{more}",
        highlight=False,
    )


def _print_backfill(report: SimulationReport) -> None:
    """The largest run over the backfill limit, which ``nurture run`` would refuse."""
    found = report.backfill
    if found is None:
        return
    console.print(
        f"[red]Backfill:[/] at {found.at:%Y-%m-%d %H:%M} UTC the journeys would start emailing "
        f"{escape(found.describe())}. `nurture run` refuses such a run unless --allow-backfill.",
        highlight=False,
    )


def _print_journeys(report: SimulationReport, focus: str | None) -> None:
    """One row per journey: who entered, the emails, and what the sending rules held back."""
    from nurture.journeys.simulate import HeldEmails

    held = {entry.journey_key: entry for entry in report.held}
    table = Table(title="Per journey")
    table.add_column("journey", no_wrap=True)
    for column in ("entered", "emails", "budget: waited", "budget: skipped", "quiet: waited"):
        table.add_column(column, justify="right")
    if report.arms:
        table.add_column("arms (control: sent nothing)")
    for key in report.journeys:
        entry = held.get(key, HeldEmails(key))
        arms = ", ".join(f"{arm} {count}" for arm, count in report.arms.get(key, {}).items())
        table.add_row(
            key,
            str(report.entered.get(key, 0)),
            str(len(report.sends_of(key))),
            str(entry.budget_deferred),
            str(entry.budget_skipped),
            str(entry.quiet_deferred),
            *([escape(arms)] if report.arms else []),
            style="bold" if key == focus else None,
        )
    console.print(table)


# --- status ---------------------------------------------------------------------------------


def status(
    ctx: typer.Context,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the counts as JSON, for other programs.")
    ] = False,
) -> None:
    """Show where members stand in each journey, version by version."""
    from nurture.journeys.journey_status import journey_status

    definitions: list[JourneyDefinition] | None
    try:
        definitions = runtime_of(ctx).workspace.journeys
    except WorkspaceFileError as error:
        definitions = None
        errors.print(
            f"[yellow]warning:[/] the workspace journeys do not load, so no version is marked "
            f"current ({escape(str(error).splitlines()[0])})",
            highlight=False,
        )
    with runtime_of(ctx).session() as session:
        statuses = journey_status(session, definitions)
    if json_output:
        typer.echo(
            json.dumps([status.to_dict() for status in statuses], ensure_ascii=False, indent=2)
        )
        return
    if not statuses:
        console.print("No journey yet: add one to journeys/ and run `nurture run`.")
        return
    for found in statuses:
        if found.versions:
            console.print(_status_table(found))
        else:
            console.print(f"{escape(found.journey_key)} · {escape(found.name)}: never ran yet")
        _print_status_notes(found)


def _status_rows(found: JourneyStatus) -> list[tuple[str, list[int]]]:
    """(label, count per version) rows: totals always, details only where some are not 0."""
    versions = found.versions
    steps = sorted({step for v in versions for step in v.at_step})
    reasons = sorted({reason for v in versions for reason in v.exited_other})
    statuses = sorted({status for v in versions for status in v.messages})
    arms = sorted({arm for v in versions for arm in v.arms})
    rows = [("held out (control, sent nothing)", [v.held_out for v in versions])]
    rows += [(f"split variant {arm}", [v.arms.get(arm, 0) for v in versions]) for arm in arms]
    rows += [("in progress", [v.active for v in versions])]
    rows += [(f"  at {step}", [v.at_step.get(step, 0) for v in versions]) for step in steps]
    rows += [
        ("  of them waiting on the budget", [v.waiting_on_budget for v in versions]),
        ("  of them waiting on quiet hours", [v.waiting_on_quiet_hours for v in versions]),
        ("  of them waiting for their best hour", [v.waiting_on_best_hour for v in versions]),
        ("completed", [v.completed for v in versions]),
        ("exited: goal reached", [v.exited_goal for v in versions]),
    ]
    rows += [(f"exited: {r}", [v.exited_other.get(r, 0) for v in versions]) for r in reasons]
    rows += [(f"emails {s}", [v.messages.get(s, 0) for v in versions]) for s in statuses]
    always = {"in progress", "completed"}
    return [(label, counts) for label, counts in rows if label in always or any(counts)]


def _status_table(found: JourneyStatus) -> Table:
    """One journey: a row per count, a column per version."""
    title = f"{found.journey_key} · {found.name}"
    if found.in_workspace is False:
        title += " (not in the workspace any more)"
    table = Table(title=escape(title), title_justify="left")
    table.add_column("members and emails")
    for version in found.versions:
        label = f"v{version.version}" + (" (current)" if version.current else "")
        table.add_column(label, justify="right")
    for label, counts in _status_rows(found):
        table.add_row(escape(label), *(str(count) for count in counts))
    return table


def _print_status_notes(found: JourneyStatus) -> None:
    key = escape(found.journey_key)
    if found.in_workspace and found.versions and found.current_version is None:
        console.print(
            f"{key}: the workspace file changed since the last run; it becomes version "
            f"{max(v.version for v in found.versions) + 1} at the next run.",
            highlight=False,
        )
    if found.active_elsewhere:
        console.print(
            f"{key}: {found.active_elsewhere} members in progress in another version finish it; "
            f"`nurture journeys migrate {key}` moves them to the current one.",
            highlight=False,
        )


# --- migrate --------------------------------------------------------------------------------


def migrate(
    ctx: typer.Context,
    journey: Annotated[
        str,
        typer.Argument(
            help="The journey's id; the version of its workspace file is the one members move to.",
            show_default=False,
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would move; change nothing.")
    ] = False,
) -> None:
    """Move the members in progress in other versions of a journey to its current one."""
    from nurture.journeys.migrate import migrate_enrollments

    settings = _settings(ctx)
    definitions = runtime_of(ctx).workspace.journeys
    _check_journey(definitions, journey, settings)
    definition = next(d for d in definitions if d.id == journey)
    with runtime_of(ctx).session() as session:
        report = migrate_enrollments(session, definition, dry_run=dry_run)
        emails = _emails(session, [move.member_id for move in report.left])
    key = escape(journey)
    verb = "would move" if dry_run else "moved"
    if report.moved:
        versions = ", ".join(str(v) for v in report.from_versions)
        console.print(
            f"{key}: {verb} {len(report.moved)} members in progress from version"
            f"{'s' if len(report.from_versions) > 1 else ''} {versions} to version "
            f"{report.to_version}.",
            highlight=False,
        )
    else:
        console.print(
            f"{key}: nothing to move; no member in progress can go to version {report.to_version}.",
            highlight=False,
        )
    if report.left:
        console.print(_left_table(report.left, report.to_version, emails))


def _emails(session: Session, member_ids: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in chunked(sorted(set(member_ids)), 500):
        rows = session.execute(select(Member.id, Member.email).where(Member.id.in_(chunk)))
        found.update(rows.tuples().all())
    return found


def _left_table(left: tuple[EnrollmentMove, ...], version: int, emails: dict[int, str]) -> Table:
    steps = ", ".join(sorted({move.step for move in left}))
    table = Table(
        title=escape(
            f"{len(left)} members left where they are: version {version} has no step {steps}"
        )
    )
    for column in ("member", "version", "at step"):
        table.add_column(column)
    for move in left:
        table.add_row(
            escape(emails.get(move.member_id, str(move.member_id))),
            str(move.from_version),
            escape(move.step),
        )
    return table


# --- results --------------------------------------------------------------------------------


def results(
    ctx: typer.Context,
    journey: Annotated[
        str, typer.Argument(help="The journey's id (a file of the workspace).", show_default=False)
    ],
    effect: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            max=0.5,
            help="The smallest change worth seeing, in rate points (0.05: 5 points): the "
            "report says how many members per arm it takes. Default: 0.05.",
            show_default=False,
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(help="The goal's window (30d, 2w...); default: the goal's within, or 30d."),
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            help="Count these activity types as a conversion instead of the goal's events "
            "(comma-separated: post,comment); for a journey without a goal."
        ),
    ] = None,
    at: Annotated[
        dt.datetime | None,
        typer.Option("--at", help="Compute the results as of this moment (UTC); default: now."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON, for other programs.")
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write the results to this HTML file, with charts that open offline.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Compare a journey's arms: goal conversion within its window, retention."""
    from nurture.journeys.models import ACTIVITY_TYPES
    from nurture.journeys.results import DEFAULT_EFFECT, journey_results
    from nurture.reports import write_results_report

    settings = _settings(ctx)
    definitions = runtime_of(ctx).workspace.journeys
    _check_journey(definitions, journey, settings)
    definition = next(d for d in definitions if d.id == journey)
    span = _duration(window, "--window") if window is not None else None
    kinds = [kind.strip() for kind in events.split(",") if kind.strip()] if events else None
    unknown = sorted(set(kinds or ()) - set(ACTIVITY_TYPES))
    if unknown:
        raise typer.BadParameter(
            f"unknown activity type {', '.join(unknown)}; expected some of: "
            f"{', '.join(ACTIVITY_TYPES)}",
            param_hint="--events",
        )
    with runtime_of(ctx).session() as session:
        found = journey_results(
            session,
            definition,
            resolve_now(at),
            effect=DEFAULT_EFFECT if effect is None else effect,
            window=span,
            events=kinds,
        )
    if html is not None:
        written = write_results_report(
            found, html, generated_at=utc_now(), title=f"Journey results · {definition.name}"
        )
        (errors if json_output else console).print(
            f"Results report: {escape(written.summary)}: {escape(str(written.path))}",
            highlight=False,
        )
    if json_output:
        typer.echo(json.dumps(found.to_dict(), ensure_ascii=False, indent=2))
        return
    console.print(_results_table(found))
    for note in found.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _results_table(found: JourneyResults) -> Table:
    """One row per arm: members, conversion, difference with the reference, retention."""
    from nurture.journeys.results import RETENTION_DAYS

    goal = " or ".join(found.goal_events) or "no goal events"
    title = (
        f"{found.journey_key} · {found.name}: {goal} within {found.window_days:g} days "
        f"(as of {found.now:%Y-%m-%d %H:%M} UTC)"
    )
    table = Table(title=escape(title), title_justify="left")
    for column in ("arm", "members", "counted", "converted", "rate (95% CI)"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    reference = found.reference or "-"
    table.add_column(f"vs {reference}, points (95% CI)", justify="right")
    table.add_column("p-value", justify="right")
    for days in RETENTION_DAYS:
        table.add_column(f"active d{days}", justify="right")
    for arm in found.arms:
        rate = arm.conversion
        cells = [
            escape(arm.arm),
            str(arm.enrolled),
            str(rate.total) if rate else "-",
            str(rate.converted) if rate else "-",
            f"{_percent(rate.rate)} ({_percent(rate.low)}-{_percent(rate.high)})"
            if rate and rate.total
            else "-",
        ]
        comparison = arm.comparison
        if comparison is None:
            cells += ["reference" if arm.arm == found.reference else "-", "-"]
        else:
            mark = "" if comparison.enough_data else " (not enough data)"
            cells += [
                f"{_points(comparison.difference)} ({_points(comparison.low)} to "
                f"{_points(comparison.high)}){mark}",
                f"{comparison.p_value:.3g}",
            ]
        for days in RETENTION_DAYS:
            kept = arm.retention[days]
            cells.append(f"{_percent(kept.rate)} of {kept.total}" if kept.total else "-")
        table.add_row(*cells)
    return table
