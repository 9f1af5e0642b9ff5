"""Exceptions with messages a user can act on."""


class TGSError(Exception):
    """Base error: the message says what is wrong and, where possible, what to fix."""


class DataError(TGSError):
    """The data folder, zip, or one of its files is not as the competition ships it."""


class RLEError(TGSError):
    """A run-length encoding is malformed or illegal."""


class SubmissionError(TGSError):
    """A submission file would be rejected by Kaggle (or scored wrongly)."""


class ConfigError(TGSError):
    """A config key, value or name is unknown or invalid."""


class DamagedFileError(TGSError):
    """A file tgs wrote is there but cannot be read (truncated, not its format, a field of the
    wrong type): the message names it and the command that rebuilds it."""
