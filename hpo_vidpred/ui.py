"""The one progress bar: rich on stderr, or nothing at all when disabled (``--quiet``, ``--json``,
worker processes), so that stdout stays machine-readable."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["Bar", "track"]

T = TypeVar("T")


class Bar:
    """A progress bar on stderr with a text column of named fields.

    ``text`` uses rich's column syntax, e.g. ``"loss {task.fields[loss]}"``; :meth:`add` starts a
    new row (an epoch, a benchmark) that :meth:`update` then moves. Disabled, every call does
    nothing.
    """

    def __init__(self, enabled: bool, text: str = "", label: str = "{task.description}") -> None:
        self.enabled, self.text, self.label = enabled, text, label
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Bar:
        if self.enabled:
            from rich import progress as rp
            from rich.console import Console

            columns = [rp.TextColumn(self.label), rp.BarColumn(), rp.MofNCompleteColumn()]
            if self.text:
                columns.append(rp.TextColumn(self.text))
            self._bar = rp.Progress(*columns, rp.TimeElapsedColumn(),
                                    console=Console(stderr=True))
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def add(self, total: float, description: str = "", **fields: Any) -> None:
        """Start a new row of ``total`` units."""
        if self._bar is not None:
            self._task = self._bar.add_task(description, total=total, **fields)

    def update(self, completed: float | None = None, advance: float | None = None,
               **fields: Any) -> None:
        """Move the current row to ``completed`` (or by ``advance``) and set fields."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=completed, advance=advance, **fields)

    def print(self, line: str) -> None:
        """A line above the bar (as it is: no markup, no highlighting)."""
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False, soft_wrap=True)


def track(items: Sequence[T], description: str, enabled: bool) -> Iterable[T]:
    """``items`` with a bar on stderr when ``enabled`` and there is work."""
    if not enabled or not items:
        yield from items
        return
    with Bar(True) as bar:
        bar.add(len(items), description)
        for item in items:
            yield item
            bar.update(advance=1)
