"""What a user would write instead of the CLI on one machine: read and parse a text task file, map it
over ProcessPoolExecutor(2) in chunks of 500, write one JSON line per result with json.dumps.

    python -m bench.ppe_script TASKS.txt > out.jsonl
"""

from __future__ import annotations

import concurrent.futures
import json
import sys

from bench import peer_tasks


def main(path: str) -> None:
    """Run every `add A B` line of `path`; one JSON object per task on stdout, in input order."""
    with open(path, encoding="utf-8") as source:
        calls = [(name, int(a), int(b)) for name, a, b in (line.split() for line in source if line.strip())]
    out = sys.stdout
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        values = pool.map(peer_tasks.add, [c[1] for c in calls], [c[2] for c in calls], chunksize=500)
        for index, (call, value) in enumerate(zip(calls, values, strict=True)):
            record = {
                "index": index,
                "id": None,
                "task": call[0],
                "args": [call[1], call[2]],
                "ok": True,
                "result": value,
                "error": None,
            }
            out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
