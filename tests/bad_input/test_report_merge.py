"""The bad-input matrix: `report merge`. Reports come from devices, so each field the fleet table reads is typed (one
line naming the file and the field), and fleet.md, appended to a CI step summary, renders every report field as
text: no line, heading, image, link or HTML can come from a report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bad_input.matrix import Run, matrix_test, registry

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


def report(bench, here: Path, change=None, text: str | None = None) -> Path:
    """A real build's report.json in here/run/, changed by `change` (or replaced by `text`)."""
    path = here / "run" / "report.json"
    path.parent.mkdir()
    data = json.loads((bench.built / "report.json").read_text())
    if change is not None:
        change(data)
    path.write_text(text if text is not None else json.dumps(data))
    return path


def merge(path: Path, here: Path) -> list[str]:
    return ["report", "merge", str(path), "--out", str(here / "fleet")]


for _name, _says, _change in (
        ("report lacks latency batch", "`latency.0.batch`: Field required", lambda r: r["latency"][0].pop("batch")),
        ("report device is a string", "`device`: Input should be an object", lambda r: r.update(device="x")),
        ("report task.map50 is a string", "`task.map50`: Input should be a valid number",
         lambda r: r.update(task={"kind": "detection", "map50": "high", "map50_vs_reference": 0.9})),
        ("report task of no kind", "`task.kind`: not one of the tasks this version knows (detection, classification)",
         lambda r: r.update(task={"map50": 0.9, "map50_drop": 0})),
        ("report tensors is a list", "`tensors`: Input should be an object", lambda r: r.update(tensors=[])),
        ("report holds only schema", "`kind`: Field required",
         lambda r: [r.pop(k) for k in list(r) if k != "schema"]),
        ("report check without a name", "`checks.0.name`: Field required", lambda r: r["checks"][0].pop("name"))):
    @case(f"report merge: {_name}", 2, "not a valid edgedeploy report", _says)
    def _(bench, here, out, change=_change):
        path = report(bench, here, change)
        return Run(merge(path, here), (str(path),), keep=(here / "fleet",))


@case("report merge: 200 000 levels deep", 2, "not a readable JSON report")
def _(bench, here, out):
    path = report(bench, here, text='{"schema": "edgedeploy.report/1", "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    return Run(merge(path, here), (str(path),), keep=(here / "fleet",))


@case("report merge: not JSON", 2, "not a readable JSON report")
def _(bench, here, out):
    path = report(bench, here, text="{not json")
    return Run(merge(path, here), (str(path),), keep=(here / "fleet",))


@case("report merge: Markdown and HTML in report fields", 0)
def _(bench, here, out):
    hostile = "x\n# pwned\n![img](https://attacker.example/t.png) <img src=x onerror=alert(1)> [link](https://a.example) |"

    def change(r):
        r["target"] = hostile
        r["device"] = {"model": hostile, "temperatures_c": {"cpu": 40.0}}
        r["checks"][0]["name"] = hostile
        r["conditions"]["version"] = hostile

    path = report(bench, here, change)

    def seen(result) -> str:
        md = (here / "fleet" / "fleet.md").read_text()
        lines = md.splitlines()
        assert [line for line in lines if line.startswith("#")] == [lines[0], "## Runs"], md
        body = "\n".join(lines[1:])
        assert not re.search(r"(?<!\\)!(?<!\\)\[|(?<!\\)<img|(?<!\\)\]\(", body), md
        rows = [len(re.findall(r"(?<!\\)\|", line)) for line in lines if line.startswith("| ")]
        assert rows[0] == rows[1] and rows[2] == rows[3], rows  # (header, row) of both tables: no cell added
        assert len(lines) == 13, md  # title, blank, note, blank, 3 table lines, blank, ## Runs, blank, 3 lines
        return "fleet.md: every report field escaped, " + lines[6][:70] + "…"
    return Run(merge(path, here), seen=seen)


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
