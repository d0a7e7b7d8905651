"""A strict fake PVE API over HTTPS on loopback, in front of a simulated cluster running in
real time (design §7; ``pvha sim serve`` / ``pvha sim ctl``).

Modules, one concern each:

* :mod:`~pvha.fakepve.cluster`: nodes (power, network, segments), membership and quorum
  per node, guests (configs as files under ``nodes/`` in each node's view of the cluster
  filesystem, running state in memory), the RRD caches that make a dead node's guests
  stale.
* :mod:`~pvha.fakepve.pmxcfs`, :mod:`~pvha.fakepve.tree`: the pmxcfs-like FUSE
  filesystem, one mount per node, and the fake API's access to each node's view (or the
  plain directory where FUSE cannot be used).
* :mod:`~pvha.fakepve.watchdog`: each node's watchdog-mux socket.
* :mod:`~pvha.fakepve.actions`: start/stop/shutdown/reboot/migrate with PVE's sync and
  in-task errors.
* :mod:`~pvha.fakepve.tasks`: UPIDs, task status and logs, the scheduler that finishes
  tasks.
* :mod:`~pvha.fakepve.auth`: tickets, CSRF tokens, API tokens.
* :mod:`~pvha.fakepve.schema` (+ generated ``schema_data``): parameter checks against
  PVE's own schema.
* :mod:`~pvha.fakepve.api`: routing, proxying between nodes (595), handlers.
* :mod:`~pvha.fakepve.wire`: response envelope and errors in the reason phrase.
* :mod:`~pvha.fakepve.server`: one HTTPS listener per node, :class:`FakePve`.
* :mod:`~pvha.fakepve.layout`, :mod:`~pvha.fakepve.certs`: the state directory.
* :mod:`~pvha.fakepve.faults`, :mod:`~pvha.fakepve.ctl`: fault injection and the control
  socket.

Served (everything else is 501 ``Method '...' not implemented``)::

    POST /access/ticket                      GET /version
    GET  /cluster/status                     GET /cluster/resources[?type=vm|node|storage|sdn]
    GET  /cluster/tasks                      GET /cluster/ha/resources
    GET  /cluster/ha/status/current          GET /nodes
    GET  /nodes/{node}/status                GET /nodes/{node}/{qemu,lxc}
    GET  /nodes/{node}/tasks                 GET /nodes/{node}/tasks/{upid}/{status,log}
    GET  /nodes/{node}/{qemu,lxc}/{vmid}/{config,status/current,migrate}
    POST /nodes/{node}/{qemu,lxc}/{vmid}/status/{start,stop,shutdown,reboot}
    POST /nodes/{node}/{qemu,lxc}/{vmid}/migrate
"""
