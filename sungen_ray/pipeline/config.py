"""The driver's typed config (one YAML per run), validated before any stage starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sungen_ray.config import from_dict, load_yaml
from sungen_ray.curate.baselines import BASELINES
from sungen_ray.curate.selection import SelectConfig
from sungen_ray.errors import SungenError
from sungen_ray.features.embed import EmbedConfig
from sungen_ray.generation.config import EngineSettings
from sungen_ray.plm.channel import ChannelConfig
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.tam.final import FinalConfig


@dataclass
class RoundConfig:
    num_samples: int

    def validate(self) -> None:
        if self.num_samples <= 0:
            raise SungenError(f"num_samples: must be > 0, got {self.num_samples}")


@dataclass
class FeedbackConfig:
    """Feedback-guided generation: later rounds show the previous round's best-weighted samples
    of the same label as in-context examples (beyond the paper; off by default)."""

    enabled: bool = False
    examples: int = 2  # examples per prompt
    from_top: int = 64  # drawn from this many highest-weighted samples per label

    def validate(self) -> None:
        if self.examples < 1 or self.from_top < self.examples:
            raise SungenError("examples: need 1 <= examples <= from_top")


@dataclass
class PipelineConfig:
    name: str
    task: str
    out: str
    rounds: list[RoundConfig]
    seed: int = 0
    generation: EngineSettings = field(default_factory=EngineSettings)  # passed through to generate
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)  # the PLM's channel margin per sample
    reweight: ReweightConfig = field(default_factory=ReweightConfig)
    workers: int = 1  # >1: reweighting on Ray Train workers with sharded weights
    # how frozen MiniLM features are computed (once per pool row, stored beside the pool): how, not
    # what, so it is no stage's input
    features: EmbedConfig = field(default_factory=EmbedConfig)
    use_gpu: bool = False
    select: SelectConfig = field(default_factory=SelectConfig)
    final: FinalConfig = field(default_factory=FinalConfig)
    gold: str | None = None  # evaluated if the file exists; skipped with a note otherwise
    baselines: list[str] = field(default_factory=lambda: ["zerogen", "confidence_tam", "confidence_plm"])
    seeds: list[int] = field(default_factory=lambda: [0])  # final-training seeds (mean and spread)
    verbose: bool = False  # Ray Data operator progress and Ray/vLLM INFO logs (off: our progress lines only)

    def validate(self) -> None:
        if not self.rounds:
            raise SungenError("rounds: at least one round is required")
        if self.workers < 1:
            raise SungenError(f"workers: must be >= 1, got {self.workers}")
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise SungenError(f"baselines: unknown {unknown}; choose from {list(BASELINES)}")
        if not self.seeds:
            raise SungenError("seeds: at least one seed is required")


def _set(data: dict, dotted: str, value) -> None:
    """Apply one ``a.b.0.c=value`` override (lists indexed by position)."""
    node = data
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SungenError(f"--set {dotted}: {part!r} is not an index of a {len(node)}-item list")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, (dict, list)):
                    raise SungenError(f"--set {dotted}: {part!r} is not a mapping")


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read the YAML, apply ``key.path=value`` overrides (values parsed as YAML), validate."""
    data = load_yaml(path)
    for item in overrides or []:
        if "=" not in item:
            raise SungenError(f"--set {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        _set(data, key.strip(), yaml.safe_load(raw))
    try:
        return from_dict(PipelineConfig, data)
    except SungenError as exc:
        raise SungenError(f"config {path}: {exc}") from exc
