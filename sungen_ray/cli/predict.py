"""``sungen-ray predict``: classify new text with a trained task model."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory written by `sungen-ray train` or the pipeline")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a text to classify (repeat for several: one row each, in order)")
    src.add_argument("--input", help="JSONL/CSV/Parquet file with a 'text' column")
    p.add_argument("--out", help="write predictions here (.jsonl, .csv or .parquet); default: print JSON lines")
    p.add_argument("--device", default="auto", help="cpu, cuda (or cuda:N) or auto = the GPU if torch sees one")
    p.add_argument("--batch-size", type=int, default=1024, help="texts encoded and classified at once")


def run(args: argparse.Namespace) -> int:
    import json

    from sungen_ray.errors import SungenError
    from sungen_ray.tam import final as final_model
    from sungen_ray.tam.predict import (
        check_output_path,
        predict_proba,
        predictions_table,
        read_texts,
        write_predictions,
    )

    check_output_path(args.out)
    if args.text is not None:
        empty = [i for i, text in enumerate(args.text, 1) if not text.strip()]
        if empty:
            raise SungenError("--text: empty text" + (f" (--text number {empty[0]})" if len(args.text) > 1 else ""))
        texts = list(args.text)
    else:
        texts = read_texts(args.input)
    trained = final_model.load(args.model)
    probs = predict_proba(trained, texts, batch_size=args.batch_size, device=args.device)
    table = predictions_table(texts, probs, trained.label_names)
    if args.out:
        path = write_predictions(table, args.out)
        counts = {
            name: int((table.column("label").to_numpy() == k).sum()) for k, name in enumerate(trained.label_names)
        }
        print(f"{table.num_rows} predictions -> {path} ({counts})")
    else:
        for row in table.to_pylist():
            print(json.dumps(row, ensure_ascii=False))
    return 0
