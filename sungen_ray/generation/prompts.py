"""Prompt rows for label-conditioned generation, balanced over labels.

Rows are interleaved label by label so every engine batch mixes labels: a replica that dies
mid-run then costs every label a little instead of one label a lot.
"""

from __future__ import annotations

import random

from sungen_ray.tasks.spec import TaskSpec


def label_targets(total: int, num_labels: int) -> list[int]:
    """Split ``total`` as evenly as possible; the first ``total % L`` labels get one more."""
    base, extra = divmod(total, num_labels)
    return [base + (1 if i < extra else 0) for i in range(num_labels)]


def prompt_rows(
    spec: TaskSpec,
    counts: list[int],
    seed: int,
    start_id: int = 0,
    conditions: list[str] | None = None,
    examples: dict[str, list[str]] | None = None,
    examples_per_prompt: int = 2,
) -> list[dict]:
    """``counts[l]`` prompts for label ``l``; each row carries a unique ``row_id`` (its sampling seed).

    With ``examples`` (label name -> texts), each prompt first shows a few of them completed in the
    same template, so the model continues a pattern of good samples (feedback-guided generation).
    """
    rng = random.Random(seed)
    queues = []
    for label, n in enumerate(counts):
        templates = spec.labels[label].prompts
        rows = []
        for k in range(n):
            template = templates[k % len(templates)]
            condition = rng.choice(conditions) if conditions else None
            prompt = template.format(condition=condition) if condition is not None else template
            shots = (examples or {}).get(spec.labels[label].name) or []
            if shots:
                chosen = rng.sample(shots, min(examples_per_prompt, len(shots)))
                prompt = "".join(f'{prompt}{text}"\n' for text in chosen) + prompt
            rows.append({"label": label, "label_name": spec.labels[label].name, "prompt": prompt})
        queues.append(rows)
    out: list[dict] = []
    longest = max(counts) if counts else 0
    for k in range(longest):
        for rows in queues:
            if k < len(rows):
                out.append(rows[k])
    for i, row in enumerate(out):
        row["row_id"] = start_id + i
    return out
