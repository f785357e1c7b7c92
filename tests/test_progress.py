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
