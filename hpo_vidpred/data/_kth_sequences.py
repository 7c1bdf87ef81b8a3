"""KTH's ``00sequences.txt``: per video the frame ranges in which the action happens (Schuldt,
Laptev and Caputo 2004), parsed as distributed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import HpoError

__all__ = ["SEQUENCES_FILE", "SequenceList", "find_sequences_file", "parse_sequences"]

SEQUENCES_FILE = "00sequences.txt"
_LINE = re.compile(r"^(person\d+_[a-z]+_d\d+)\s*(.*)$", re.IGNORECASE)
_RANGE = re.compile(r"(\d+)\s*-\s*(\d+)")


@dataclass
class SequenceList:
    """``00sequences.txt``: per video the 1-based inclusive frame ranges of the action."""

    path: Path
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # videos marked *missing*
    irregular: list[str] = field(default_factory=list)  # video lines without a usable range


def parse_sequences(path: Path) -> SequenceList:
    """Parse ``00sequences.txt`` as distributed: CRLF, a prose header, tabs and extra spaces,
    blank lines, ``*missing*`` entries, ranges ``a-b`` separated by commas (gaps allowed)."""
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise HpoError(f"cannot read {path} ({exc})") from None
    result = SequenceList(path)
    for line in text.splitlines():  # CRLF and LF alike
        match = _LINE.match(line.strip())
        if match is None:  # header prose ("Training: person11, 12, ..."), blank lines
            continue
        name, rest = match.group(1).lower(), match.group(2)
        if "missing" in rest.lower():
            result.missing.append(name)
            continue
        ranges = [(int(a), int(b)) for a, b in _RANGE.findall(rest) if 1 <= int(a) <= int(b)]
        if ranges:
            result.ranges[name] = ranges
        else:
            result.irregular.append(line.strip())
    return result


def find_sequences_file(folder: Path) -> Optional[Path]:
    for candidate in (folder / SEQUENCES_FILE, *sorted(folder.glob(f"*/{SEQUENCES_FILE}"))):
        if candidate.is_file():
            return candidate
    return None
