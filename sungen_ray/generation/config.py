"""What ``generate`` is asked for: the engine settings (shared with the driver's ``generation:``
block and the CLI's flags) and the pool's own fields (task, size, seed, round, ...)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Literal

from sungen_ray.errors import SungenError
from sungen_ray.tasks.spec import TaskSpec

EngineName = Literal["vllm", "transformers"]
ENGINES: tuple[str, ...] = typing.get_args(EngineName)
DTYPES = ("auto", "float32", "bfloat16", "float16")

# How a pool is produced, not what it holds: left out of a run's identity (and of the driver's
# stage hashes), so changing them resumes a run instead of refusing or redoing it.
EXECUTION_ONLY = (
    "out",
    "replicas",
    "use_gpu",
    "cpus_per_replica",
    "replica_resources",
    "max_num_seqs",
    "stall_timeout_s",
    "max_prompts_per_sample",
    "flush_every_s",
    "ordered",
)
# Fields added after pools were made, left out of their identity while they hold the value that
# does what the code did before them, so those runs still resume (a changed value still counts).
LEFT_OUT_AT_DEFAULT = {"dtype": "auto"}


def produced_by(settings: dict) -> dict:
    """The generation settings that decide what a pool holds: its identity, and the driver's."""
    return {
        k: v
        for k, v in settings.items()
        if k not in EXECUTION_ONLY and not (k in LEFT_OUT_AT_DEFAULT and v == LEFT_OUT_AT_DEFAULT[k])
    }


# A run's prompt ids (samples x max_prompts_per_sample) must stay below the row-id spacing of a pass.
MAX_NUM_SAMPLES = 10**8


@dataclass
class EngineSettings:
    """How the engine runs: one definition for ``generate``, the driver's config and the CLI."""

    model: str | None = None  # local model dir or hub id; None: the embedded SmolLM2-135M
    engine: EngineName = "vllm"
    replicas: int | None = None  # None: what the machine has (see ray_runtime.machine_replicas)
    batch_size: int = 64  # prompts per engine batch
    # The run fails (clearly, with its rows staged) once this many prompts per requested sample were
    # consumed without filling every label; the prompt stream is this long.
    max_prompts_per_sample: float = 4.0
    cpus_per_replica: int | None = None  # None: the machine's cores over its replicas (ray_runtime)
    # Custom Ray resources each engine replica asks for (e.g. {"vllm_node": 1}): pins replicas to the
    # nodes that advertise them.
    replica_resources: dict[str, float] | None = None
    max_num_seqs: int | None = None  # engine batch; None: 256 on CPU, vLLM's default on GPU
    # vLLM's math dtype. auto: float32 on CPU, vLLM's choice on GPU. bfloat16 on a CPU with bf16
    # math decodes 2.2x faster, but a row's text then depends on its batch (engines.cpu_dtype).
    # It changes the texts, so it is part of the pool's identity.
    dtype: str = "auto"
    # Fail when no engine output arrives for this long (0: never). A replica that crashes on every
    # batch is restarted and its batch re-sent forever, which would otherwise hang the run.
    # Generous, because the first output waits for engine start-up (model load, on GPU compilation).
    stall_timeout_s: float = 1800.0
    # Kept rows (and the ids of the rows consumed) reach the staging dir this often: an interrupted
    # run loses at most this much generation.
    flush_every_s: float = 60.0
    # Rows come back in prompt order, so which rows a pass keeps depends on the seed alone and a
    # resumed run ends as an uninterrupted one. False: as they finish, which saves the wait for the
    # slowest replica's first engine batch (docs/RESULTS.md, "Rows in prompt order").
    ordered: bool = True

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise SungenError(f"engine: must be one of {list(ENGINES)}, got {self.engine!r}")
        if self.replicas is not None and self.replicas < 1:
            raise SungenError(f"replicas: must be >= 1 (or unset for the machine's CPUs), got {self.replicas}")
        if self.batch_size < 1:
            raise SungenError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.stall_timeout_s < 0:
            raise SungenError(f"stall_timeout_s: must be >= 0 (0 disables), got {self.stall_timeout_s}")
        if not self.flush_every_s > 0:
            raise SungenError(f"flush_every_s: must be > 0, got {self.flush_every_s}")
        if self.cpus_per_replica is not None and self.cpus_per_replica < 1:
            raise SungenError(f"cpus_per_replica: must be >= 1, got {self.cpus_per_replica}")
        for name, amount in (self.replica_resources or {}).items():
            if name in ("CPU", "GPU") or not amount > 0:
                raise SungenError(
                    f"replica_resources: {name}={amount}; custom resources only (CPU/GPU have their own fields), "
                    "each > 0"
                )
        if self.dtype not in DTYPES:
            raise SungenError(f"dtype: must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise SungenError(f"max_num_seqs: must be >= 1, got {self.max_num_seqs}")
        if not self.max_prompts_per_sample >= 1:
            raise SungenError(f"max_prompts_per_sample: must be >= 1, got {self.max_prompts_per_sample}")


# kw_only: the pool's required fields follow the engine settings' defaulted ones. A subclass, not a
# nested field, so the field names (and so the run identity in earlier manifests) stay flat.
@dataclass(kw_only=True)
class GenerateConfig(EngineSettings):
    task: str
    num_samples: int
    out: str
    seed: int = 0
    round: int = 0
    idx_offset: int = 0
    use_gpu: bool | None = None  # None: use GPUs if the Ray cluster has any
    # Input blocks of batch_size * batches_per_block prompts: bigger blocks mean fewer tiny Ray tasks
    # feeding the engine, smaller ones finer-grained streaming and retries.
    batches_per_block: int = 4
    # feedback-guided generation: label name -> in-context example texts (see prompts.prompt_rows)
    examples: dict[str, list[str]] | None = None
    examples_per_prompt: int = 2

    @classmethod
    def from_settings(cls, settings: EngineSettings, **pool_fields) -> GenerateConfig:
        """The driver's path: its ``generation:`` block passed through, plus the round's own fields."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(EngineSettings)}, **pool_fields)

    def validate(self) -> None:
        if self.num_samples <= 0:
            raise SungenError(f"num_samples: must be > 0, got {self.num_samples}")
        if self.num_samples > MAX_NUM_SAMPLES:
            raise SungenError(
                f"num_samples: at most {MAX_NUM_SAMPLES:,} per run, got {self.num_samples:,}; split it into rounds"
            )
        super().validate()
        if self.idx_offset < 0:
            raise SungenError(f"idx_offset: must be >= 0, got {self.idx_offset}")

    def identity(self, spec: TaskSpec) -> dict:
        """What determines the output: a re-run with the same identity may resume or skip."""
        d = produced_by(dataclasses.asdict(self))
        d["spec"] = dataclasses.asdict(spec)
        return d
