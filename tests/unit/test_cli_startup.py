"""`dispatcher` starts on click alone: --help and usage errors import neither redis nor rq."""

from __future__ import annotations

import subprocess
import sys


def test_help_imports_neither_redis_nor_rq() -> None:
    code = (
        "import sys\n"
        "from dispatcher.cli import main\n"
        "try:\n"
        "    main(['submit', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('redis', 'rq', 'common.catalogue') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "Submit the tasks in SOURCE" in done.stdout


def test_the_package_still_exports_the_executor() -> None:
    import dispatcher
    from dispatcher.executor import RedisExecutor

    assert dispatcher.RedisExecutor is RedisExecutor
