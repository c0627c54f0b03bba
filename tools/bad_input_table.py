"""Print the bad-input matrix of tests/bad_input/ as Markdown: a section per surface (one test_<surface>.py each) with
a | case | exit | message | table, then the totals.

It runs the matrix through pytest with EDGEDEPLOY_BAD_INPUT_TABLE set, so every row is what a test just saw (paths
shortened to <case>, the case's folder, and <bench>, the shared models). Totals: cases by exit code, unexpected exit
codes, internal errors, and the four things no case may do, each counted from what the case checked after its run:
code run (a canary the hostile input would create), a read or write outside the folder it names, an injection (a
shell or workflow expression that ran), and signals not answered with one line. Extra arguments go to pytest.

    python tools/bad_input_table.py            # the whole matrix (several minutes on 2 cores)
    python tools/bad_input_table.py -k bundle  # some cases (a pytest -k expression)
    python tools/bad_input_table.py tests/bad_input/test_remote.py   # one surface
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST = "test_bad_input_gives_one_clear_line_and_keeps_the_output or test_a_signal_is_answered"
HARMS = {"code_run": "code run", "outside": "read/write outside", "injection": "injection"}


def main(argv: list[str]) -> int:
    select = TEST
    if "-k" in argv:  # narrowed to some cases: both must match
        at = argv.index("-k")
        select = f"({TEST}) and ({argv[at + 1]})"
        argv = argv[:at] + argv[at + 2:]
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.jsonl"
        env = {**os.environ, "EDGEDEPLOY_BAD_INPUT_TABLE": str(rows_file)}
        paths = [] if any(not a.startswith("-") for a in argv) else ["tests/bad_input"]
        result = subprocess.run([sys.executable, "-m", "pytest", *paths, "-k", select, "-q", "-n", "0",
                                 "-p", "no:cacheprovider", *argv], cwd=REPO, env=env, stdout=sys.stderr)
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    surfaces = list(dict.fromkeys(row["surface"] for row in rows))
    for surface in surfaces:
        mine = [row for row in rows if row["surface"] == surface]
        print(f"\n### {surface.replace('_', ' ')} ({len(mine)} cases)\n\n| case | exit | message |\n| --- | --- | --- |")
        for row in mine:
            message = row["message"].replace("|", "\\|")
            exit_code = row["exit"] if row["exit"] == row["expected"] else f"{row['exit']} (expected {row['expected']})"
            harms = [HARMS[h] for h in row.get("harms", [])]
            print(f"| {row['case']} | {exit_code} | {message}{' **' + ', '.join(harms) + '**' if harms else ''} |")
    counts = {code: sum(row["exit"] == code for row in rows) for code in (2, 1, 0)}
    unexpected = sum(row["exit"] != row["expected"] for row in rows)
    internal = sum(row["internal_error"] for row in rows)
    harmed = {h: sum(h in row.get("harms", []) for row in rows) for h in HARMS}
    signals = [row for row in rows if row.get("signal")]
    answered = sum(row["signal"] == "answered" for row in signals)
    print(f"\n{len(rows)} cases in {len(surfaces)} surfaces: {counts[2]} refused as usage errors (exit 2), {counts[1]} "
          f"failed with a diagnosis (exit 1), {counts[0]} handled (exit 0); {unexpected} with an unexpected exit "
          f"code; {internal} internal errors; " + ", ".join(f"{n} {HARMS[h]}" for h, n in harmed.items())
          + f"; signals answered in one line: {answered} of {len(signals)}")
    bad = internal + sum(harmed.values()) + len(signals) - answered
    return result.returncode or int(bad > 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
