"""The one exception type a user can fix, and the one way a TensorFlow error becomes a line for a user."""
from __future__ import annotations

import errno
import os
import re

# Lines TensorFlow wraps around an op's own message when it is raised from a traced function,
# a tf.data pipeline or a loaded signature.
_NOISE = re.compile(r"\s*(Graph execution error:|Detected at node|<stack traces unavailable>|\[\[|"
                    r"Traceback|File \"|\t|Error in user-defined function passed to)")
_DECORATIONS = re.compile(r"\{\{[^}]*\}\}|\[Op:[^]]*\]( name: [^\s]*)?|^[A-Za-z]*Error:\s*")
MAX_REASON = 300  # characters: a reason is one line on a terminal, not a dump


class RetrainError(Exception):
    """Bad input or environment that the user can fix.

    The message is one line naming the file or option, what was found and what was expected.
    The command line prints it and exits with `exit_code` (1 unless a documented case says otherwise,
    such as 3 for a model below a quality bar); anything else is our bug and keeps its traceback.
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def reason(error: BaseException) -> str:
    """The real reason of an error in one line, without TensorFlow's preamble and node decorations.

    For a tf.errors.OpError raised inside a tf.function, a tf.data pipeline or a loaded signature this
    is the failing op's own message ("Invalid PNG data, size 100"), with the text of a failed
    tf.debugging.Assert unwrapped; for anything else, its first line. Never empty, at most MAX_REASON
    characters. Works without importing TensorFlow.
    """
    text = getattr(error, "message", None) or str(error)
    lines = [line for line in text.splitlines() if line.strip() and not _NOISE.match(line)]
    line = _DECORATIONS.sub("", lines[0] if lines else "").strip().rstrip(".")
    match = re.fullmatch(r"assertion failed: \[(.*)\]", line)
    line = match.group(1) if match else line
    return (line or type(error).__name__)[:MAX_REASON]


# Characters that move the cursor or end a line (C0, DEL, C1, Unicode line and paragraph separators).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text) -> str:
    """Text (a path, a line naming one) as one line of valid UTF-8: bytes of a file name that are not UTF-8
    (Python's surrogate escapes) become \\xNN, and control characters \\n, \\r, \\t or \\xNN (\\uNNNN),
    so a name can neither split nor overwrite the line it is logged, printed or written in."""
    text = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return CONTROL.sub(lambda m: _NAMED.get(m[0]) or m[0].encode("unicode_escape").decode("ascii"), text)


def skip_line(path, why: str) -> str:
    """How every stage reports a file it leaves out: scan, extraction, --no-cache training, evaluate, Beam."""
    return printable(f"skipped {path}: {why}")


# Write failures a user fixes by freeing space or lifting a limit, as errno values and TensorFlow's words.
_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_FULL_WORDS = ("No space left on device", "File too large", "Disk quota exceeded")


def out_of_space(error: BaseException) -> str | None:
    """One line for a write that failed for lack of space (disk full, file-size limit, quota), else None.

    Works on OSErrors and on TensorFlow errors, which carry the OS message in their text.
    """
    if isinstance(error, OSError) and error.errno in _FULL:
        where = f" {error.filename}" if error.filename else ""
        return f"cannot write{where} ({os.strerror(error.errno)}); expected free space on that disk"
    text = reason(error)
    if any(words in text for words in _FULL_WORDS):
        return f"cannot write ({text}); expected free space on that disk"
    return None
