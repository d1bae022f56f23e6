"""``--cases``: choosing rows of the benchmark's grid.

A selector is one string of space-separated terms ``key=value[,value...]``; a case is
selected when every term matches (values within a term are alternatives). Keys:

    cell=rnn,lstm,gru    mode=inference,training    threads=1,2
    T=25  B=1  I=512  H=512                          shape=25x1x512x512 (T x B x I x H)

``--cases`` takes one or more selectors and runs the union, in the grid's order:

    python -m fastseq.bench --cases "cell=lstm B=1" "cell=gru mode=training threads=2"
"""
from __future__ import annotations

from .cases import CELLS, MODES, Case

_INT_KEYS = ("T", "B", "I", "H", "threads")
KEYS = ("cell", "mode", "shape") + _INT_KEYS


def _parse_value(key: str, text: str, selector: str):
    if key == "cell":
        if text not in CELLS:
            raise ValueError(f"--cases {selector!r}: cell must be one of {sorted(CELLS)}; got {text!r}")
        return text
    if key == "mode":
        if text not in MODES:
            raise ValueError(f"--cases {selector!r}: mode must be one of {list(MODES)}; got {text!r}")
        return text
    if key == "shape":
        return parse_shape(text, sep="x", what=f"--cases {selector!r}: shape")
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"--cases {selector!r}: {key} must be an integer; got {text!r}") from None
    if value < 1:
        raise ValueError(f"--cases {selector!r}: {key} must be >= 1; got {value}")
    return value


def parse_shape(text: str, sep: str = ",", what: str = "--configs") -> tuple:
    """"25,1,512,512" (or "25x1x512x512" with sep="x") -> (T, B, I, H), all >= 1; a fifth
    number is the projection size P (lstmp's configurations)."""
    parts = text.split(sep)
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) not in (4, 5) or min(shape) < 1:
        raise ValueError(f"{what} must be four positive integers T{sep}B{sep}I{sep}H (and P for "
                         f"lstmp); got {text!r}")
    return shape


def parse_selector(selector: str) -> dict[str, set]:
    """"cell=lstm,gru B=1" -> {"cell": {"lstm", "gru"}, "B": {1}}; clear errors otherwise."""
    terms = selector.split()
    if not terms:
        raise ValueError("--cases: empty selector")
    out: dict[str, set] = {}
    for term in terms:
        key, eq, values = term.partition("=")
        if not eq or not values:
            raise ValueError(f"--cases {selector!r}: term {term!r} is not key=value[,value...]")
        if key not in KEYS:
            raise ValueError(f"--cases {selector!r}: unknown key {key!r}; keys are {', '.join(KEYS)}")
        if key in out:
            raise ValueError(f"--cases {selector!r}: key {key!r} given twice (use {key}=a,b)")
        out[key] = {_parse_value(key, v, selector) for v in values.split(",")}
    return out


def matches(case: Case, selector: dict[str, set]) -> bool:
    for key, allowed in selector.items():
        value = case.config if key == "shape" else getattr(case, key)
        if value not in allowed:
            return False
    return True


def select(cases: list[Case], selectors: list[str] | None) -> list[Case]:
    """The cases any selector matches, in their order; all of them without selectors."""
    if not selectors:
        return list(cases)
    parsed = [parse_selector(s) for s in selectors]
    return [c for c in cases if any(matches(c, p) for p in parsed)]
