"""The services of one nurture run, built once from its :class:`~nurture.settings.Settings`.

A :class:`Runtime` is what the stages (:mod:`nurture.stages`) and the commands take: the
settings, and the services they build, each on first use and then kept: the database engine
(its schema brought up to date once), the embedding model, the mail backend, the template
renderer and the workspace's marketer files. Nothing heavy is built before it is needed: a
command that embeds nothing never loads the model, and ``nurture --help`` opens no database.

The CLI builds one runtime per command; a Prefect task builds one per call from the plain
settings it is given (``flows/``), sharing its process's engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from contextlib import AbstractContextManager
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from alembic.util.exc import CommandError
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from nurture.errors import ConfigurationError, WorkspaceNotFoundError
from nurture.progress import NoProgress, Progress
from nurture.settings import Settings
from nurture.storage import create_database_engine, migrate_database, open_session, session_scope
from nurture.storage.database_errors import database_error

if TYPE_CHECKING:
    from nurture.delivery import Mailer, TemplateRenderer
    from nurture.embedding import Embedder
    from nurture.journeys import JourneyDefinition, SendingRules
    from nurture.recommend import RankingWeights
    from nurture.segmentation import SegmentRule
    from nurture.workspace import ContentItemSpec, Questionnaire, Workspace, WorkspaceConfig
    from nurture.workspace.brand import Brand

__all__ = [
    "LoadedWorkspace",
    "Runtime",
    "open_database",
    "require_workspace",
    "resolve_now",
    "settings_from",
    "utc_now",
]


def utc_now() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def resolve_now(now: dt.datetime | None) -> dt.datetime:
    """``now`` as a timezone-aware time (a naive one is taken as UTC); the current time if None."""
    if now is None:
        return utc_now()
    return now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)


def settings_from(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment (``NURTURE_*``), with ``overrides`` on top.

    Raises:
        ConfigurationError: A setting is invalid; the message names each one.
    """
    try:
        return Settings(**dict(overrides or {}))
    except ValidationError as error:
        problems = "; ".join(_setting_problem(problem) for problem in error.errors())
        raise ConfigurationError(
            f"invalid settings: {problems}. Fix them in the environment (or the command's "
            "options); `nurture --help` lists the settings."
        ) from error


_SECRET_PARTS = ("secret", "password", "key", "salt", "url", "token")
"""Setting names whose value never shows in a message (a database URL may hold a password)."""


def _setting_problem(problem: Mapping[str, Any]) -> str:
    """``NURTURE_CHUNK_SIZE='abc': Input should be a valid integer``; a secret's value hidden."""
    name = "_".join(str(part) for part in problem["loc"])
    found = problem.get("input")
    shown = ""
    if (
        isinstance(found, str | int | float)
        and not any(part in name.lower() for part in _SECRET_PARTS)
        and len(str(found)) <= 60
    ):
        shown = f"={found!r}"
    return f"NURTURE_{name.upper()}{shown}: {problem['msg']}"


def open_database(settings: Settings) -> Engine:
    """Create the data folder and an engine on the configured database, its schema up to date.

    The caller owns the engine (``engine.dispose()`` when done).

    Raises:
        DatabaseError: The database cannot be reached, refuses the login, does not exist, or
            is at a schema revision this nurture does not know; the message says what to do.
        ConfigurationError: The database URL is not one nurture can use.
    """
    url = settings.resolved_database_url
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_database_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError, OSError) as error:
        raise database_error(url, error) from error
    try:
        migrate_database(engine)
    except (SQLAlchemyError, CommandError) as error:
        engine.dispose()
        raise database_error(url, error) from error
    return engine


WORKSPACE_MARKERS = ("workspace.yaml", "questionnaire.yaml", "journeys", "library", "templates")
"""What a workspace folder holds; a folder with none of them is not a workspace."""


def require_workspace(folder: Path) -> Path:
    """``folder``, if it is a workspace: it exists and holds at least one workspace file.

    Raises:
        WorkspaceNotFoundError: It does not; the message says how to point at one or make one.
    """
    how = (
        "give --workspace DIR (or set NURTURE_WORKSPACE) to your workspace folder, or create "
        f"one with `nurture init {folder}`"
    )
    if not folder.is_dir():
        raise WorkspaceNotFoundError(f"no workspace folder at {folder}: {how}")
    if not any((folder / marker).exists() for marker in WORKSPACE_MARKERS):
        raise WorkspaceNotFoundError(
            f"{folder} is not a nurture workspace (it has no questionnaire.yaml, journeys/, "
            f"library/ or templates/): {how}"
        )
    return folder


