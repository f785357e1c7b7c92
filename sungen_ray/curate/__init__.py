"""Which rows to train on, and against what: selection modes (``selection``), learned weights
(``weights``), the curated set shared by the driver and ``sungen-ray train`` (``curated``), and the
baselines' training sets (``baselines``)."""
