"""`pvha sim ...`: run PVE regression-format scenarios in the deterministic simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pvha.errors import PvhaError

sim_app = typer.Typer(name="sim", help="Deterministic HA simulator.", no_args_is_help=True)


def _fail(exc: PvhaError) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(exc.exit_code)


@sim_app.command("run")
def run_cmd(
    directory: Annotated[Path, typer.Argument(help="Scenario directory (PVE test format).")],
    log: Annotated[
        Path | None, typer.Option("--log", help="Write the log here instead of stdout.")
    ] = None,
) -> None:
    """Run one scenario and write its log (PVE's simulator format)."""
    from pvha.sim.runner import run_scenario
    from pvha.sim.scenario import load_scenario

    try:
        text = run_scenario(load_scenario(directory))
    except PvhaError as exc:
        _fail(exc)
        return
    if log is None:
        typer.echo(text, nl=False)
    else:
        log.write_text(text)


@sim_app.command("check")
def check_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Scenario directories or folders of them.")],
    tier: Annotated[str, typer.Option("--tier", help="exact | decisions | relaxed")] = "exact",
    diff: Annotated[bool, typer.Option("--diff", help="Show a unified diff for failures.")] = False,
) -> None:
    """Run every scenario with a log.expect under PATHS and compare at TIER."""
    from pvha.sim.check import TIERS, check_paths

    if tier not in TIERS:
        typer.secho(
            f"error: unknown tier '{tier}' (choose from {', '.join(TIERS)})", fg="red", err=True
        )
        raise typer.Exit(2)
    passed = failed = 0
    try:
        for result in check_paths(paths, tier):
            typer.echo(result.line())
            if diff and result.diff:
                typer.echo("\n".join(result.diff))
            if result.ok:
                passed += 1
            else:
                failed += 1
    except PvhaError as exc:
        _fail(exc)
    if passed + failed == 0:
        typer.echo(f"pvha: error: no scenario (a directory with a log.expect) under "
                   f"{' '.join(map(str, paths))}", err=True)
        raise typer.Exit(2)
    typer.echo(f"{passed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@sim_app.command("chaos")
def chaos_cmd(
    runs: Annotated[int, typer.Option("--runs", min=1, help="How many random scenarios.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same scenarios.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write minimal failing scenarios here (default: a new "
                                   "temporary directory)."),
    ] = None,
) -> None:
    """Run random scenarios, checking safety invariants after every simulator step.

    Each run is replayed to compare logs. Every violation is shrunk to a minimal
    scenario directory, whose path is printed; exits 1 when there are violations.
    """
    import tempfile

    from pvha.sim.chaos import Finding, run_chaos

    target: list[Path] = [out] if out is not None else []

    def where() -> Path:
        if not target:
            target.append(Path(tempfile.mkdtemp(prefix="pvha-chaos-")))
        return target[0]

    def show(finding: Finding) -> None:
        typer.echo(f"{finding.path}: {finding.minimal_violation.line()}")

    try:
        report = run_chaos(runs, seed, out=None, on_finding=show, out_factory=where)
    except PvhaError as exc:
        _fail(exc)
        return
    note = report.accepted_line()
    if note is not None:
        typer.echo(note)
    typer.echo(report.line())
    if report.violations:
        raise typer.Exit(1)


def _register_real_time_commands() -> None:
    # `sim serve` / `sim ctl` (the fake PVE over HTTPS) live in their own module.
    from pvha.cli import sim_serve

    sim_serve.register(sim_app)


_register_real_time_commands()
