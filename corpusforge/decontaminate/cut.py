"""GPT-3's cutting rules (Brown et al. 2020, appendix C) for one document: each colliding n-gram is removed with
`margin` characters on either side, the rest falls into pieces, pieces shorter than `min_piece` characters are
dropped, and a document cut into more than `max_pieces` pieces is dropped whole."""

from __future__ import annotations

import dataclasses
from typing import Literal

Outcome = Literal["cut", "dropped_too_many_pieces", "dropped_no_piece_left"]


@dataclasses.dataclass(frozen=True)
class CutRules:
    margin: int = 200
    min_piece: int = 200
    max_pieces: int = 10


@dataclasses.dataclass
class Cut:
    """What the rules make of one document: the windows removed (merged, in order), every piece between them
    (in order, short ones too: a piece's number is its place here) and the numbers of the pieces kept."""

    windows: list[tuple[int, int]]
    pieces: list[tuple[int, int]]
    kept: list[int]
    outcome: Outcome


def window(start: int, end: int, length: int, rules: CutRules) -> tuple[int, int]:
    """The span one n-gram at [start, end) removes: the n-gram and `margin` characters either side, in the text."""
    return max(0, start - rules.margin), min(length, end + rules.margin)


def cut(length: int, spans: list[tuple[int, int]], rules: CutRules) -> Cut:
    """Apply the rules to a text of `length` characters whose colliding n-grams lie at `spans` (at least one)."""
    windows: list[tuple[int, int]] = []
    for start, end in sorted(window(s, e, length, rules) for s, e in spans):
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], end))
        else:
            windows.append((start, end))
    bounds = [0, *(x for w in windows for x in w), length]
    pieces = [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2) if bounds[i + 1] > bounds[i]]
    if len(pieces) > rules.max_pieces:
        return Cut(windows, pieces, [], "dropped_too_many_pieces")
    kept = [i for i, (s, e) in enumerate(pieces) if e - s >= rules.min_piece]
    return Cut(windows, pieces, kept, "cut" if kept else "dropped_no_piece_left")
