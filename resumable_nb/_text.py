"""Small text helpers shared by the magics' output, the panel and the CLI."""

from __future__ import annotations

__all__ = ["columns", "human_size", "printable"]


def human_size(n: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as disks count).

    >>> human_size(999), human_size(1500), human_size(3e9)
    ('999 B', '1.5 KB', '3.0 GB')
    """
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters escaped, for journal text shown on a terminal: a step
    name, an error or a source recorded by someone else must not move the cursor, change the
    title or hide lines (ANSI escapes).

    >>> printable("ok\\x1b[2Jgone\\r")
    'ok\\\\x1b[2Jgone\\\\r'
    """
    out = []
    for ch in str(text):
        code = ord(ch)
        if (ch == "\n" and keep_newlines) or ch == "\t":
            out.append(ch)
        elif code < 0x20 or 0x7F <= code < 0xA0 or ch in "\u2028\u2029\u202e\u2066\u2067\u2068":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def columns(table: list[list[str]]) -> list[str]:
    """The rows of ``table`` as lines of left-aligned columns, two spaces apart; every cell
    through :func:`printable` (journal text: no raw escapes).

    >>> columns([["step", "state"], ["load", "ran"]])
    ['step  state', 'load  ran']
    """
    table = [[printable(cell) for cell in row] for row in table]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in table]
