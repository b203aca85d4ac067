"""Migrations: 0002 carries edited labels over, the head matches the models, downgrades run."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import text

from nurture.storage import create_database_engine, migrate_database
from nurture.storage.database import MIGRATIONS_DIR
from nurture.storage.models import Base


def test_0002_copies_edited_labels_and_matches_the_models(tmp_path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'nurture.db'}")
    migrate_database(engine, "0001")
    with engine.begin() as connection:
        for key, card in (("seg-1", '{"label_edited": true}'), ("seg-2", "{}")):
            connection.execute(
                text(
                    "INSERT INTO segments (key, label, description, kind, size, card, active, "
                    "created_at) VALUES (:key, 'A label', '', 'cluster', 0, :card, 1, "
                    "'2026-01-01 00:00:00')"
                ),
                {"key": key, "card": card},
            )
    migrate_database(engine, "0002_segments")
    with engine.connect() as connection:
        edited = dict(connection.execute(text("SELECT key, label_edited FROM segments")).all())
        assert edited == {"seg-1": 1, "seg-2": 0}
    migrate_database(engine)  # later migrations apply on top, and the head matches the models
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:  # the downgrade runs too
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    with engine.connect() as connection:
        columns = [row[1] for row in connection.execute(text("PRAGMA table_info(segments)"))]
        assert "label_edited" not in columns
    migrate_database(engine)
    engine.dispose()
