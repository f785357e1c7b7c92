"""The driver's library: config, run-directory layout, stage records, the stages themselves, report.

``driver.plan`` declares the stages in order; ``driver.run_pipeline`` runs them; ``jobs/`` holds
only the thin entry point and the YAML configs.
"""
