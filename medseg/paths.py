"""The one rule for paths a user names: where they may point and what they may be.

Every name that a config, a flag or an upload turns into a path inside a folder medseg owns
(a run's name under the models folder, a file inside a comparison) goes through
:func:`plain_name` or :func:`confined`; every file medseg reads goes through
:func:`regular_file` first, so that a FIFO, a device or a socket is refused instead of
blocking the process or reading without end.

Example:
    >>> plain_name("demo_lgg", "output.run_name")
    'demo_lgg'
    >>> confined(Path("models"), "demo_lgg/best.pt", "checkpoint")
    PosixPath('models/demo_lgg/best.pt')
    >>> regular_file(Path("/dev/zero"))
    Traceback (most recent call last):
    medseg.errors.DataError: /dev/zero: not a regular file (a character device); medseg reads ...
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path, PurePath
from typing import Any

from medseg.errors import ConfigError, DataError, MedsegError

#: what a plain name may hold: letters, digits, ``.``, ``_``, ``+``, ``-`` (not starting with ``.``)
PLAIN_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,127}")

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def plain_name(name: str, what: str) -> str:
    """Return ``name`` when it is one plain folder or file name, else refuse it.

    A plain name has 1-128 characters from ``[A-Za-z0-9._+-]``, does not start with ``.``
    (so never ``.``, ``..`` or a hidden file) and holds no separator.

    Args:
        name: the name as given.
        what: the option or field that named it, for the message.

    Raises:
        ConfigError: naming ``what`` and the rule.
    """
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise ConfigError(f"{what}: {str(name)[:80]!r} is not a plain name (1-128 characters "
                          "from A-Z a-z 0-9 . _ + -, not starting with '.'; no folders)")
    return name


def confined(base: Path, relative: str | PurePath, what: str) -> Path:
    """``base / relative``, refused when it could lie outside ``base``.

    Refused: an absolute path, a ``..`` part, an empty path or ``.``, and a path whose
    existing part resolves (through symbolic links) outside ``base``.

    Args:
        base: the folder the path must stay in.
        relative: the path below it, as given.
        what: the option or field that named it, for the message.

    Raises:
        ConfigError: naming ``what``, the path and ``base``.
    """
    path = PurePath(relative)
    parts = path.parts
    if path.is_absolute() or not parts or ".." in parts or str(path) == ".":
        raise ConfigError(f"{what}: {str(relative)[:120]!r} must be a path inside {base} "
                          "(relative, without '..')")
    target = base / path
    if not target.resolve().is_relative_to(base.resolve()):
        raise ConfigError(f"{what}: {str(relative)[:120]!r} leads outside {base} through a link")
    return target


def is_regular_file(path: str | Path) -> bool:
    """True when ``path`` is a regular file (or a link to one), by ``stat`` alone: for
    probes that must not open a FIFO or a device (is this one of our outputs?)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def regular_file(path: str | Path) -> Path:
    """Return ``path`` when it is a regular file (or a link to one), else refuse it.

    Checked with ``stat`` before any open: opening a FIFO blocks until a writer appears,
    and a device (``/dev/zero``) reads without end.

    Raises:
        DataError: when ``path`` is missing, unreadable, or not a regular file (naming what
            it is).
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a plain file")
        raise DataError(f"{path}: not a regular file ({kind}); medseg reads only regular files")
    return path


def read_json(path: str | Path, what: str) -> Any:
    """The JSON document in ``path``, a regular file (:func:`regular_file`).

    Args:
        path: the file.
        what: what the file holds, for the error ("the folds").

    Raises:
        MedsegError: ``"<path>: cannot read <what> (<why>)"`` when the file is missing, not a
            regular file, unreadable or not JSON.

    Example:
        >>> read_json("models/cv_demo_lgg/folds.json", "the folds")["seed"]
        0
    """
    path = Path(path)
    try:
        return json.loads(regular_file(path).read_text(encoding="utf-8"))
    except MedsegError as err:
        raise MedsegError(f"{path}: cannot read {what} ({err})") from None
    except (OSError, ValueError, RecursionError):
        raise MedsegError(f"{path}: cannot read {what} (not JSON)") from None
