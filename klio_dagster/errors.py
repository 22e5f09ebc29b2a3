"""Errors users see. Each message says what went wrong and what to do."""


class KlioError(Exception):
    """Base class of klio-dagster's own errors."""


class InvalidTrackId(KlioError, ValueError):
    """A track ID outside the allowed alphabet or length."""


class InvalidRequest(KlioError, ValueError):
    """A request that names unknown features, no tracks, or a bad option."""


class AudioDecodeError(KlioError):
    """A source file that is missing, empty or cannot be decoded."""


class MissingInputError(KlioError):
    """A feature's input is neither stored nor computed in the same run."""


class StoreError(KlioError):
    """A feature store URI or object that cannot be used."""
