"""Running on Ray: connecting (``ray_runtime``), the collectives both TAM training and reweighting
sum through (``collectives``), and submitting the driver as a Ray job (``ray_job``)."""
