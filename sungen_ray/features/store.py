"""A pool's frozen-encoder features on disk, beside the pool, keyed by ``idx``.

Layout: for pool files in directory ``D``, the store is ``D/.features/`` (dot-prefixed, so every
pool reader, ours and Arrow's dataset discovery alike, skips it): one Parquet file per pool file
(same name; columns ``idx`` int64 and ``features`` fixed-size list of float32, rows in the pool
file's order) and ``manifest.json``::

    {"format": "sungen-ray-features", "version": 1, "encoder": <encoder id>, "max_len": 128,
     "dim": 384, "rows": <stored rows>, "texts_encoded": <texts encoded into this store, ever>,
     "files": {<pool file name>: {"rows": n, "pool_digest": <sha256 of its idx + texts>,
                                  "bytes": <feature file size>}}}

Why per pool file: a round writes new pool files and never touches old ones, so a later round
finds the earlier rounds' files already covered and encodes only its own. Why a digest of idx and
texts, not of the file: the channel scorer rewrites pool files to add a column, which changes no
text. A manifest naming another encoder or ``max_len`` invalidates the store (features are dropped
and recomputed, never mixed); a feature file missing, of the wrong size or unreadable is a
``SungenError`` naming it. One process writes a store at a time (the driver of the stage that
reads it); readers (reweighting workers) only read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sungen_ray.data.atomic import read_json, write_json
from sungen_ray.errors import SungenError

STORE_DIR = ".features"
MANIFEST = "manifest.json"
FORMAT = "sungen-ray-features"
VERSION = 1


@dataclass(frozen=True)
class FeatureKey:
    """What the stored vectors depend on besides the text: a change in any field invalidates them."""

    encoder: str
    max_len: int
    dim: int

    def validate(self) -> None:
        if not self.encoder:
            raise SungenError("features: encoder id must not be empty")
        if self.max_len < 1 or self.dim < 1:
            raise SungenError(f"features: max_len and dim must be >= 1, got {self.max_len}, {self.dim}")


def pool_digest(idx: np.ndarray, texts: list[str]) -> str:
    """sha256 over a pool file's ids and texts (lengths first, so no two text lists collide)."""
    data = [t.encode("utf-8", "surrogatepass") for t in texts]
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(idx, dtype=np.int64).tobytes())
    h.update(np.fromiter((len(b) for b in data), dtype=np.int64, count=len(data)).tobytes())
    h.update(b"".join(data))
    return h.hexdigest()


def store_dir(pool_file: Path) -> Path:
    """The store that holds ``pool_file``'s features (links resolved: a pool view's files are links)."""
    return Path(pool_file).resolve().parent / STORE_DIR


@dataclass
class FeatureStore:
    root: Path
    key: FeatureKey
    files: dict[str, dict] = field(default_factory=dict)
    texts_encoded: int = 0

    @classmethod
    def open(cls, root: Path, key: FeatureKey, *, writable: bool) -> FeatureStore:
        """The store at ``root`` for ``key``. A store written for another key is invalidated when
        ``writable`` (its feature files deleted), and refused otherwise."""
        key.validate()
        root = Path(root)
        manifest = root / MANIFEST
        if not manifest.is_file():
            return cls(root, key)
        data = read_json(manifest)
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise SungenError(f"{manifest}: not a sungen-ray feature store manifest (format {FORMAT} v{VERSION})")
        stored = FeatureKey(str(data.get("encoder")), int(data.get("max_len", 0)), int(data.get("dim", 0)))
        counted = int(data.get("texts_encoded", 0))
        if stored != key:
            if not writable:
                raise SungenError(
                    f"{root}: features were computed with {stored}, this run needs {key}; "
                    "recompute them (the reweight and driver stages do so before reading)"
                )
            print(f"[features] {root}: stored for {stored}, now {key}: recomputing", flush=True)
            for name in data.get("files", {}):
                (root / name).unlink(missing_ok=True)
            store = cls(root, key, texts_encoded=counted)
            store.save()
            return store
        return cls(root, key, dict(data.get("files", {})), counted)

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(
            self.root / MANIFEST,
            {
                "format": FORMAT,
                "version": VERSION,
                "encoder": self.key.encoder,
                "max_len": self.key.max_len,
                "dim": self.key.dim,
                "rows": sum(int(e["rows"]) for e in self.files.values()),
                "texts_encoded": self.texts_encoded,
                "files": self.files,
            },
        )

    def covers(self, name: str, digest: str) -> bool:
        """True if features for pool file ``name`` with these ids and texts are stored whole."""
        entry = self.files.get(name)
        path = self.root / name
        return (
            entry is not None
            and entry.get("pool_digest") == digest
            and path.is_file()
            and path.stat().st_size == entry.get("bytes")
        )

    def put(self, name: str, idx: np.ndarray, features: np.ndarray, digest: str, encoded: int) -> None:
        """Store pool file ``name``'s features (rows in its order) and count ``encoded`` texts;
        the file lands whole (written beside, then renamed) before the manifest names it."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.shape != (len(idx), self.key.dim):
            raise SungenError(f"features for {name}: shape {features.shape}, expected ({len(idx)}, {self.key.dim})")
        self.root.mkdir(parents=True, exist_ok=True)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), self.key.dim)
        table = pa.table({"idx": pa.array(idx, pa.int64()), "features": vectors})
        tmp = self.root / f".{name}.{os.getpid()}.tmp"
        pq.write_table(table, tmp, compression="none")  # float vectors barely compress; reads stay fast
        os.replace(tmp, self.root / name)
        self.files[name] = {"rows": len(idx), "pool_digest": digest, "bytes": (self.root / name).stat().st_size}
        self.texts_encoded += int(encoded)
        self.save()

    def read(self, name: str, idx: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Pool file ``name``'s features, (rows, dim) float32, for the rows where ``mask`` is True
        (all when None). ``idx`` is the pool file's idx column: stored rows must match it exactly."""
        path = self.root / name
        entry = self.files.get(name)
        if entry is None:
            raise SungenError(
                f"{path}: no stored features for pool file {name} (the store has {len(self.files)} files)"
            )
        if not path.is_file():
            raise SungenError(f"{path}: feature file missing (named in {self.root / MANIFEST})")
        if path.stat().st_size != entry["bytes"]:
            raise SungenError(
                f"{path}: feature file is {path.stat().st_size} bytes, the manifest says {entry['bytes']} "
                "(truncated or overwritten); delete it to recompute"
            )
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise SungenError(f"{path}: unreadable feature file (truncated or corrupt?): {exc}") from exc
        stored_idx = table.column("idx").to_numpy()
        if len(stored_idx) != len(idx) or not np.array_equal(stored_idx, idx):
            raise SungenError(f"{path}: stored features are for other rows than pool file {name} holds now")
        flat = table.column("features").combine_chunks().flatten().to_numpy().reshape(-1, self.key.dim)
        return flat if mask is None else flat[mask]
