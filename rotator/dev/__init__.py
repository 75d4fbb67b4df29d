"""For tests and ``make demo`` only: the Encord sandbox, a dev OpenBao server and the demo.
Nothing under :mod:`rotator.runtime`, :mod:`rotator.adapters` or :mod:`rotator.core` imports it."""
