"""The `weightspace ...` command line and the options the experiment scripts share.

`commands.py` holds the command groups (zoo, baselines, report, run), `options.py` the run options that
`weightspace run` shares with the experiment scripts (`weightspace.cli.experiment_run`), `errors.py` how an error
becomes one line and an exit code. `main` imports the commands when called, so that the experiment scripts'
command line, which imports `options`, never loads the commands that call back into it.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run `weightspace ARGV` (the console script `weightspace`); return its exit code."""
    from weightspace.cli.commands import main as run

    return run(argv)
