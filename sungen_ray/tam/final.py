"""The product a user takes away: a TAM trained on the curated set, saved, reloaded, evaluated.

Training reuses ``sungen_ray.tam.train`` (the same code as the reweighting inner problem), so
"train on the selection" and "train inside the bilevel loop" cannot drift apart. Evaluation
reads gold files in any supported format and checks their labels against the task first: a gold
file from the wrong task must fail loudly, not score 50%.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sungen_ray.data.labelled import LabelledData, read_table
from sungen_ray.errors import SungenError
from sungen_ray.tam.device import resolve_device, validate_device_name
from sungen_ray.tam.registry import TamConfig, build_encoder, build_model
from sungen_ray.tam.train import predict_logits, train

MODEL_FILE = "model.pt"


@dataclass
class FinalConfig:
    tam: TamConfig = field(default_factory=TamConfig)
    epochs: int = 5
    seed: int = 0
    device: str = "auto"  # cpu, cuda (cuda:N) or auto = the GPU if torch sees one

    def validate(self) -> None:
        validate_device_name(self.device, "final.device")
        if self.epochs < 1:
            raise SungenError(f"epochs: must be >= 1, got {self.epochs}")


@dataclass
class TrainedModel:
    model: torch.nn.Module
    encoder: object
    tam: TamConfig
    label_names: list[str]

    def predict(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, one row per text."""
        device = next(self.model.parameters()).device
        logits = predict_logits(self.model, self.encoder.encode(texts).to(device))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


def fit(
    texts: list[str],
    labels: np.ndarray,
    label_names: list[str],
    cfg: FinalConfig,
    weights: np.ndarray | None = None,
) -> TrainedModel:
    """Train a fresh TAM (seeded) on ``texts``; ``weights`` makes it a weighted fit."""
    if len(texts) == 0:
        raise SungenError("no training samples selected")
    device = resolve_device(cfg.device, "final.device")
    encoder = build_encoder(cfg.tam, texts)
    data = encoder.encode(texts).to(device)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.tam, encoder, data, len(label_names)).to(device)
    w = None if weights is None else torch.as_tensor(np.asarray(weights), dtype=torch.float32, device=device)
    y = torch.as_tensor(labels, dtype=torch.int64, device=device)
    losses = train(model, data, y, w, cfg=cfg.tam, epochs=cfg.epochs, seed=cfg.seed)
    if not all(math.isfinite(x) for x in losses):
        raise SungenError(f"final training diverged (loss {losses[-1]}); lower final.tam.lr")
    return TrainedModel(model=model, encoder=encoder, tam=cfg.tam, label_names=list(label_names))


def save(path: str | Path, trained: TrainedModel, meta: dict | None = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    payload = {
        "tam": dataclasses.asdict(trained.tam),
        "label_names": trained.label_names,
        "state_dict": {k: v.cpu() for k, v in trained.model.state_dict().items()},  # loadable without a GPU
        "encoder": trained.encoder,
        "meta": meta or {},
    }
    tmp = path / f".{MODEL_FILE}.tmp"
    torch.save(payload, tmp)
    tmp.replace(path / MODEL_FILE)
    return path / MODEL_FILE


def load(path: str | Path) -> TrainedModel:
    from sungen_ray.config import from_dict

    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise SungenError(f"no trained model at {path} (expected {file})")
    try:
        payload = torch.load(file, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise SungenError(f"{file}: not a sungen-ray model file ({type(exc).__name__}: {exc})") from exc
    tam = from_dict(TamConfig, payload["tam"], "tam")
    encoder = payload["encoder"]
    state = payload["state_dict"]
    probe = _probe_encoded(encoder)
    model = build_model(tam, encoder, probe, len(payload["label_names"]))
    model.load_state_dict(state)
    model.eval()
    return TrainedModel(model=model, encoder=encoder, tam=tam, label_names=payload["label_names"])


def _probe_encoded(encoder):
    """build_model needs an encoded sample for input sizes (MiniLM's feature width)."""
    return encoder.encode(["probe"])


def read_gold(path: str | Path, label_names: list[str]) -> LabelledData:
    """Gold text + labels; labels may be class ids or class names, checked against ``label_names``."""
    table = read_table(path)
    if table.num_rows == 0:
        raise SungenError(f"{path}: no rows")
    for col in ("text", "label"):
        if col not in table.column_names:
            raise SungenError(f"{path}: column {col!r} missing (columns: {table.column_names})")
    raw = table.column("label").to_pylist()
    if any(v is None for v in raw):
        raise SungenError(f"{path}: some rows have no label")
    if all(isinstance(v, str) for v in raw):
        index = {name.lower(): i for i, name in enumerate(label_names)}
        unknown = sorted({v for v in raw if v.lower() not in index})
        if unknown:
            raise SungenError(f"{path}: labels {unknown[:10]} are not labels of this task {label_names}")
        labels = np.array([index[v.lower()] for v in raw], dtype=np.int64)
    elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in raw):
        labels = np.asarray(raw, dtype=np.int64)
        bad = sorted({int(v) for v in labels if not 0 <= v < len(label_names)})
        if bad:
            raise SungenError(
                f"{path}: labels {bad[:10]} out of range for this task's {len(label_names)} labels {label_names}"
            )
    else:
        raise SungenError(f"{path}: column 'label' must hold class ids or class names")
    if "label_name" in table.column_names:
        names = table.column("label_name").to_pylist()
        for lab, name in zip(labels, names):
            if name is not None and str(name).lower() != label_names[lab].lower():
                raise SungenError(f"{path}: label {lab} is named {name!r} there but {label_names[lab]!r} in the task")
    text = [str(t) for t in table.column("text").to_pylist()]
    return LabelledData(idx=np.arange(len(text), dtype=np.int64), text=text, label=labels, source=str(path))


def metrics(pred: np.ndarray, gold: np.ndarray, label_names: list[str]) -> dict:
    """Accuracy, macro-F1 and per-class counts/precision/recall."""
    per_class = {}
    f1s = []
    for k, name in enumerate(label_names):
        tp = int(((pred == k) & (gold == k)).sum())
        fp = int(((pred == k) & (gold != k)).sum())
        fn = int(((pred != k) & (gold == k)).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        if (gold == k).any():
            f1s.append(f1)
        per_class[name] = {"gold": int((gold == k).sum()), "predicted": int((pred == k).sum()), "f1": f1}
    return {
        "n": int(len(gold)),
        "accuracy": float((pred == gold).mean()),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class": per_class,
    }


def evaluate(trained: TrainedModel, gold_path: str | Path) -> dict:
    gold = read_gold(gold_path, trained.label_names)
    pred = trained.predict(gold.text).argmax(1)
    return {"gold": str(gold_path), **metrics(pred, gold.label, trained.label_names)}
