"""Errors a user can cause. Each carries one clear sentence; the CLI prints it and exits 2."""


class CadenzaError(Exception):
    """Base class for every error caused by bad input, configuration or files."""


class ConfigError(CadenzaError, ValueError):
    """A configuration or argument value is invalid."""


class ShapeError(CadenzaError, ValueError):
    """Tensors have shapes, dtypes or devices that do not fit together."""


class ModelFileError(CadenzaError):
    """A saved model directory is missing, corrupt or does not match its config."""


class DataError(CadenzaError):
    """A dataset or input file is missing, corrupt or does not fit the model."""


class WriteError(CadenzaError, OSError):
    """An output file could not be written (permission, missing folder, full disk, ...).

    ``path`` is the file, ``cause`` the original OSError; nothing was left half-written.
    """

    def __init__(self, sentence: str, path=None, cause: OSError | None = None):
        super().__init__(sentence)
        self.path = path
        self.cause = cause

    def __str__(self) -> str:
        return self.args[0] if self.args else ""
