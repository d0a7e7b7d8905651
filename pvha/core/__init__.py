"""The functional core of pvha: PVE's HA semantics without IO.

Nothing in this package reads files, clocks or sockets: the daemons (:mod:`crm`,
:mod:`lrm`, sharing :mod:`daemon`) and the manager round (:mod:`manager` over the
:mod:`round_state` its handlers work on, whose docstring is the glossary of ``ss``,
``sd``, ``sc``, ``cd``, ``ns``, ``ms``, ``uid``) act only through the port of
:mod:`pvha.core.ports` and get the current instant passed in. States and legal
transitions are data in :mod:`transitions`. The core imports only itself and
:mod:`pvha.errors` (tests/core/test_core_purity.py).
"""
