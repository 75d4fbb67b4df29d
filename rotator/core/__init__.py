"""The pure core: vocabulary, ports, the state record and its transitions, ``plan()`` and the
engine that carries plans out. Nothing here imports hvac, httpx, requests or apscheduler, nor
any module of :mod:`rotator.adapters`, :mod:`rotator.runtime` or :mod:`rotator.dev`.

- :mod:`~rotator.core.vocab`, :mod:`~rotator.core.errors`, :mod:`~rotator.core.keys`: the
  words, the error tree, Ed25519 keys;
- :mod:`~rotator.core.ports`: what the core needs from outside (Registry, SecretStore);
- :mod:`~rotator.core.state` and :mod:`~rotator.core.transitions`: the record and its pure
  changes; :mod:`~rotator.core.policy`: ``plan()``, pure decisions;
- :mod:`~rotator.core.kinds`: each credential kind described once;
- :mod:`~rotator.core.engine`: the check (snapshot, plan, carry out), with its steps in
  :mod:`~rotator.core.rotation`, :mod:`~rotator.core.cleanup` and :mod:`~rotator.core.bearer`,
  over :mod:`~rotator.core.context` (one account; one check in progress);
- :mod:`~rotator.core.admin`: bootstrap, ``rotator rotate`` requests, status.
"""
