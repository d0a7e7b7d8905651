"""`pvha sim ...`: the simulator commands (filled in by the engine work)."""

import typer

sim_app = typer.Typer(name="sim", help="Deterministic HA simulator.", no_args_is_help=True)
