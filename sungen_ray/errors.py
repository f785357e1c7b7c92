"""One exception type for everything a user can fix (bad flag, bad file, bad config).

The CLI prints these as a single ``error:`` line with exit code 2 instead of a traceback,
so the message itself must name the offending field, file or value.
"""


class SungenError(Exception):
    """A problem with the user's input or environment, explained in the message."""
