"""The pvha command line (placeholder until the CLI lands)."""

import typer

app = typer.Typer(name="pvha", no_args_is_help=True)


def main() -> None:
    app()
