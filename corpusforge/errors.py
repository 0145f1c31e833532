"""The one exception base the CLI turns into a one-line message and an exit code instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix: a bad setting, a missing credential, a damaged checkpoint. Subclasses also derive
    from the built-in error they refine (ValueError, RuntimeError), so library callers can catch either.
    `exit_code`: 2 for what was asked wrongly; 1 (a subclass says so) for work that was asked right but failed."""

    exit_code = 2


class StageFailed(UserError, RuntimeError):
    """A stage ran but could not finish its outputs (a re-run resumes): exit 1."""

    exit_code = 1
