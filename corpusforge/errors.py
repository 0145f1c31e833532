"""The one exception base the CLI turns into a one-line message (exit 2) instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix: a bad setting, a missing credential, a damaged checkpoint. Subclasses also derive
    from the built-in error they refine (ValueError, RuntimeError), so library callers can catch either."""
