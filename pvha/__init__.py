"""pvha: Proxmox VE high availability through the PVE API."""

__version__ = "0.1.0"
