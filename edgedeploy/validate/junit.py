"""JUnit XML from a report: one testcase per check, a failing one names the metric, its value and its limit."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


def to_junit(report: dict[str, Any]) -> str:
    checks = report.get("checks", [])
    suite_name = f"edgedeploy.{report.get('name', 'model')}.{report.get('target')}.{report.get('precision')}"
    failures = sum(c.get("status") == "fail" or not c.get("passed", True) for c in checks)
    skips = sum(c.get("status") == "skip" for c in checks)
    suites = ET.Element("testsuites", name="edgedeploy validate", tests=str(len(checks)), failures=str(failures),
                        errors="0", skipped=str(skips), time=f"{report.get('wall_seconds', 0.0):.3f}")
    suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(checks)), failures=str(failures),
                          errors="0", skipped=str(skips), time=f"{report.get('wall_seconds', 0.0):.3f}",
                          timestamp=str(report.get("created", "")))
    props = ET.SubElement(suite, "properties")
    cond = report.get("conditions", {})
    for key, value in (("artifact", report.get("artifact", {}).get("path")), ("backend", cond.get("backend")),
                       ("backend_version", cond.get("version")), ("processor", cond.get("processor")),
                       ("threads", cond.get("threads")),
                       ("precision_hint", cond.get("precision_hint_effective")),
                       ("baseline", (report.get("baseline") or {}).get("path"))):
        if value is not None:
            ET.SubElement(props, "property", name=key, value=str(value))
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"{suite_name}.{c.get('group', 'check')}",
                             name=c["name"], time="0")
        message = c.get("message") or f"{c['name']} = {c.get('value')} (limit {c.get('op')} {c.get('limit')})"
        if c.get("status") == "skip":
            ET.SubElement(case, "skipped", message=message)
        elif not c.get("passed", True):
            fail = ET.SubElement(case, "failure", message=message, type=f"{c.get('group', 'check')}_threshold")
            fail.text = (f"check: {c['name']}\nvalue: {c.get('value')}\nlimit: {c.get('op')} {c.get('limit')}"
                         + (f"\nbaseline: {c['baseline']}" if "baseline" in c else "")
                         + (f"\nlimit from: {c['origin']}" if c.get("origin") else ""))
        else:
            ET.SubElement(case, "system-out").text = message
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
