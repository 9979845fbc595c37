"""The one exception type a user can fix."""


class RetrainError(Exception):
    """Bad input or environment that the user can fix.

    The message is one line naming the file or option, what was found and what was expected.
    The command line prints it and exits with `exit_code` (1 unless a documented case says otherwise,
    such as 3 for a TFLite export that lost too much accuracy); anything else is our bug and keeps
    its traceback.
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
