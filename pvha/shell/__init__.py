"""The imperative shell around the pure core: ``pvha watch`` on the real ports.

Modules, one concern each: ``snapshot`` (one frozen view per round from at most 3 API
calls), ``fencing`` (administrator fence-ack records), ``env`` (the core's ``HaEnv``
backed by the snapshot, the cluster filesystem and the API), ``executor`` (the LRM work
of every online node, run by the active manager), ``loop`` (rounds, signals, one log
line per round) and ``live`` (``pvha status`` against a running cluster).
"""
