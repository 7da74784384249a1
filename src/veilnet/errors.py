"""Exception types of veilnet.

Every error a user can cause (bad input, a file that does not fit) is a subclass of
:class:`VeilnetError`; the command line prints its message on one line and exits with 2.
Messages name the offending thing and what was expected.
"""

from __future__ import annotations


class VeilnetError(Exception):
    """Base class of every error caused by the user's input, not by a bug."""


class DataFormatError(VeilnetError, ValueError):
    """A data set, image file or archive that is missing, corrupt or of the wrong layout."""


class ShapeError(VeilnetError, ValueError):
    """A tensor whose shape, dtype or value range is not what the function takes."""


class KeyMismatchError(VeilnetError, ValueError):
    """A key used with a model or images it does not fit (block size, channels, image size)."""


class KeyFileError(VeilnetError):
    """A key file that is corrupt, truncated, tampered with, or of an unknown version/scheme."""


class ModelFormatError(VeilnetError):
    """A model card or weights file that cannot be turned into the model it names."""


class ConfigError(VeilnetError, ValueError):
    """An option or argument with a value that makes no sense."""


class OutputExistsError(VeilnetError, FileExistsError):
    """Refusing to overwrite an existing file (pass force=True / --force)."""


class OutputWriteError(VeilnetError):
    """An output that could not be written (disk full, file-size limit, I/O error); nothing partial is left."""


class ServiceError(VeilnetError):
    """The server could not be used: unreachable, or it answered with an error."""


class ServerUnreachableError(ServiceError, ConnectionError):
    """No connection to the server (wrong URL, server down, timeout)."""


class AuthRefusedError(ServiceError, PermissionError):
    """The server refused the token (401/403)."""
