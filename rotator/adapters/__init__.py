"""Adapters at the edge: each implements a port of :mod:`rotator.core.ports` over one outside
system. :mod:`rotator.adapters.vault` (the only importer of hvac) and
:mod:`rotator.adapters.encord` never import each other; :mod:`rotator.adapters.lease` builds
leases and fencing on any SecretStore."""
