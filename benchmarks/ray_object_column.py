"""What Ray's pickled object column costs a generated row (issue 23).

``ray.data.llm`` carries each row in a ``__data`` column that has no Arrow type, so Ray Data pickles
it into its Python-object extension column between stages (and used to warn about it). This times
that round trip on rows shaped like the engine stage's output, to compare with what a row costs to
generate (pass the rate a run printed, e.g. ``--rows-per-s 2.5`` for one CPU replica).

    python benchmarks/ray_object_column.py --rows-per-s 2.5
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    from ray.data._internal.tensor_extensions.arrow import ArrowPythonObjectArray

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--rows-per-s", type=float, default=2.5, help="a replica's generation rate to compare with")
    args = ap.parse_args()
    rows = [
        {
            "row_id": i,
            "prompt": "x" * 400,
            "sampling_params": {"temperature": 1.0, "top_p": 0.9, "max_tokens": 64, "seed": i},
            "generated_text": "y" * 300,
            "generated_tokens": list(range(60)),
            "logprobs": [{t: {"logprob": -1.0}} for t in range(60)],
        }
        for i in range(args.rows)
    ]
    per_row = []
    for _ in range(args.trials):
        t0 = time.perf_counter()
        ArrowPythonObjectArray.from_objects(rows).to_numpy()
        per_row.append((time.perf_counter() - t0) / len(rows))
    generate_s = 1 / args.rows_per_s
    best, worst = min(per_row), max(per_row)
    print(f"object column round trip: {best * 1e6:.0f}-{worst * 1e6:.0f} us/row over {args.trials} trials")
    print(f"generation at {args.rows_per_s} rows/s: {generate_s * 1e3:.0f} ms/row; ratio {worst / generate_s:.2e}")


if __name__ == "__main__":
    main()
