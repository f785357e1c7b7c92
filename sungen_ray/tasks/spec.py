"""Task specs: the labels of a classification task and the prompts that make the PLM write them.

A spec is plain YAML so users can add tasks without code. Loading goes through
``sungen_ray.config.from_dict``, so a malformed spec fails with the dotted name of the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sungen_ray.config import from_dict, load_yaml
from sungen_ray.errors import SungenError

BUILTIN_DIR = Path(__file__).parent / "builtin"
CONDITION_PLACEHOLDER = "{condition}"


@dataclass
class Decoding:
    """Sampling limits. Paper defaults: nucleus top_p 0.9, top_k disabled (0)."""

    max_new_tokens: int = 40
    min_new_tokens: int = 0
    min_words: int = 4
    top_p: float = 0.9
    top_k: int = 0
    temperature: float = 1.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=lambda: ['"'])

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise SungenError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise SungenError(f"min_new_tokens: must be in [0, max_new_tokens={self.max_new_tokens}]")
        if self.min_words < 1:
            raise SungenError(f"min_words: must be >= 1, got {self.min_words}")
        if not 0 < self.top_p <= 1:
            raise SungenError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise SungenError(f"top_k: must be >= 0 (0 disables it), got {self.top_k}")
        if self.temperature <= 0:
            raise SungenError(f"temperature: must be > 0, got {self.temperature}")


@dataclass
class Condition:
    """First stage: generate conditioning values (a movie, restaurant or product name) that the
    label prompts then mention via ``{condition}``, for more diverse samples."""

    prompt: str
    num_values: int = 64
    max_new_tokens: int = 12
    min_words: int = 1
    max_words: int = 8

    def validate(self) -> None:
        if self.num_values < 1:
            raise SungenError(f"num_values: must be >= 1, got {self.num_values}")
        if self.max_new_tokens < 1:
            raise SungenError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if not 1 <= self.min_words <= self.max_words:
            raise SungenError(f"min_words: must be in [1, max_words={self.max_words}]")


@dataclass
class Label:
    name: str
    prompts: list[str]

    def validate(self) -> None:
        if not self.name.strip():
            raise SungenError("name: must not be empty")
        if not self.prompts:
            raise SungenError("prompts: at least one prompt template is required")
        for i, p in enumerate(self.prompts):
            if not p.strip():
                raise SungenError(f"prompts[{i}]: empty prompt")


@dataclass
class TaskSpec:
    name: str
    labels: list[Label]
    description: str = ""
    decoding: Decoding = field(default_factory=Decoding)
    condition: Condition | None = None

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def validate(self) -> None:
        if not self.name.strip():
            raise SungenError("name: must not be empty")
        if len(self.labels) < 2:
            raise SungenError(f"labels: a classification task needs at least 2 labels, got {len(self.labels)}")
        names = self.label_names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SungenError(f"labels: duplicate label names {dupes}")
        for i, label in enumerate(self.labels):
            for j, prompt in enumerate(label.prompts):
                uses = CONDITION_PLACEHOLDER in prompt
                if not uses and self.condition is not None:
                    raise SungenError(
                        f"labels[{i}].prompts[{j}]: lacks the {CONDITION_PLACEHOLDER} placeholder, so the values of "
                        "the spec's 'condition' stage would never reach the prompt"
                    )
                if uses and self.condition is None:
                    raise SungenError(
                        f"labels[{i}].prompts[{j}]: uses {CONDITION_PLACEHOLDER} but the spec has no 'condition' stage"
                    )
                try:
                    prompt.format(condition="x")
                except (KeyError, IndexError, ValueError) as exc:
                    raise SungenError(
                        f"labels[{i}].prompts[{j}]: bad template ({exc!r}); the only placeholder is {{condition}}"
                    ) from exc


def builtin_tasks() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_spec_file(path: str | Path) -> TaskSpec:
    path = Path(path)
    data = load_yaml(path)
    try:
        return from_dict(TaskSpec, data, where="")
    except SungenError as exc:
        raise SungenError(f"task spec {path}: {exc}") from exc


def load_task(task: str) -> TaskSpec:
    """``task`` is a built-in name (``sst2``) or a path to a user's YAML spec."""
    if task.endswith((".yaml", ".yml")) or "/" in task:
        return load_spec_file(task)
    path = BUILTIN_DIR / f"{task}.yaml"
    if not path.is_file():
        raise SungenError(f"unknown task {task!r}; built-in tasks: {builtin_tasks()} (or pass a path to a spec YAML)")
    return load_spec_file(path)
