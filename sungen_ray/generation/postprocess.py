"""Turning raw PLM continuations into training texts.

The prompt ends with an opening quote, so the sample is whatever comes before the model closes
it. Anything the engine returns after that (ray.data.llm hands the stop string back at the end
of ``generated_text``) is not part of the sample.
"""

from __future__ import annotations

import re

_WS = re.compile(r"\s+")


def clean_text(generated: str, stop: list[str]) -> str:
    """Cut at the first stop string, collapse whitespace, strip stray quotes at the edges."""
    text = generated or ""
    cut = len(text)
    for s in stop:
        pos = text.find(s)
        if s and pos != -1:
            cut = min(cut, pos)
    text = _WS.sub(" ", text[:cut]).strip()
    return text.strip("\"“”'` ").strip()


def word_count(text: str) -> int:
    return len(text.split())


def drop_reason(text: str, min_words: int, max_words: int | None = None) -> str | None:
    """Why a cleaned text is unusable, or None if it is kept (dedupe is decided by the caller)."""
    if not text:
        return "empty"
    n = word_count(text)
    if n < min_words:
        return "too_short"
    if max_words is not None and n > max_words:
        return "too_long"
    return None