class LoadedWorkspace:
    """The marketer files of a workspace, each read and checked on first use, then kept.

    Files are read with the workspace's declared languages (``workspace.yaml``) and
    cross-checked as they load: the rule segments against the questionnaire's keys, the
    journeys against the templates, the rule segments and the question keys. Reading one part
    reads only what it depends on, so a stage that needs the questionnaire neither fails on a
    journey file nor renders every template; :meth:`Runtime.check_workspace` checks everything
    at once (:func:`~nurture.workspace.load_workspace`) and fills every part.

    Args:
        settings: The settings naming the workspace folder.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def of(cls, settings: Settings, workspace: Workspace) -> LoadedWorkspace:
        """The parts of a workspace already loaded and checked by ``load_workspace``."""
        loaded = cls(settings)
        loaded.__dict__.update(
            config=workspace.config,
            brand=workspace.brand,
            questionnaire=workspace.questionnaire,
            content_items=workspace.content_items,
            segment_rules=workspace.segment_rules,
            sending_rules=workspace.sending_rules,
            journeys=workspace.journeys,
        )
        return loaded

    @cached_property
    def config(self) -> WorkspaceConfig:
        """What ``workspace.yaml`` declares: the languages and their UI strings."""
        from nurture.workspace import load_workspace_config

        return load_workspace_config(self.settings.workspace)

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages members are written to, the default first."""
        return self.config.languages

    @cached_property
    def brand(self) -> Brand | None:
        """What ``brand.yaml`` declares (name, look, reply-to, footer); None without the file."""
        from nurture.workspace.brand import load_brand

        return load_brand(self.settings.workspace, languages=self.languages)

    @cached_property
    def questionnaire(self) -> Questionnaire:
        """The questionnaire (``questionnaire.yaml``)."""
        from nurture.workspace import load_questionnaire

        require_workspace(self.settings.workspace)

        return load_questionnaire(self.settings.questionnaire_path, languages=self.languages)

    @cached_property
    def question_keys(self) -> list[str]:
        """The keys of the questionnaire's questions."""
        return [question.key for question in self.questionnaire.questions]

    @cached_property
    def content_items(self) -> list[ContentItemSpec]:
        """The items of the content library (``library/``), sorted by key."""
        from nurture.workspace import load_content_library

        require_workspace(self.settings.workspace)

        return load_content_library(self.settings.content_dir, languages=self.languages)

    @cached_property
    def segment_rules(self) -> list[SegmentRule]:
        """The rule segments (``segments.yaml``; none when the file is absent)."""
        from nurture.segmentation import load_segment_rules

        return load_segment_rules(
            self.settings.segments_path, question_keys=self.question_keys, languages=self.languages
        )

    @cached_property
    def sending_rules(self) -> SendingRules:
        """The rules every journey shares (``sending.yaml``; the defaults when absent)."""
        from nurture.journeys import load_sending_rules

        return load_sending_rules(self.settings.sending_rules_path)

    @cached_property
    def journeys(self) -> list[JourneyDefinition]:
        """The journey definitions (``journeys/``), checked against the rest of the workspace."""
        from nurture.journeys import load_journeys

        require_workspace(self.settings.workspace)

        return load_journeys(
            self.settings.journeys_dir,
            self.settings.templates_dir,
            segment_keys=[rule.key for rule in self.segment_rules],
            question_keys=self.question_keys,
        )


