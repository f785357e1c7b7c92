"""Task models (TAMs): encoders that turn text into tensors once, and small models over them.

Names are resolved on first use (PEP 562), so ``sungen_ray.tam.config`` stays importable
without torch (the CLI's ``--help`` must not pay for it).
"""

import importlib

_EXPORTS = {
    "Dense": "sungen_ray.tam.encoded",
    "Encoded": "sungen_ray.tam.encoded",
    "Padded": "sungen_ray.tam.encoded",
    "Ragged": "sungen_ray.tam.encoded",
    "TAM_NAMES": "sungen_ray.tam.config",
    "TamConfig": "sungen_ray.tam.config",
    "build_encoder": "sungen_ray.tam.registry",
    "build_model": "sungen_ray.tam.registry",
    "accuracy": "sungen_ray.tam.train",
    "predict_logits": "sungen_ray.tam.train",
    "train": "sungen_ray.tam.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sungen_ray.tam' has no attribute {name!r}")
