"""Decoding on CPU: vLLM's vocabulary-sorting top-p against the replicas' top-k-first mask, in float32
and bfloat16, one engine per dtype in this process, the same prompts and per-row seeds for all.

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so the sampler can be swapped
between runs of one engine; runs alternate (ABAB) to cancel drift. Texts are compared between the
two samplers of one dtype: the mask is meant to be vLLM's, so they should match row for row.

    OMP_NUM_THREADS=1 python benchmarks/decode_cpu.py --prompts 256 --repeats 2

``--through-replicas N`` instead times whole ``generate`` calls of N samples on the machine's vLLM
replicas (engine start included), alternating vLLM's sort and the replicas' mask (ABBA), float32.
"""

from __future__ import annotations

import argparse
import gc
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--prompts", type=int, default=256, help="one engine batch on CPU is 256 sequences")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--through-replicas", type=int, default=0, metavar="N", help="time generate calls of N samples")
    args = ap.parse_args()
    if args.through_replicas:
        through_replicas(args)
        return

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the sampler runs here, where it is swapped
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    import torch
    import vllm.v1.sample.ops.topk_topp_sampler as sampler
    from vllm import LLM, SamplingParams

    from sungen_ray.generation import top_p
    from sungen_ray.generation.engines import EngineOptions, sampling_params, vllm_engine_kwargs
    from sungen_ray.generation.prompts import label_targets, prompt_rows
    from sungen_ray.plm.prepare import resolve_model
    from sungen_ray.tasks.spec import load_task

    spec = load_task(args.task)
    model = resolve_model(None)
    rows = prompt_rows(spec, label_targets(args.prompts, spec.num_labels), seed=args.seed)
    prompts = [r["prompt"] for r in rows]
    params = [SamplingParams(**sampling_params(spec.decoding, args.seed, r["row_id"])) for r in rows]
    vllms = sampler.apply_top_k_top_p
    top_p.install(sampler)
    ours = sampler.apply_top_k_top_p
    spent = {"s": 0.0}

    def timed(fn):
        def run(logits, k, p):
            t = time.perf_counter()
            out = fn(logits, k, p)
            spent["s"] += time.perf_counter() - t
            return out

        return run

    print(f"{args.prompts} {args.task} prompts, {torch.get_num_threads()} math thread(s)", flush=True)
    results: dict[tuple[str, str], list[dict]] = {}
    for dtype in args.dtypes.split(","):
        llm = LLM(model=model, **vllm_engine_kwargs(EngineOptions(model=model, decoding=spec.decoding, dtype=dtype)))
        llm.generate(prompts[:8], params[:8], use_tqdm=False)  # warm-up, and the prompts' prefix in cache
        for i in range(2 * args.repeats):
            name = "sort" if i % 2 == 0 else "top-k first"
            sampler.apply_top_k_top_p = timed(vllms if name == "sort" else ours)
            spent["s"] = 0.0
            t = time.perf_counter()
            outs = llm.generate(prompts, params, use_tqdm=False)
            seconds = time.perf_counter() - t
            tokens = sum(len(o.outputs[0].token_ids) for o in outs)
            run = {"s": seconds, "tokens": tokens, "top_p_s": spent["s"], "texts": [o.outputs[0].text for o in outs]}
            results.setdefault((dtype, name), []).append(run)
            print(
                f"[{dtype}, {name}] {seconds:.1f} s, {tokens} tokens, {tokens / seconds:.1f} tok/s, "
                f"top-p masking {spent['s']:.1f} s",
                flush=True,
            )
        del llm
        gc.collect()
    sampler.apply_top_k_top_p = vllms

    def tok_s(key):
        runs = results[key]
        return sum(r["tokens"] for r in runs) / sum(r["s"] for r in runs)

    first = (args.dtypes.split(",")[0], "sort")
    print(f"\n== decoding {args.prompts} prompts, tokens/s (ratio to {first[0]} with vLLM's sort)")
    for key in results:
        print(f"{key[0]:>9}, {key[1]:<11}: {tok_s(key):7.1f} tok/s  x{tok_s(key) / tok_s(first):.2f}")
    for dtype in args.dtypes.split(","):
        a, b = results[(dtype, "sort")][0]["texts"], results[(dtype, "top-k first")][0]["texts"]
        print(f"{dtype}: the two samplers gave the same text for {sum(x == y for x, y in zip(a, b))}/{len(a)} rows")


def through_replicas(args) -> None:
    import json
    import tempfile

    import pyarrow.parquet as pq

    from sungen_ray.generation import top_p
    from sungen_ray.generation.config import GenerateConfig
    from sungen_ray.generation.pipeline import generate

    switch = top_p.ENV
    runs: dict[str, list[dict]] = {"sort": [], "top-k first": []}
    for i in range(2 * args.repeats):
        name = ("sort", "top-k first", "top-k first", "sort")[i % 4]
        top_p.ENV = switch if name == "top-k first" else switch + "_OFF"  # the replicas' environment
        with tempfile.TemporaryDirectory() as out:
            cfg = GenerateConfig(task=args.task, num_samples=args.through_replicas, out=out, seed=args.seed)
            m = generate(cfg)
            digest = hash(tuple(pq.read_table(f"{out}/data").column("text").to_pylist()))
        runs[name].append({"s": m["seconds"], "tok_s": m["engine_tokens_per_s"], "pool": digest})
        print(
            f"[{name}] {m['seconds']:.1f} s whole call, engine {m['engine_tokens_per_s']:.1f} tok/s, "
            f"first row after {m['startup_seconds']:.1f} s",
            flush=True,
        )
    top_p.ENV = switch
    mean = {k: sum(r["s"] for r in v) / len(v) for k, v in runs.items()}
    same = len({r["pool"] for v in runs.values() for r in v}) == 1
    print(f"\n== generate {args.through_replicas} {args.task} samples, ABBA x{args.repeats}")
    print(json.dumps({k: [r["s"] for r in v] for k, v in runs.items()}))
    print(
        f"mean whole call: sort {mean['sort']:.1f} s, top-k first {mean['top-k first']:.1f} s, "
        f"ratio {mean['top-k first'] / mean['sort']:.3f}; every run wrote the same pool: {same}"
    )


if __name__ == "__main__":
    main()
