"""Power fencing: ``fence.cfg`` (PVE's format), fence-agent and native Redfish backends,
and the policy that proves a node is off (levels in order, verified read-back)."""