class Runtime:
    """The settings of a run and the services built from them, each on first use.

    Use it as a context manager, or call :meth:`close`, to release the database connections.

    Args:
        settings: The settings.
        engine: An engine to use instead of opening one (its schema up to date); the caller
            keeps owning it: :meth:`close` leaves it open. ``flows/`` shares one per process.
        progress: What watches long work (:mod:`nurture.progress`): a bar on a terminal,
            lines in a log; by default nothing.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.progress: Progress = progress or NoProgress()
        self._engine = engine
        self._owns_engine = engine is None

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None = None) -> Runtime:
        """A runtime on the environment's settings (``NURTURE_*``) with ``overrides`` on top.

        Raises:
            ConfigurationError: A setting is invalid; the message names each one.
        """
        return cls(settings_from(overrides))

    # --- database ---------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine of the configured database, opened and migrated on first use."""
        if self._engine is None:
            self._engine = open_database(self.settings)
        return self._engine

    def session(self) -> AbstractContextManager[Session]:
        """A session that commits when the block ends, or rolls back on an error."""
        return session_scope(self.engine)

    @property
    def chunk_threads(self) -> int:
        """Chunks of a stage this process works on at once (``chunk_threads``, or by database)."""
        if self.settings.chunk_threads is not None:
            return self.settings.chunk_threads
        return 2 if self.engine.dialect.name == "postgresql" else 1

    def open_session(self) -> Session:
        """A new session the caller commits or rolls back (a dry run rolls back)."""
        return open_session(self.engine)

    # --- services ---------------------------------------------------------------------------

    @cached_property
    def embedder(self) -> Embedder:
        """The embedding model of the settings on its backends (loaded once per process).

        Loading is watched (:attr:`progress`): the first load of a data folder builds the
        members' encoder from the bundled weights (``onnx-int8``: 15 s to a minute and a half
        on 2 cores), and the progress says so rather than leaving the stage that asked silent
        that long.
        """
        from nurture.embedding import encoder_built, load_embedder

        settings = self.settings
        model, backend = settings.embedding_model, settings.embedding_backend
        models_dir = settings.resolved_models_dir.resolve()
        what = "load the embedding model"
        if not encoder_built(model, backend, models_dir):
            what = f"build the {backend} encoder of {model} in {models_dir} (once)"
        with self.progress.task(what):
            return load_embedder(
                model,
                settings.embedding_batch_size,
                backend,
                models_dir,
                settings.library_embedding_backend,
            )

    @cached_property
    def mailer(self) -> Mailer:
        """The mail backend the settings choose (``mail_backend``).

        Raises:
            ConfigurationError: The backend misses a setting (an API key, a password).
        """
        from nurture.delivery import mailer_for

        return mailer_for(self.settings)

    @cached_property
    def renderer(self) -> TemplateRenderer:
        """The renderer of the workspace's email templates, signing unsubscribe links."""
        from nurture.delivery import TemplateRenderer
        from nurture.delivery.limits import RenderLimits
        from nurture.workspace.brand import email_branding

        settings = self.settings
        branding = email_branding(
            self.workspace.brand,
            community_name=settings.community_name,
            strings=self.workspace.config.strings,
        )
        shared = dict(branding.context)
        if settings.questionnaire_url:
            shared["questionnaire_url"] = settings.questionnaire_url
        return TemplateRenderer(
            settings.templates_dir.resolve(),
            community_name=branding.community_name,
            public_base_url=settings.public_base_url,
            unsubscribe_secret=settings.unsubscribe_secret.get_secret_value(),
            shared_context=shared,
            languages=self.workspace.languages,
            strings=branding.strings,
            limits=RenderLimits.of(settings),
            questionnaire=self.workspace.questionnaire
            if settings.questionnaire_path.is_file()
            else None,
        )

    @cached_property
    def ranking_weights(self) -> RankingWeights:
        """The ranking weights of members with a history (see :meth:`ranking_weight_sets`)."""
        return self.ranking_weight_sets[0]

    @cached_property
    def newcomer_ranking_weights(self) -> RankingWeights:
        """The ranking weights of members without history (see :meth:`ranking_weight_sets`)."""
        return self.ranking_weight_sets[1]

    @cached_property
    def ranking_weight_sets(self) -> tuple[RankingWeights, RankingWeights]:
        """``(with history, without history)``: the weights in force for each group of members.

        The built-in defaults, then the workspace's ``ranking.yaml`` (when there is one), then
        the settings (``NURTURE_RANKING_WEIGHTS``, ``NURTURE_MMR_LAMBDA``,
        ``NURTURE_INTEREST_HALF_LIFE_DAYS``) on top of both groups.

        Raises:
            RankingFileValidationError: ``ranking.yaml`` is invalid.
        """
        from nurture.recommend.ranking_file import ranking_weight_sets

        return ranking_weight_sets(self.settings)

    # --- workspace --------------------------------------------------------------------------

    @cached_property
    def workspace(self) -> LoadedWorkspace:
        """The workspace's marketer files, each read and checked on first use."""
        return LoadedWorkspace(self.settings)

    def check_workspace(self) -> Workspace:
        """Read and check every marketer file of the workspace against the others, at once.

        See :func:`nurture.workspace.load_workspace`: journeys against the templates, the rule
        segments and the question keys; every email template rendered in every language with
        the journeys' subject lines. The checked files then serve :attr:`workspace`.

        Raises:
            WorkspaceNotFoundError: The workspace folder is missing or holds no workspace file.
            WorkspaceValidationError: Every problem of every file, with file, line and column.
        """
        from nurture.delivery.limits import RenderLimits
        from nurture.workspace import load_workspace

        settings = self.settings
        require_workspace(settings.workspace)
        workspace = load_workspace(
            settings.workspace,
            community_name=settings.community_name,
            public_base_url=settings.public_base_url,
            questionnaire_url=settings.questionnaire_url,
            render_limits=RenderLimits.of(settings),
        )
        self.__dict__["workspace"] = LoadedWorkspace.of(settings, workspace)
        return workspace

    # --- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connections this runtime opened (a shared engine stays open)."""
        if self._owns_engine and self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
