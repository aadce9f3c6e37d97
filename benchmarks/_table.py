"""Side-by-side tables for the benchmarks: figures, target, and whether it was met."""

from __future__ import annotations

from collections.abc import Sequence


class Table:
    """A plain-text table: the first column left-aligned, the others right-aligned.

    A row may carry a verdict: ``True`` prints ``yes`` in the last column, ``False`` prints
    ``MISSED``, ``None`` (an informative row) prints nothing. ``ok`` is false once any row missed.

    Args:
        columns: The column headings (without the verdict column, added at the end).
    """

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = [*columns, "met"]
        self.rows: list[list[str]] = []
        self.ok = True

    def add(self, *cells: object, met: bool | None = None) -> None:
        """Add a row; ``met`` is whether its target was met (``None``: no target)."""
        if len(cells) != len(self.columns) - 1:
            raise ValueError(f"{len(cells)} cells for {len(self.columns) - 1} columns")
        verdict = "" if met is None else ("yes" if met else "MISSED")
        self.rows.append([str(cell) for cell in cells] + [verdict])
        self.ok &= met is not False

    def print(self) -> None:
        """Print the table."""
        widths = [
            max(len(row[i]) for row in [self.columns, *self.rows]) for i in range(len(self.columns))
        ]

        def line(cells: Sequence[str]) -> str:
            first = f"{cells[0]:<{widths[0]}}"
            rest = (f"{cell:>{width}}" for cell, width in zip(cells[1:], widths[1:], strict=True))
            return "  ".join([first, *rest]).rstrip()

        header = line(self.columns)
        print(header)
        print("-" * len(header))
        for row in self.rows:
            print(line(row))


def verdict(ok: bool) -> int:
    """Print the closing line and return the exit status (1 when a target was missed)."""
    print("\nall targets met" if ok else "\nTARGET MISSED")
    return 0 if ok else 1
