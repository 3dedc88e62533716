"""Error types. Every message names the bad input and the fix."""


class T2BenchError(Exception):
    """Base class for errors a user can act on (the CLI prints them without a traceback)."""


class ConfigError(T2BenchError, ValueError):
    """An option, module set, layer spec or model argument is invalid."""


class AssetMissingError(T2BenchError, FileNotFoundError):
    """A packaged model or data set is not cached and cannot be fetched now."""


class ChecksumError(T2BenchError):
    """A downloaded or assembled file does not have the expected sha256."""


class ExpertFileError(T2BenchError):
    """An expert file is unreadable, corrupt or has invalid metadata."""


class ExpertMismatchError(T2BenchError):
    """An expert does not fit the model (other shapes, other base model, other module set)."""


class OutputError(T2BenchError, OSError):
    """An output file or folder cannot be written (read-only, full, no permission).

    ``errno``, ``strerror`` and ``filename`` are those of the OS error behind it; the message
    is the sentence naming cause, place and fix (OSError's own ``[Errno 28] ...`` is not used).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()
