"""The ``pvha`` entry point: the console script and ``python -m pvha``.

The fast path (:mod:`pvha.cli.fast`) serves the root help, ``config`` and ``_complete``
without importing Typer; everything else, and anything it declines, goes to the Typer
app (:mod:`pvha.cli.app`), imported only then.
"""

from __future__ import annotations

import sys

from pvha.cli import fast


def main() -> None:
    """Console-script entry point."""
    code = fast.run(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from pvha.cli.app import main as typer_main

    typer_main()
