"""Generation throughput: bare ``vllm.LLM.generate`` vs our Ray Data pipeline (1 replica), one run.

Same model, prompts, seeds and sampling for both; both outputs go through the same
postprocess (cut at the quote, min words, dedupe). Engine start-up is timed separately and
excluded from both throughputs:
  (a) bare:     start = ``LLM(...)`` construction; generation = one ``generate`` over all prompts.
  (b) pipeline: the engine lives inside a Ray Data actor, so its start cannot be stop-watched from
                outside. Every output row carries when its request entered the engine (completion
                time minus vLLM's per-request latency) and when it left the pipeline; generation
                time = last row out - first request in, which includes every pipeline overhead
                (batching, scheduling, postprocess, transfer to the driver) but not engine start.

    python benchmarks/generation_throughput.py --prompts 256 --repeats 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections import Counter

from sungen_ray.generation import top_p
from sungen_ray.generation.config import GenerateConfig
from sungen_ray.generation.engines import EngineOptions, sampling_params, vllm_engine_kwargs
from sungen_ray.generation.pipeline import consume, run_engine
from sungen_ray.generation.postprocess import clean_text, drop_reason
from sungen_ray.generation.prompts import label_targets, prompt_rows
from sungen_ray.generation.staging import Tally
from sungen_ray.plm.prepare import resolve_model
from sungen_ray.tasks.spec import load_task


def kept_count(texts: list[str], spec) -> int:
    seen: set[str] = set()
    for t in texts:
        text = clean_text(t, spec.decoding.stop)
        if drop_reason(text, spec.decoding.min_words) is None:
            seen.add(text)
    return len(seen)


def bare_vllm(model: str, spec, rows: list[dict], seed: int, per_row_seed: bool = True) -> dict:
    """``per_row_seed=False`` is the setting before per-row seeds on CPU (engine-wide seed, chunked
    prefill on): the baseline that shows what per-row seeding costs."""
    import os

    # the same engine settings the pipeline's replicas get (engines.vllm_engine_kwargs, and the
    # top-p mask their environment switches on in vLLM's processes)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ[top_p.ENV] = "1"
    from vllm import LLM, SamplingParams

    t0 = time.perf_counter()
    kwargs = vllm_engine_kwargs(EngineOptions(model=model, decoding=spec.decoding, seed=seed))
    if not per_row_seed:
        kwargs.pop("enable_chunked_prefill", None)
    llm = LLM(model=model, **kwargs)
    start_s = time.perf_counter() - t0
    params = []
    for r in rows:
        sampling = sampling_params(spec.decoding, seed, r["row_id"])
        if not per_row_seed:
            sampling.pop("seed")
        params.append(SamplingParams(**sampling))
    t0 = time.perf_counter()
    outs = llm.generate([r["prompt"] for r in rows], params, use_tqdm=False)
    gen_s = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    texts = [o.outputs[0].text for o in outs]
    del llm
    gc.collect()
    return {"start_s": start_s, "gen_s": gen_s, "tokens": tokens, "kept": kept_count(texts, spec)}


def pipeline(
    model: str, spec, rows: list[dict], seed: int, batch_size: int, batches_per_block: int, max_num_seqs: int | None
) -> dict:
    from sungen_ray.parallel.ray_runtime import ensure_ray

    ensure_ray(min_cpus=(os.cpu_count() or 1) + 2)
    cfg = GenerateConfig(
        task=spec.name,
        num_samples=len(rows),
        out="/dev/null",
        batch_size=batch_size,
        seed=seed,
        batches_per_block=batches_per_block,
    )
    # the replica gets the machine's cores, as the bare in-process engine does
    cpus = os.cpu_count() or 1
    opts = EngineOptions(
        model=model,
        decoding=spec.decoding,
        replicas=1,
        batch_size=batch_size,
        seed=seed,
        cpus_per_replica=cpus,
        max_num_seqs=max_num_seqs,
    )
    tally = Tally(kept=[], dropped=Counter())
    t0 = time.perf_counter()
    consume(run_engine(cfg, opts, rows), spec, [10**9] * spec.num_labels, tally, set(), "bench")  # no early stop
    total_s = time.perf_counter() - t0
    tally.close_window(opts.replicas)
    return {
        "total_s": total_s,
        "start_s": total_s - tally.engine_seconds,
        "gen_s": tally.engine_seconds,
        "tokens": tally.tokens,
        "kept": len(tally.kept),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batches-per-block", type=int, default=4)
    ap.add_argument(
        "--pipeline-max-num-seqs",
        type=int,
        default=None,
        help="engine batch for (b) only, e.g. 128 to see the AsyncLLM default it used to get (default: same as (a))",
    )
    ap.add_argument("--repeats", type=int, default=2, help="runs of each, in ABBA order to cancel load drift")
    ap.add_argument(
        "--seeding-baseline",
        action="store_true",
        help="also run (c): bare vLLM with one engine-wide seed and chunked prefill, to price per-row seeds",
    )
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    spec = load_task(args.task)
    model = resolve_model(args.model)
    rows = prompt_rows(spec, label_targets(args.prompts, spec.num_labels), seed=args.seed)
    runs = {"a": [], "b": [], "c": []}
    pair = "abc" if args.seeding_baseline else "ab"
    order = "".join(pair if i % 2 == 0 else pair[::-1] for i in range(args.repeats))
    for which in order:
        if which == "a":
            r = bare_vllm(model, spec, rows, args.seed)
        elif which == "c":
            r = bare_vllm(model, spec, rows, args.seed, per_row_seed=False)
        else:
            r = pipeline(
                model, spec, rows, args.seed, args.batch_size, args.batches_per_block, args.pipeline_max_num_seqs
            )
        r["tokens_per_s"], r["kept_per_s"] = r["tokens"] / r["gen_s"], r["kept"] / r["gen_s"]
        runs[which].append(r)
        name = {"a": "bare vLLM", "b": "pipeline", "c": "bare vLLM, engine-wide seed"}[which]
        print(
            f"[{name}] start {r['start_s']:.1f} s, gen {r['gen_s']:.1f} s, {r['tokens']} tokens: "
            f"{r['tokens_per_s']:.1f} tok/s, {r['kept_per_s']:.2f} kept/s",
            flush=True,
        )

    def mean(which, key):
        return sum(r[key] for r in runs[which]) / len(runs[which])

    a_tok, b_tok = mean("a", "tokens_per_s"), mean("b", "tokens_per_s")
    a_kept, b_kept = mean("a", "kept_per_s"), mean("b", "kept_per_s")
    print(f"\n== generation throughput: {args.task}, {args.prompts} prompts x {args.repeats} runs each ({order})")
    print(f"(a) bare vllm.LLM.generate: start {mean('a', 'start_s'):.1f} s | {a_tok:.1f} tokens/s, {a_kept:.2f} kept/s")
    print(f"(b) Ray Data pipeline x1  : start {mean('b', 'start_s'):.1f} s | {b_tok:.1f} tokens/s, {b_kept:.2f} kept/s")
    print(f"ratio (b)/(a): tokens/s {b_tok / a_tok:.3f}, kept samples/s {b_kept / a_kept:.3f}")
    if runs["c"]:
        c_tok, c_kept = mean("c", "tokens_per_s"), mean("c", "kept_per_s")
        print(
            f"(c) bare, engine-wide seed: start {mean('c', 'start_s'):.1f} s | {c_tok:.1f} tokens/s, {c_kept:.2f} kept/s"
        )
        print(
            f"ratio (a)/(c), per-row seeds vs engine-wide: tokens/s {a_tok / c_tok:.3f}, kept/s {a_kept / c_kept:.3f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"runs": runs, "ratio_tokens_per_s": b_tok / a_tok, "ratio_kept_per_s": b_kept / a_kept}, fh)


if __name__ == "__main__":
    main()
