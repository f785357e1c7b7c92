"""Every string inside a parsed JSON value (keys included): what provenance tests search for paths."""

from __future__ import annotations

from collections.abc import Iterator


def json_strings(obj) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_strings(k)
            yield from json_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from json_strings(v)
