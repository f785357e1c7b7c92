"""Typed dataclass configs built from YAML/dicts, with errors that name the bad field.

Every config in the project (task specs, pipeline configs) goes through ``from_dict`` so a
typo in a YAML key or a string where a number belongs fails at load time with the dotted
path of the field (``decoding.top_p``), not deep inside a Ray worker an hour later.

Not pydantic (which ``ray[serve]`` installs): its default lax mode coerces ``"2"`` to 2 and ignores
unknown keys on stdlib dataclasses, so matching this module's checks and messages would mean
pydantic dataclass decorators with strict mode on every config plus an error-message translation:
more code, not less.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sungen_ray.errors import SungenError

T = TypeVar("T")


def load_yaml(path: str | Path, what: str = "config file", mapping_hint: str = "") -> dict:
    """Read a YAML mapping, turning missing files and syntax errors into SungenError; an empty file
    is an empty mapping. ``what`` names the file in the not-found error."""
    path = Path(path)
    if not path.is_file():
        raise SungenError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SungenError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SungenError(
            f"{path}: a {what} must be a mapping{mapping_hint} at the top level, got {type(data).__name__}"
        )
    return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except SungenError as exc:
                errors.append(str(exc))
        raise SungenError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise SungenError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise SungenError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise SungenError(f"{where}: expected a mapping, got {type(value).__name__}")
        ktp, vtp = args if args else (Any, Any)
        return {_coerce(k, ktp, f"{where}.{k}"): _coerce(v, vtp, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise SungenError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SungenError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SungenError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SungenError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise SungenError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``: rejects unknown keys, checks types, then runs
    the class's ``validate()`` (if any) so range checks live next to the fields."""
    if not isinstance(data, dict):
        raise SungenError(f"{where or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    expand = getattr(cls, "expand", None)  # a config's shorthand keys (e.g. a named preset)
    if expand is not None:
        data = expand(data, where or cls.__name__)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SungenError(f"{where or 'config'}: unknown field(s) {unknown}; known fields: {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        path = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SungenError(f"{path}: required field is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except SungenError as exc:
            msg = str(exc)
            raise SungenError(msg if not where or msg.startswith(where) else f"{where}.{msg}") from exc
    return obj


def field_choices(cls: type, name: str) -> tuple:
    """The values a ``Literal`` (or optional ``Literal``) dataclass field accepts: argparse
    ``choices`` come from the config's type, not from a second list."""
    tp = typing.get_type_hints(cls)[name]
    for t in (tp, *typing.get_args(tp)):
        if typing.get_origin(t) is typing.Literal:
            return typing.get_args(t)
    raise TypeError(f"{cls.__name__}.{name} is not a Literal field")


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


# Fields that say where a config computes, not what: left out of every run identity (reweighting
# digests, driver stage inputs), so moving a run to another device resumes it instead of redoing it.
PLACEMENT_FIELDS = ("device",)


def identity_dict(obj: Any) -> dict:
    """``to_dict`` without the placement fields, at any depth."""

    def strip(d: dict) -> dict:
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in PLACEMENT_FIELDS}

    return strip(to_dict(obj))


def config_hash(obj: Any) -> str:
    """Stable short hash of a config, stored in manifests to detect a changed re-run."""
    payload = json.dumps(obj if isinstance(obj, dict) else to_dict(obj), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
