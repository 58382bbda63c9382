"""Fixed-width text tables for the console (one formatter for every command's table)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """A table column: ``title``, the row ``key`` it shows, and how: a format string such as
    ``"{:.3f}"``, ``"kb"`` (bytes shown as KB), or a function of the value."""

    title: str
    key: str
    fmt: str | Callable[[object], str] = "{}"

    def cell(self, row: dict, missing: str = "-") -> str:
        value = row.get(self.key)
        if value is None or (isinstance(value, float) and value != value):
            return missing
        if callable(self.fmt):
            return self.fmt(value)
        if self.fmt == "kb":
            return f"{value / 1024:.1f}"
        try:
            return self.fmt.format(value)
        except (ValueError, TypeError):
            return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[Column], first_left: bool = True) -> str:
    """Rows as a fixed-width table: a header, a rule, one line per row; the first column left-aligned,
    the others right-aligned; missing values shown as ``-``."""
    cells = [[c.cell(r) for c in columns] for r in rows]
    widths = [max([len(c.title)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(items):
        return "  ".join(t.ljust(w) if (i == 0 and first_left) else t.rjust(w)
                         for i, (t, w) in enumerate(zip(items, widths))).rstrip()

    header = line([c.title for c in columns])
    return "\n".join([header, "-" * len(header), *(line(row) for row in cells)])


def columns_of(rows: Sequence[dict], first: str, fmt: str = "{:.3f}") -> list[Column]:
    """Columns for every key of ``rows`` (first-seen order), ``first`` leading; numbers with ``fmt``."""
    keys = [first] + [k for k in dict.fromkeys(k for r in rows for k in r) if k != first]
    return [Column(k, k, "{}" if k == first else (lambda v, f=fmt: f.format(v) if isinstance(v, float) else str(v)))
            for k in keys]
