"""The functional core of pvha: PVE's HA semantics without IO.

Nothing in this package reads files, clocks or sockets: the daemons (:mod:`crm`,
:mod:`lrm`) and the manager round (:mod:`manager`) act only through the port of
:mod:`pvha.core.ports` and get the current instant passed in. States and legal
transitions are data in :mod:`transitions`.
"""
