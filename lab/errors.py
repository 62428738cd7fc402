"""Errors the lab reports to its user: each message says what failed and what to do."""


class LabError(RuntimeError):
    """A lab operation failed; the message is meant for a human."""


def tail(path, lines: int = 30) -> str:
    """Last `lines` lines of a text file, or a note that it is missing."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    text = "\n".join(data.splitlines()[-lines:])
    return text or f"({path} is empty)"
