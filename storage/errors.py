"""The base of every error a user can fix. It lives in the lowest layer so storage/, annotation/ and loop/ can
all derive from it; the CLI maps it to a one-line message and exit status 2 in one place."""


class PvarLoopError(Exception):
    """A problem the user can act on; its message names the file, key or command involved."""
