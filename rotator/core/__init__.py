"""The pure core: vocabulary, ports, the state record and its transitions, ``plan()`` and the
engine that carries plans out. Nothing here imports hvac, httpx, requests or apscheduler, nor
any module of :mod:`rotator.adapters`, :mod:`rotator.runtime` or :mod:`rotator.dev`."""
