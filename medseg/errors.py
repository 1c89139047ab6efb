"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

import re
import sys


class MedsegError(Exception):
    """A problem with the user's input (a file, a config, a checkpoint), not a bug.

    The message must name the offending file or option and say what is wrong, on one line.
    """


class DataError(MedsegError):
    """A dataset file or folder is missing, unreadable or not in the expected format."""


class ConfigError(MedsegError):
    """A config file or ``--set`` override is invalid."""


class CheckpointError(MedsegError):
    """A checkpoint is missing, corrupt, unsafe or of the wrong task."""


class DivergenceError(MedsegError):
    """Training diverged (a non-finite or exploding loss, or non-finite gradients for too many
    steps); the epoch wrote nothing and the last good checkpoint is named."""


#: a line of a formatted traceback naming a medseg error: ``medseg.errors.DataError: message``
_TRACEBACK_LINE = re.compile(r"^(medseg(?:\.\w+)+): (.+)$", re.MULTILINE)


def _error_types() -> dict[str, type[MedsegError]]:
    """MedsegError and its subclasses by qualified name, as tracebacks print them."""
    found: dict[str, type[MedsegError]] = {}
    pending = [MedsegError]
    while pending:
        cls = pending.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        pending.extend(cls.__subclasses__())
    return found


def report_user_error(exc: BaseException) -> bool:
    """Print the :class:`MedsegError` behind ``exc`` as ``medseg: error: <message>``, on one
    line of stderr, and return True; return False (printing nothing) for any other error.

    Example:
        >>> except Exception as err:
        ...     if not report_user_error(err):
        ...         raise
        ...     return 2
    """
    user_error = find_medseg_error(exc)
    if user_error is None:
        return False
    message = " ".join(line.strip() for line in str(user_error).splitlines() if line.strip())
    print(f"medseg: error: {message}", file=sys.stderr)
    return True


def _from_worker_text(message: str) -> MedsegError | None:
    """Rebuild the MedsegError of a DataLoader worker from the traceback text torch passes on."""
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return None
    types = _error_types()
    for name, text in reversed(_TRACEBACK_LINE.findall(message)):
        if name in types:
            return types[name](text)
    return None


def find_medseg_error(exc: BaseException) -> MedsegError | None:
    """The :class:`MedsegError` behind ``exc``, or None when ``exc`` is not a user error.

    - ``exc`` itself when it is a MedsegError;
    - for a RuntimeError (MONAI raises ``RuntimeError("applying transform ...")`` around
      every error of a transform), the first MedsegError down its ``__cause__`` /
      ``__context__`` chain of RuntimeErrors;
    - for the RuntimeError a PyTorch DataLoader raises when a worker process failed, which
      holds only the text of the worker's traceback: a MedsegError of the same class rebuilt
      from its one-line message there.

    Any other exception is a bug and gives None.

    Example:
        >>> try:
        ...     next(iter(loader))
        ... except Exception as err:
        ...     if (user_error := find_medseg_error(err)) is None:
        ...         raise
        ...     print(f"medseg: error: {user_error}")
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MedsegError):
            return current
        if not isinstance(current, RuntimeError):
            return None
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return _from_worker_text(str(exc)) if isinstance(exc, RuntimeError) else None
