"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


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
