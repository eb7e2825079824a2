"""Small text helpers shared by the magics' output, the panel and the CLI."""

from __future__ import annotations

__all__ = ["human_size"]


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
