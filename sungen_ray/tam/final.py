"""The product a user takes away: a TAM trained on the curated set, saved, reloaded, evaluated.

Training reuses ``sungen_ray.tam.train`` (the same code as the reweighting inner problem), so
"train on the selection" and "train inside the bilevel loop" cannot drift apart. Evaluation
reads gold files in any supported format and checks their labels against the task first: a gold
file from the wrong task must fail loudly, not score 50%.

What a saved model directory holds, per TAM (nothing is pickled in any of them):

- ``minilm-ft``: a standard transformers text classifier, ``BertForSequenceClassification``:
  ``config.json`` (with ``id2label``/``label2id`` naming the task's labels), ``model.safetensors``
  and the tokenizer files. ``AutoModelForSequenceClassification.from_pretrained(DIR)``,
  ``AutoTokenizer.from_pretrained(DIR)`` and ``pipeline("text-classification", model=DIR)`` load
  it with no custom code, and so do the tools built on them. ``model.json`` (format version 2)
  sits beside it for ``sungen-ray predict`` / ``evaluate``: label names, TAM settings, metadata.
- ``bow``, ``lstm`` and frozen ``minilm``: ``model.safetensors`` (the tensors) + ``model.json``
  (format version 1: the TAM settings, label names, what rebuilds the encoder, metadata). These are
  not transformer classifiers, so there is no standard class to export them to: ``bow`` is a
  hashed word/bigram embedding bag (the hashing is this package's), ``lstm`` a BiLSTM over a
  vocabulary fitted on the synthetic set (stored in ``model.json`` as a ``tokenizers`` JSON), and
  frozen ``minilm`` an MLP/linear head over mean-pooled, normalised MiniLM sentence embeddings
  (its encoder is the unchanged public all-MiniLM-L6-v2, named in ``model.json``, not copied).
  The safetensors file is readable anywhere; running the model needs ``tam.final.load``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sungen_ray.data import atomic
from sungen_ray.data.labelled import LabelledData, read_table
from sungen_ray.errors import SungenError
from sungen_ray.parallel.progress import Progress
from sungen_ray.tam.bow import BowEncoder
from sungen_ray.tam.device import resolve_device, validate_device_name
from sungen_ray.tam.lstm import LstmEncoder
from sungen_ray.tam.minilm import MiniLMEncoder
from sungen_ray.tam.minilm_ft import MeanPooledMiniLM, MiniLMClassifier, MiniLMTokenEncoder
from sungen_ray.tam.registry import TamConfig, build_encoder, build_model
from sungen_ray.tam.train import fit_full_batch, predict_logits, train

MODEL_FILE = "model.json"  # TAM config, label names, encoder state, meta
WEIGHTS_FILE = "model.safetensors"
LEGACY_FILE = "model.pt"  # pickled by old releases; refused, never read
FORMAT = "sungen-ray-tam"
FORMAT_VERSION = 1  # model.safetensors holds this package's module state (bow, lstm, minilm)
TRANSFORMERS_VERSION = 2  # the directory is a standard transformers classifier (minilm-ft)
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MAX_GOLD_TEXT_CHARS = 100_000  # far above any review or article the tasks hold
# rows per prediction batch, for every TAM (the predict CLI's chunk too): small enough for a
# fine-tuned transformer's attention, whose 8192 x 64 tokens took gigabytes
PREDICT_BATCH_ROWS = 1024
# a final fit that outlasts this reports its steps (a fine-tuned MiniLM takes many minutes a pass on
# a CPU); shorter ones, like every fit in the demo, print nothing
QUIET_FIT_S = 30.0


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
        data = self.encoder.encode(texts).to(device)
        logits = predict_logits(self.model, data, PREDICT_BATCH_ROWS)
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
    if cfg.tam.optimizer == "lbfgs":
        losses = fit_full_batch(model, data, y, w, l2=cfg.tam.l2)
    else:
        on_step, close = _long_fit_progress(len(texts))
        try:
            losses = train(model, data, y, w, cfg=cfg.tam, epochs=cfg.epochs, seed=cfg.seed, on_step=on_step)
        finally:
            close()
    if not all(math.isfinite(x) for x in losses):
        raise SungenError(f"final training diverged (loss {losses[-1]}); lower final.tam.lr")
    if isinstance(model, MiniLMClassifier):  # evaluated as it is deployed: whole texts, as the pipeline reads them
        encoder = encoder.for_inference(model)
    return TrainedModel(model=model, encoder=encoder, tam=cfg.tam, label_names=list(label_names))


def _long_fit_progress(n: int):
    """(on_step for ``train``, close): a progress line every few seconds once the fit has run
    ``QUIET_FIT_S``, nothing before."""
    t0, progress = time.perf_counter(), None

    def on_step(done: int, total: int) -> None:
        nonlocal progress
        if progress is None:
            if time.perf_counter() - t0 < QUIET_FIT_S:
                return
            progress = Progress(f"final, {n} samples", total, unit="steps", start=done)
        progress.update(done)

    def close() -> None:
        if progress is not None:
            progress.update(progress.done, force=True)  # where it ended, whatever the interval
            progress.close()

    return on_step, close


def save(path: str | Path, trained: TrainedModel, meta: dict | None = None) -> Path:
    """Write ``model.safetensors`` (tensors only) and ``model.json`` (everything else) into ``path``;
    for ``minilm-ft`` the directory is a standard transformers classifier (see the module docstring).

    Nothing is pickled, so loading a model someone else hands you runs none of their code. The JSON
    is written last: a directory whose JSON is there holds a whole model."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if isinstance(trained.model, MiniLMClassifier):
        _save_transformers(path, trained)
        version = TRANSFORMERS_VERSION
    else:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()}
        tmp = path / f".{WEIGHTS_FILE}.tmp"
        save_file(state, str(tmp))
        tmp.replace(path / WEIGHTS_FILE)
        version = FORMAT_VERSION
    atomic.write_json(
        path / MODEL_FILE,
        {
            "format": FORMAT,
            "version": version,
            "tam": dataclasses.asdict(trained.tam),
            "label_names": trained.label_names,
            "encoder": encoder_state(trained.encoder),
            "meta": meta or {},
        },
    )
    return path / MODEL_FILE


