"""Which torch device a process computes on: the reweighting core and the final TAM keep every
tensor there, so data moves between host and device only when it is loaded and written out."""

from __future__ import annotations

import torch

from sungen_ray.errors import SungenError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, field: str = "device") -> torch.device:
    """``auto``: the GPU when torch sees one, else the CPU. ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SungenError(f"{field}: {name!r} asked for, but torch sees no CUDA GPU (use cpu or auto)")
        return torch.device(name)
    raise SungenError(f"{field}: unknown device {name!r}; choose one of {list(DEVICE_CHOICES)} (or cuda:N)")


def validate_device_name(name: str, field: str = "device") -> None:
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise SungenError(f"{field}: unknown device {name!r}; choose one of {list(DEVICE_CHOICES)} (or cuda:N)")
