"""Print the bad-input matrix of tests/test_bad_input.py as a Markdown table: | case | exit | message |.

It runs the matrix through pytest with EDGEDEPLOY_BAD_INPUT_TABLE set, so every row is what a test just saw (paths
shortened to <case>, the case's folder, and <bench>, the shared models). Extra arguments go to pytest.

    python tools/bad_input_table.py            # the whole matrix (about five minutes on 2 cores)
    python tools/bad_input_table.py -k YAML    # some cases
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.jsonl"
        env = {**os.environ, "EDGEDEPLOY_BAD_INPUT_TABLE": str(rows_file)}
        tests = "tests/test_bad_input.py::test_bad_input_gives_one_clear_line_and_keeps_the_output"
        result = subprocess.run([sys.executable, "-m", "pytest", tests, "-q", "-p", "no:cacheprovider", *argv],
                                cwd=REPO, env=env, stdout=sys.stderr)
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    print("| case | exit | message |\n| --- | --- | --- |")
    for row in rows:
        message = row["message"].replace("|", "\\|")
        exit_code = row["exit"] if row["exit"] == row["expected"] else f"{row['exit']} (expected {row['expected']})"
        print(f"| {row['case']} | {exit_code} | {message} |")
    counts = {code: sum(row["exit"] == code for row in rows) for code in (2, 1, 0)}
    unexpected = sum(row["exit"] != row["expected"] for row in rows)
    internal = sum(row["internal_error"] for row in rows)
    print(f"\n{len(rows)} cases: {counts[2]} refused as usage errors (exit 2), {counts[1]} failed with a diagnosis "
          f"(exit 1), {counts[0]} handled (exit 0); {unexpected} with an unexpected exit code; "
          f"{internal} internal errors")
    return result.returncode or int(internal > 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
