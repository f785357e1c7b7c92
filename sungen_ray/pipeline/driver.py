"""The driver: a declared list of stages (name, inputs, function) run in order, then the report.

Each stage's inputs are everything its output depends on, known from the config before anything
runs, so the plan (with every stage's input hash and whether it would be skipped) can be printed
first (``--describe``) and ``--stop-after`` can be checked against the stage names.
"""

from __future__ import annotations

import time

from sungen_ray.config import identity_dict, to_dict
from sungen_ray.data import atomic
from sungen_ray.errors import SungenError
from sungen_ray.generation.config import produced_by
from sungen_ray.generation.engine_pool import EnginePool
from sungen_ray.pipeline.config import PipelineConfig
from sungen_ray.pipeline.final import final_stage
from sungen_ray.pipeline.layout import RunLayout
from sungen_ray.pipeline.rounds import generate_round, reweight_round, select_round
from sungen_ray.pipeline.stages import Stage, file_sha256, run_stage
from sungen_ray.tasks.spec import TaskSpec, load_task


def plan(cfg: PipelineConfig, spec: TaskSpec, engines=None) -> list[Stage]:
    """Every stage of the run, in order. A stage's inputs extend the previous one's, so a change
    upstream redoes everything downstream. ``engines``: the run's engine replicas, which every
    generate stage reuses."""
    layout = RunLayout(cfg.out)
    base = {"task": to_dict(spec), "seed": cfg.seed}
    stages = []
    for r in range(len(cfg.rounds)):
        gen_inputs = base | {
            "round": r,
            "rounds": to_dict(cfg)["rounds"][: r + 1],
            "generation": produced_by(to_dict(cfg.generation)),
        }
        gen_inputs["feedback"] = to_dict(cfg.feedback) if r else None
        if cfg.channel.active(spec.num_labels):  # left out when off, so unscored runs keep their hash
            gen_inputs["channel"] = True
        rw_inputs = gen_inputs | {"reweight": _semantic(cfg.reweight), "workers": cfg.workers}
        sel_inputs = rw_inputs | {"select": to_dict(cfg.select)}
        stages += [
            Stage(
                f"generate-{r}",
                f"round {r} generate",
                layout.pool(r),
                gen_inputs,
                lambda d, r=r: generate_round(cfg, spec, r, engines),
            ),
            Stage(
                f"reweight-{r}",
                f"round {r} reweight",
                layout.reweight(r),
                rw_inputs,
                lambda d, r=r: reweight_round(cfg, spec, r, d),
            ),
            Stage(
                f"select-{r}",
                f"round {r} select",
                layout.select(r),
                sel_inputs,
                lambda d, r=r: select_round(cfg, spec, r, d),
            ),
        ]
    final_inputs = sel_inputs | {
        "final": _semantic(cfg.final),
        "baselines": cfg.baselines,
        "seeds": cfg.seeds,
        "gold": cfg.gold,
        # the file itself, not just its name: a gold file that appears or changes re-runs the evaluation
        "gold_sha256": file_sha256(cfg.gold),
    }
    stages.append(
        Stage("final", "final training + evaluation", layout.final, final_inputs, lambda d: final_stage(cfg, spec, d))
    )
    return stages


# Fields added after runs were recorded are left out of a stage's inputs while they hold the value
# that does what the code did before they existed, so a run finished before then is resumed, not
# redone, only because the field exists (a changed default still redoes it: the value differs).
LEFT_OUT_AT_DEFAULT = {
    "fd_max_move": 1e-2,
    "sparse": True,
    "fixed_inner_order": False,
    "outer_optimizer": "adam",
    "theta_init": "zero",
    "prior_scale": 1.0,
    "prior_norm": "pool",
    "valid_source": "weights",
    "align_norm": "none",
    "l2": 1e-2,
}


