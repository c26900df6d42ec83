"""The `dispatcher` command: the group, its error edge, and its commands (in dispatcher.cli_*).

Only click and the table of settings are imported at start: `dispatcher --help` and usage errors
need nothing else, and redis, rq and the task catalogue are most of a command's start-up time. Each
command imports what it uses when it runs.
"""

from __future__ import annotations

import click

from common.cli import CONTEXT, EdgeGroup
from dispatcher.cli_admin import cancel, dashboard, demo, status
from dispatcher.cli_batch import results, run, submit


@click.group("dispatcher", cls=EdgeGroup, context_settings=CONTEXT)
@click.version_option(package_name="redis-dispatch")
def main() -> None:
    """Dispatch batches of tasks to workers through Redis, and collect their results.

    \b
    Exit codes: 0 every task ok; 1 some tasks failed; 2 usage or input error;
                3 Redis unreachable or refused; 4 timed out (the batch goes on);
                5 the batch's input was not all submitted; 130 interrupted; 141 stdout closed.
    """


for _command in (submit, results, status, cancel, run, demo, dashboard):
    main.add_command(_command)
