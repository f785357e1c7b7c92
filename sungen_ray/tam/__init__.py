"""Task models (TAMs): encoders that turn text into tensors once, and small models over them."""

from sungen_ray.tam.config import TAM_NAMES, TamConfig
from sungen_ray.tam.encoded import Dense, Encoded, Padded, Ragged
from sungen_ray.tam.registry import build_encoder, build_model
from sungen_ray.tam.train import accuracy, predict_logits, train

__all__ = [
    "TAM_NAMES",
    "Dense",
    "Encoded",
    "Padded",
    "Ragged",
    "TamConfig",
    "accuracy",
    "build_encoder",
    "build_model",
    "predict_logits",
    "train",
]
