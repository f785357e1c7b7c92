"""``python -m sungen_ray.cli``, as the ``sungen-ray`` script."""

import sys

from sungen_ray.cli import main

sys.exit(main())
