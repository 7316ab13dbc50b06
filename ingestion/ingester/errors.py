"""The few kinds of failure the service tells apart, each with its own consequence."""


class IngestError(Exception):
    """Base of every failure the service expects and reports in one line."""


class ConfigError(IngestError):
    """A setting is missing or malformed: the process exits 2 before touching anything."""


class DatabaseUnavailable(IngestError):
    """The database cannot be reached: nothing was read or written."""


class ParticipantError(IngestError):
    """Fails one participant's window; the run goes on with the others."""


class PayloadError(ParticipantError):
    """A payload that cannot be read at all."""


class SourceUnavailable(ParticipantError):
    """The source kept failing after retries (timeouts, 5xx, 429)."""


class RequestRejected(ParticipantError):
    """The source refused the request itself (400, 403, 404): retrying will not help."""


class NeedsConsent(ParticipantError):
    """The participant's OAuth grant was revoked or expired: they must consent again."""


class ScopeNotGranted(NeedsConsent):
    """A 403 for a scope the participant's grant lacks: only the streams under that scope
    are refused, so the others still load. `scope` is the one the refused request needs,
    when the caller knows it (the source fills it in from its stream -> scope map)."""

    def __init__(self, message: str, scope: str | None = None) -> None:
        super().__init__(message)
        self.scope = scope