def _semantic(cfg) -> dict:
    def strip(d: dict) -> dict:
        return {
            k: strip(v) if isinstance(v, dict) else v
            for k, v in d.items()
            if not (k in LEFT_OUT_AT_DEFAULT and v == LEFT_OUT_AT_DEFAULT[k])
        }

    return strip(identity_dict(cfg))


def release_engines_if_idle(engines: EnginePool, rest: list[Stage], stage: Stage, cfg: PipelineConfig) -> None:
    """Stop the run's engine replicas before ``stage`` when no later stage generates, or when
    ``stage`` needs the CPUs or GPUs they hold (Ray Train workers would wait for them forever).
    Idle replicas cost memory, not compute: vLLM's engine core sleeps without requests."""
    import ray

    if not any(s.name.startswith("generate-") and s.finished() is None for s in rest):
        engines.shutdown()
        return
    if not stage.name.startswith("reweight-") or (cfg.workers == 1 and not cfg.use_gpu):
        return  # one process: the driver's own, outside Ray's resources
    free = ray.available_resources()
    need_gpu = cfg.workers if cfg.use_gpu else 0
    if free.get("CPU", 0) < cfg.workers or free.get("GPU", 0) < need_gpu:
        print(
            f"[pipeline] {stage.title}: its {cfg.workers} Ray Train workers need the resources the engine replicas "
            f"hold (free: {free.get('CPU', 0):g} CPU, {free.get('GPU', 0):g} GPU); stopping the replicas, the next "
            "round starts them again",
            flush=True,
        )
        engines.shutdown()


def check_stop_after(stages: list[Stage], stop_after: str | None) -> None:
    names = [s.name for s in stages]
    if stop_after is not None and stop_after not in names:
        raise SungenError(f"--stop-after {stop_after!r}: not a stage of this run; choose one of {names}")


def describe(cfg: PipelineConfig, stop_after: str | None = None) -> list[dict]:
    """The plan without running anything: each stage's name, input hash, action (skip/redo/run), directory."""
    stages = plan(cfg, load_task(cfg.task))
    check_stop_after(stages, stop_after)
    rows = [
        {"stage": s.name, "input_hash": s.input_hash, "action": s.status(), "dir": str(s.directory)} for s in stages
    ]
    width = max(len(r["stage"]) for r in rows)
    print(f"plan for {cfg.name} ({len(rows)} stages, out {cfg.out}):")
    for r in rows:
        print(f"  {r['stage']:<{width}}  {r['input_hash']}  {r['action']:<4}  {r['dir']}")
    return rows


def run_pipeline(cfg: PipelineConfig, stop_after: str | None = None) -> dict:
    from sungen_ray.pipeline.report import write_report

    spec = load_task(cfg.task)
    engines = EnginePool()
    stages = plan(cfg, spec, engines)
    check_stop_after(stages, stop_after)
    layout = RunLayout(cfg.out)
    layout.out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(layout.config, to_dict(cfg))
    t_start = time.perf_counter()
    results = {}
    try:
        for i, s in enumerate(stages):
            if engines.replicas and not s.name.startswith("generate-"):
                release_engines_if_idle(engines, stages[i:], s, cfg)
            results[s.name] = run_stage(s)
            if s.name == stop_after:
                return {"stopped_after": stop_after}
    finally:  # every exit path: done, --stop-after, an error, Ctrl-C
        engines.shutdown()
    report = write_report(cfg, spec, layout, total_seconds=time.perf_counter() - t_start)
    print(f"[pipeline] report: {layout.report_md}", flush=True)
    final = results["final"]
    s = final["summary"]
    if s.get("sungen", {}).get("accuracy_mean") is not None and "zerogen" in s:
        print(
            f"[pipeline] accuracy on {final['gold']}: SunGen {s['sungen']['accuracy_mean']:.4f} "
            f"vs ZeroGen {s['zerogen']['accuracy_mean']:.4f}",
            flush=True,
        )
    return report
