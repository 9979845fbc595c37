"""The one exception type a user can fix."""


class RetrainError(Exception):
    """Bad input or environment that the user can fix.

    The message is one line naming the file or option, what was found and what was expected.
    The command line prints it and exits 1; anything else is our bug and keeps its traceback.
    """
