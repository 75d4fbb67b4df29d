"""The running process: configuration (one table of variables), wiring (what builds what),
the scheduler and its lifecycle, health, metrics and logging. Never imports :mod:`rotator.dev`."""
