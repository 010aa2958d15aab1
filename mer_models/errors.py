"""Exception hierarchy of the mood engine.

Every error the engine raises derives from :class:`MerError`, so callers (the CLI, the bot)
can catch one type and show its message; the message always names the input and the reason.
"""

from __future__ import annotations


class MerError(Exception):
    """Root of every error raised by :mod:`mer_models`."""


class ParameterError(MerError, ValueError):
    """A setting or argument has an invalid value."""


class AudioError(MerError):
    """Audio could not be turned into analysable samples.

    Parameters
    ----------
    source : str
        Human-readable name of the input (a path, or ``"<bytes>"``).
    reason : str
        Why the input was refused.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str]]:
        # Results cross process boundaries in MoodEngine.classify_many.
        return (type(self), (self.source, self.reason))


class AudioNotFoundError(AudioError):
    """The path does not exist or is not a regular file."""


class EmptyAudioError(AudioError):
    """The input holds no bytes or decodes to no samples."""


class AudioDecodeError(AudioError):
    """No decoder could read the input (not audio, corrupt, unsupported)."""


class AudioTooShortError(AudioError):
    """The decoded audio is shorter than the minimum analysable duration."""


class SilentAudioError(AudioError):
    """The decoded audio is digital silence (or nearly so)."""


class ModelError(MerError):
    """A model artifact or its card is missing, invalid or inconsistent."""


class ModelNotFoundError(ModelError):
    """No artifact was found where one was expected."""


class ModelCardError(ModelError):
    """An artifact does not match its card (hash, settings, shapes)."""
