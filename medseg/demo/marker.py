"""The marker ``medseg demo-data`` leaves in a demo folder: ``<folder>/medseg_demo.json``.

It says the data is SYNTHETIC (for labelling, e.g. in the app) and lists every file the demo
writer wrote, with its SHA-256, so that ``medseg demo-data --force`` replaces exactly those
files and nothing else: a folder without the marker is never touched, and a listed file
changed since it was written (a real PCam file copied over a demo one) stops the command.

Format (``files`` maps paths relative to the folder to their SHA-256, or null while a file is
being written; a null left behind means the writer was killed)::

    {"synthetic": true, "kind": "lgg", "written_by": "medseg demo-data",
     "version": "0.1.0", "seed": 0, "files": {"README.md": "9f86d0...", ...}}

For LGG the marker sits beside ``kaggle_3m/``; :func:`read_demo_marker` also finds it from
the ``kaggle_3m`` folder.

Example:
    >>> marker = read_demo_marker("demo_data/lgg/kaggle_3m")
    >>> marker is not None and marker["synthetic"], marker["kind"]
    (True, 'lgg')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from medseg import __version__
from medseg.errors import DataError
from medseg.files import write_text
from medseg.locks import folder_lock

DEMO_MARKER = "medseg_demo.json"
WRITTEN_BY = "medseg demo-data"
DEMO_KINDS = ("lgg", "pcam")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _invalid(path: Path, reason: str) -> DataError:
    return DataError(f"{path}: not a valid medseg demo marker ({reason})")


def _checked(path: Path, marker: Any) -> dict[str, Any]:
    if not isinstance(marker, dict):
        raise _invalid(path, "not a JSON object")
    if marker.get("synthetic") is not True or marker.get("written_by") != WRITTEN_BY:
        raise _invalid(path, f'expected "synthetic": true and "written_by": "{WRITTEN_BY}"')
    if marker.get("kind") not in DEMO_KINDS:
        raise _invalid(path, f'"kind" must be one of {", ".join(DEMO_KINDS)}')
    files = marker.get("files")
    if not isinstance(files, dict):
        raise _invalid(path, '"files" must map relative paths to SHA-256 digests')
    for name, digest in files.items():
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
            raise _invalid(path, f"{name!r} is not a path inside the folder")
        if digest is not None and not isinstance(digest, str):
            raise _invalid(path, f"the digest of {name!r} is not a string")
    return marker


def read_demo_marker(root: str | Path) -> dict[str, Any] | None:
    """The demo marker of a data folder, or None when it has none.

    Looks for ``root/medseg_demo.json``, and for a ``kaggle_3m`` folder also in its parent
    (where ``medseg demo-data lgg`` writes it).

    Returns:
        the marker: ``synthetic`` (True), ``kind`` ("lgg" or "pcam"), ``written_by``,
        ``version``, ``seed``, ``files``.

    Raises:
        DataError: when a marker file exists but cannot be read or is not a valid marker.
    """
    root = Path(root)
    candidates = [root / DEMO_MARKER]
    if root.name == "kaggle_3m":
        candidates.append(root.parent / DEMO_MARKER)
    for path in candidates:
        if path.is_file():
            try:
                return _checked(path, json.loads(path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise _invalid(path, str(err).splitlines()[0]) from None
    return None


@contextmanager
def demo_lock(out: str | Path) -> Iterator[Path]:
    """Hold the lock of the demo folder ``out`` (:func:`medseg.locks.folder_lock`, creating
    it); ``medseg demo-data`` holds it for the whole command, :func:`remove_demo` and
    :func:`start_demo` take it too (re-entrant), so a folder another demo-data writes is
    refused.

    Raises:
        MedsegError: when another medseg process holds ``out`` (naming it).
    """
    with folder_lock(out, what="demo folder") as lock:
        yield lock


def remove_demo(out: str | Path, kind: str) -> None:
    """Remove the files an earlier ``medseg demo-data`` wrote into ``out`` and its marker.

    Every listed file is checked before anything is removed; folders left empty are removed;
    any other file stays.

    Raises:
        DataError: when ``out`` has no marker (naming the folder), holds the other kind of
            demo, or a listed file changed, is not a plain file, or lies outside ``out``.
        MedsegError: when another medseg process holds ``out``.
    """
    out = Path(out)
    with demo_lock(out):
        _remove_demo(out, kind)


def _remove_demo(out: Path, kind: str) -> None:
    marker = read_demo_marker(out) if (out / DEMO_MARKER).is_file() else None
    if marker is None:
        raise DataError(
            f"{out}: holds files but no {DEMO_MARKER}, so it was not written by medseg demo-data "
            "(or by a version before the marker); --force only replaces demo data: choose another "
            "OUT or remove the folder yourself"
        )
    if marker["kind"] != kind:
        raise DataError(f"{out}: holds the {marker['kind']} demo data; write the {kind} demo elsewhere")
    inside = out.resolve()
    listed = [(out / name, digest) for name, digest in marker["files"].items()]
    for path, digest in listed:
        if not path.exists() and not path.is_symlink():
            continue
        if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(inside):
            raise DataError(f"{path}: not the plain file medseg demo-data wrote; --force leaves it alone")
        if digest is None:
            raise DataError(f"{path}: was being written when an earlier demo-data was killed, so "
                            "medseg cannot tell it from your own file; --force leaves it alone "
                            "(check it and remove it yourself)")
        if file_sha256(path) != digest:
            raise DataError(f"{path}: changed since medseg demo-data wrote it; --force leaves it alone "
                            "(move it, or choose another OUT)")
    for path, _ in listed:
        path.unlink(missing_ok=True)
    (out / DEMO_MARKER).unlink()
    folders = {parent for path, _ in listed for parent in path.parents if parent.is_relative_to(out) and parent != out}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


class DemoRecord:
    """The marker of a demo being written: files are recorded before they are written
    (digest null) and again, with their digests, after, so an interrupted writer still
    leaves a marker listing everything it may have written. An interruption that Python sees
    (Ctrl+C, an error) records the digests of the files written so far and drops the ones
    never written; only a killed writer leaves null digests, which :func:`remove_demo` refuses
    to remove.

    Example:
        >>> record = DemoRecord(out, "pcam", seed=0)
        >>> with record.writing([out / "README.md"]):
        ...     write_text(out / "README.md", text)
    """

    def __init__(self, out: Path, kind: str, seed: int) -> None:
        self.out, self.kind, self.seed = out, kind, seed
        self.files: dict[str, str | None] = {}
        self._save()

    def _save(self) -> None:
        marker = {"synthetic": True, "kind": self.kind, "written_by": WRITTEN_BY,
                  "version": __version__, "seed": self.seed, "files": self.files}
        write_text(self.out / DEMO_MARKER, json.dumps(marker, indent=1) + "\n")

    @contextmanager
    def writing(self, paths: Iterable[Path]) -> Iterator[None]:
        """Record ``paths``, let the body write them, then record their digests.

        Raises:
            DataError: when one of them exists already (a file the demo does not own).
        """
        paths = list(paths)
        for path in paths:
            if path.exists() or path.is_symlink():
                raise DataError(f"{path}: exists and is not demo data; medseg demo-data never replaces it")
        names = [path.relative_to(self.out).as_posix() for path in paths]
        self.files.update(dict.fromkeys(names))
        self._save()
        try:
            yield
        finally:
            for name, path in zip(names, paths, strict=True):
                if path.is_file():
                    self.files[name] = file_sha256(path)
                else:
                    del self.files[name]
            self._save()


def start_demo(out: str | Path, kind: str, seed: int) -> DemoRecord:
    """Prepare ``out`` for a demo of ``kind``: remove an earlier demo there (see
    :func:`remove_demo`), then write a fresh marker.

    Raises:
        DataError: as :func:`remove_demo`, when ``out`` holds a marker.
        MedsegError: when another medseg process holds ``out``.
    """
    out = Path(out)
    with demo_lock(out):
        if (out / DEMO_MARKER).exists():
            _remove_demo(out, kind)
        return DemoRecord(out, kind, seed)
