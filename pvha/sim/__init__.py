"""Deterministic simulator of a PVE cluster running the HA core (PVE ``Sim::*``).

* :mod:`pvha.sim.scenario` loads PVE's regression scenario directories;
* :mod:`pvha.sim.hardware` holds the simulated hardware (power, network, cluster
  filesystem, locks with 120 s lifetime, watchdogs, running guests);
* :mod:`pvha.sim.env` is the per-daemon port (``pvha.core.ports.HaEnv``) with its own clock;
* :mod:`pvha.sim.runner` is the round loop of PVE's ``TestHardware::run`` and
  :mod:`pvha.sim.commands` the command vocabulary;
* :mod:`pvha.sim.check` compares runs with ``log.expect`` at three tiers.

Every node runs the same :class:`pvha.core.crm.Crm` and :class:`pvha.core.lrm.Lrm` code.
"""
