import io
import time

from sungen_ray.parallel.progress import MIN_RATE_WINDOW_S, Progress


def test_no_rate_or_eta_from_the_first_burst_of_output():
    """The first engine batch arrives all at once: a rate over ~0 s would print absurd rows/s and ETA 0."""
    out = io.StringIO()
    progress = Progress("generate r0", 500, file=out)
    progress.update(100, force=True)  # a burst right after start
    assert progress.rate() is None
    assert out.getvalue().rstrip().endswith("ETA ?")
    progress.first = (progress.first[0] - MIN_RATE_WINDOW_S - 1, progress.first[1])  # time passes
    progress.update(200, force=True)
    assert progress.rate() is not None and 0 < progress.rate() < 200
    assert not out.getvalue().rstrip().endswith("ETA ?")
    assert time.perf_counter() >= progress.t0


def test_a_long_final_fit_reports_its_steps_and_a_short_one_is_quiet(capsys, monkeypatch):
    import numpy as np

    from sungen_ray.tam import final

    texts = [f"good film {i}" if i % 2 else f"bad film {i}" for i in range(64)]
    labels = np.arange(64) % 2
    cfg = final.FinalConfig(tam=final.TamConfig(name="bow", buckets=1024, batch_size=8), epochs=2, device="cpu")
    final.fit(texts, labels, ["negative", "positive"], cfg)
    assert "[final" not in capsys.readouterr().out  # the demo's fits stay quiet
    monkeypatch.setattr(final, "QUIET_FIT_S", 0.0)  # any fit counts as long
    final.fit(texts, labels, ["negative", "positive"], cfg)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[final, 64 samples]")]
    assert lines and "/16 steps" in lines[0]  # 64 rows / batch 8 x 2 epochs
