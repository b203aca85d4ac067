"""Encoders built from the embedding model's weights, cached on disk and rebuilt when unusable.

A built encoder (the ONNX int8 network, the static token table) lives in its own folder of the
models folder, keyed by model and backend, next to a ``manifest.json`` naming what it was built
from and the SHA-256 of the built file. Each file is written to a temporary name and renamed,
the manifest last: a crash or a concurrent build never leaves a half-written file in use. A
missing or corrupt file, or one built from other weights, is built again; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["BUILD_FORMAT", "built_file", "encoder_folder", "source_fingerprint", "write_atomically"]

logger = logging.getLogger(__name__)

BUILD_FORMAT = 2
"""Version of how encoders are built: raising it rebuilds every cached one."""

_MANIFEST = "manifest.json"
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def encoder_folder(models_dir: Path, model: str, backend: str) -> Path:
    """The folder holding ``model``'s encoder for ``backend`` (not created)."""
    slug = _SLUG.sub("-", Path(model).name or model).strip("-")[:60] or "model"
    key = hashlib.sha256(model.encode("utf-8")).hexdigest()[:10]
    return models_dir / f"{slug}-{key}" / backend


def source_fingerprint(model_path: Path) -> str:
    """A fingerprint of the model folder's files (names, sizes, modification times).

    An encoder built from other weights (the bundled model upgraded) no longer matches it.
    """
    digest = hashlib.sha256()
    for path in sorted(model_path.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            stat = path.stat()
            relative = path.relative_to(model_path).as_posix()
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Have ``write`` fill a temporary file next to ``path``, then rename it to ``path``.

    Readers see the old file or the new one, never a part of it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o644)  # readable like any other file: mkstemp makes it private
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _manifest_matches(folder: Path, file_name: str, expected: dict[str, object]) -> bool:
    manifest_path = folder / _MANIFEST
    built = folder / file_name
    if not manifest_path.is_file() or not built.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    if any(manifest.get(key) != value for key, value in expected.items()):
        return False
    return manifest.get("sha256") == _file_sha256(built)


def built_file(
    folder: Path,
    file_name: str,
    source: dict[str, object],
    build: Callable[[Path], None],
) -> Path:
    """The built file ``file_name`` in ``folder``, built first if missing, corrupt or stale.

    Args:
        folder: The encoder's folder (:func:`encoder_folder`).
        file_name: The built file's name in it.
        source: What the file is built from (model, backend, fingerprint of the weights); a
            manifest that says otherwise means the file must be built again.
        build: Writes the file to the path it is given.

    Returns:
        The path of the checked file.
    """
    expected = {**source, "format": BUILD_FORMAT, "file": file_name}
    if _manifest_matches(folder, file_name, expected):
        return folder / file_name
    logger.info("building %s in %s (done once; nothing is downloaded)", file_name, folder)
    built = folder / file_name
    write_atomically(built, build)
    manifest = {**expected, "sha256": _file_sha256(built)}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_atomically(folder / _MANIFEST, lambda path: path.write_text(text, encoding="utf-8"))
    return built
