"""The error raised when a data set is reachable by neither of its roads."""


class DataUnavailableError(RuntimeError):
    """No road (local copy or hub) could provide a data set; the message names both."""
