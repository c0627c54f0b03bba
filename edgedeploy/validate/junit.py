"""JUnit XML from a report: one testcase per check, a failing one names the metric, its value and its limit."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from edgedeploy.validate.record import Report


def to_junit(report: Report) -> str:
    checks = report.checks
    suite_name = f"edgedeploy.{report.name}.{report.target}.{report.precision}"
    failures = sum(c.outcome == "fail" for c in checks)
    skips = sum(c.outcome == "skip" for c in checks)
    seconds = f"{report.wall_seconds or 0.0:.3f}"
    suites = ET.Element("testsuites", name="edgedeploy validate", tests=str(len(checks)), failures=str(failures),
                        errors="0", skipped=str(skips), time=seconds)
    suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(checks)), failures=str(failures),
                          errors="0", skipped=str(skips), time=seconds, timestamp=report.created)
    props = ET.SubElement(suite, "properties")
    cond = report.conditions
    for key, value in (("artifact", report.artifact.get("path")), ("backend", cond.get("backend")),
                       ("backend_version", cond.get("version")), ("processor", cond.get("processor")),
                       ("threads", cond.get("threads")),
                       ("precision_hint", cond.get("precision_hint_effective")),
                       ("baseline", (report.baseline or {}).get("path"))):
        if value is not None:
            ET.SubElement(props, "property", name=key, value=str(value))
    for c in checks:
        group = c.group or "check"
        case = ET.SubElement(suite, "testcase", classname=f"{suite_name}.{group}", name=c.name, time="0")
        message = c.message or f"{c.name} = {c.value} (limit {c.op} {c.limit})"
        if c.outcome == "skip":
            ET.SubElement(case, "skipped", message=message)
        elif c.outcome == "fail":
            fail = ET.SubElement(case, "failure", message=message, type=f"{group}_threshold")
            fail.text = (f"check: {c.name}\nvalue: {c.value}\nlimit: {c.op} {c.limit}"
                         + (f"\nbaseline: {c.baseline}" if c.baseline is not None else "")
                         + (f"\nlimit from: {c.origin}" if c.origin else ""))
        else:
            ET.SubElement(case, "system-out").text = message
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
