"""One exception type for every user-facing failure.

The CLI turns a BitedgeError into one line on stderr and exit status 2; anything else is a bug.
"""


class BitedgeError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2