def _save_transformers(path: Path, trained: TrainedModel) -> None:
    """The classifier, its config (label names as ``id2label``/``label2id``) and its tokenizer, written
    into a scratch directory beside ``path`` and then moved in, file by file."""
    import shutil
    import tempfile

    from sungen_ray.tam.minilm_ft import tokenizer

    hf = trained.model.hf
    names = list(trained.label_names)
    hf.config.id2label = dict(enumerate(names))
    hf.config.label2id = {name: k for k, name in enumerate(names)}
    hf.config.problem_type = "single_label_classification"
    hf.config.architectures = [type(hf).__name__]
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=path))
    try:
        hf.save_pretrained(scratch, safe_serialization=True)
        tokenizer(trained.encoder.source).save_pretrained(scratch)
        for f in sorted(scratch.iterdir()):
            f.replace(path / f.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def encoder_state(encoder) -> dict:
    """What rebuilds the encoder exactly: hashing parameters, the LSTM vocabulary, MiniLM's identity."""
    if isinstance(encoder, BowEncoder):
        return {"kind": "bow", **encoder.state()}
    if isinstance(encoder, LstmEncoder):
        return {"kind": "lstm", **encoder.state()}
    if isinstance(encoder, MiniLMEncoder):
        return {"kind": "minilm", "model": MINILM_ID, **encoder.state()}
    if isinstance(encoder, MiniLMTokenEncoder):  # the model it was fine-tuned from
        return {"kind": "minilm-ft", "model": MINILM_ID, **encoder.state()}
    raise SungenError(f"cannot save encoder of type {type(encoder).__name__}")


def encoder_from_state(state: dict, file: Path):
    kind = state.get("kind")
    try:
        if kind == "bow":
            return BowEncoder(buckets=int(state["buckets"]), bigrams=bool(state["bigrams"]))
        if kind == "lstm":
            from tokenizers import Tokenizer

            return LstmEncoder(Tokenizer.from_str(json.dumps(state["tokenizer"])), int(state["max_len"]))
        if kind in ("minilm", "minilm-ft"):
            if state.get("model") != MINILM_ID:
                raise SungenError(f"{file}: encoder.model {state.get('model')!r} is not {MINILM_ID!r}")
            encoder = MiniLMEncoder if kind == "minilm" else MiniLMTokenEncoder
            return encoder(max_len=int(state["max_len"]))
    except SungenError:
        raise
    except Exception as exc:  # noqa: BLE001 - KeyError, TypeError, the tokenizer's own parse errors
        raise SungenError(f"{file}: field 'encoder' is malformed ({type(exc).__name__}: {exc})") from exc
    raise SungenError(f"{file}: field 'encoder.kind' must be bow, lstm, minilm or minilm-ft, got {kind!r}")


def _model_files(path: Path) -> tuple[Path, Path]:
    """(model.json, model.safetensors) for a model dir or either of its files; old pickles refused."""
    if path.is_dir():
        meta = path / MODEL_FILE
        if not meta.is_file() and (path / LEGACY_FILE).exists():
            _refuse_legacy(path / LEGACY_FILE)
    elif path.suffix == ".json":
        meta = path
    elif path.suffix == ".safetensors":
        meta = path.with_name(MODEL_FILE)
    elif path.is_file():
        _refuse_legacy(path)
    else:
        meta = path
    if not meta.is_file():
        raise SungenError(f"no trained model at {path} (expected {meta})")
    return meta, meta.with_name(WEIGHTS_FILE)


def _refuse_legacy(file: Path) -> None:
    """Old releases pickled the whole model into model.pt; unpickling runs code, so it is never read."""
    raise SungenError(
        f"{file}: old-format (pickled) model file; sungen-ray no longer unpickles model files because that can run "
        f"arbitrary code. re-train or convert it: `sungen-ray train` (or a conversion run in a trusted environment) "
        f"writes {MODEL_FILE} + {WEIGHTS_FILE}"
    )


def load(path: str | Path) -> TrainedModel:
    """Read a model written by :func:`save`: JSON and safetensors only, never a pickle."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from sungen_ray.config import from_dict

    meta_file, weights_file = _model_files(Path(path))
    try:
        payload = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SungenError(f"{meta_file}: not a sungen-ray model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SungenError(f"{meta_file}: not a sungen-ray model file (field 'format' is not {FORMAT!r})")
    version = payload.get("version")
    if version not in (FORMAT_VERSION, TRANSFORMERS_VERSION):
        raise SungenError(
            f"{meta_file}: model format version {version!r}, this sungen-ray reads "
            f"{FORMAT_VERSION} and {TRANSFORMERS_VERSION}; re-train or convert the model"
        )
    for key in ("tam", "label_names", "encoder"):
        if key not in payload:
            raise SungenError(f"{meta_file}: field {key!r} missing")
    tam = from_dict(TamConfig, payload["tam"], "tam")
    encoder = encoder_from_state(payload["encoder"], meta_file)
    if not weights_file.is_file():
        raise SungenError(f"{weights_file}: missing (a model is {MODEL_FILE} + {WEIGHTS_FILE})")
    if version == TRANSFORMERS_VERSION:
        return _load_transformers(meta_file.parent, tam, encoder, list(payload["label_names"]))
    try:
        state = load_file(str(weights_file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SungenError(f"{weights_file}: unreadable safetensors file ({type(exc).__name__}: {exc})") from exc
    if tam.name == "minilm-ft":  # saved before issue 23: mean pooling into a linear head
        model = MeanPooledMiniLM(len(payload["label_names"]))
    else:
        model = build_model(tam, encoder, _probe_encoded(encoder), len(payload["label_names"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SungenError(f"{weights_file}: weights do not fit the {tam.name} model in {meta_file} ({exc})") from exc
    model.eval()
    return TrainedModel(model=model, encoder=encoder, tam=tam, label_names=list(payload["label_names"]))


def _load_transformers(directory: Path, tam: TamConfig, encoder, label_names: list[str]) -> TrainedModel:
    """A minilm-ft directory: the transformers classifier and tokenizer saved in it (safetensors only)."""
    if not isinstance(encoder, MiniLMTokenEncoder):
        raise SungenError(f"{directory / MODEL_FILE}: format version {TRANSFORMERS_VERSION} is for minilm-ft models")
    try:
        model = MiniLMClassifier(len(label_names), source=directory)
    except (OSError, ValueError, KeyError) as exc:
        raise SungenError(f"{directory}: not a loadable transformers classifier ({type(exc).__name__}: {exc})") from exc
    if model.num_labels != len(label_names):
        raise SungenError(
            f"{directory}: config.json has {model.num_labels} labels but {MODEL_FILE} names {len(label_names)}"
        )
    model.eval()
    encoder = encoder.for_inference(model, source=str(directory))
    return TrainedModel(model=model, encoder=encoder, tam=tam, label_names=label_names)


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
    nulls = [i for i, v in enumerate(raw) if v is None]
    if nulls:
        raise SungenError(f"{path}: field 'label' is null in {len(nulls)} row(s), first row {nulls[0]}")
    for i, text in enumerate(table.column("text").to_pylist()):
        if text is None or not str(text).strip():
            raise SungenError(f"{path}: field 'text' is empty in row {i}")
        if len(str(text)) > MAX_GOLD_TEXT_CHARS:
            raise SungenError(
                f"{path}: field 'text' of row {i} has {len(str(text)):,} characters, over the "
                f"{MAX_GOLD_TEXT_CHARS:,} limit (a whole file pasted into one row?)"
            )
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
