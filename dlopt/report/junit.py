"""JUnit XML: one test case per variant x backend x gate, so CI systems list each gate."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Any

from dlopt.plain_text import plain_text
from dlopt.report.format import fmt_interval, fmt_number


def render_junit(report: dict[str, Any]) -> str:
    """JUnit XML text; failures carry the measured value and the threshold.

    Every string goes through `plain_text`: a control character (an ESC from a colour code in
    a user's error message) would make the XML unparseable."""
    gates = report.get("gates", [])
    diagnoses = {(d["variant"], d["backend"]): d for d in report.get("diagnoses") or []}
    counts = {
        verdict: sum(1 for g in gates if g["verdict"] == verdict)
        for verdict in ("fail", "inconclusive", "skipped")
    }
    suites = ElementTree.Element("testsuites", name="dlopt gate")
    suite = ElementTree.SubElement(
        suites,
        "testsuite",
        name="dlopt gate",
        tests=str(len(gates)),
        failures=str(counts["fail"]),
        errors=str(counts["inconclusive"]),
        skipped=str(counts["skipped"]),
        timestamp=plain_text(report.get("created_utc", "")),
    )
    for gate in gates:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname=plain_text(f"{gate['variant']}.{gate['backend']}"),
            name=plain_text(gate["gate"]),
        )
        detail = (
            f"measured {fmt_number(gate.get('measured'))}, threshold "
            f"{fmt_number(gate.get('threshold'))} {fmt_interval(gate.get('interval'))}".rstrip()
        )
        reason = plain_text(gate.get("reason") or "")
        if gate["verdict"] == "fail":
            element = ElementTree.SubElement(
                case, "failure", type="gate_failed", message=f"{detail}: {reason}".rstrip(": ")
            )
            element.text = reason + _diagnosis_text(
                diagnoses.get((gate["variant"], gate["backend"])), gate["gate"]
            )
        elif gate["verdict"] == "inconclusive":
            element = ElementTree.SubElement(
                case, "error", type="inconclusive", message=f"{detail}: {reason}".rstrip(": ")
            )
            element.text = "too noisy to judge; rerun"
        elif gate["verdict"] == "skipped":
            ElementTree.SubElement(case, "skipped", message=reason)
        else:
            ElementTree.SubElement(case, "system-out").text = detail
    ElementTree.indent(suites)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        + ElementTree.tostring(suites, encoding="unicode")
        + "\n"
    )


def _diagnosis_text(diagnosis: dict[str, Any] | None, gate: str) -> str:
    """The layers behind a failed accuracy gate and the suggestion, for the CI's failure view."""
    if diagnosis is None or gate not in diagnosis.get("gates", []):
        return ""
    layers = ", ".join(layer["layer"] for layer in diagnosis.get("worst") or [])
    text = f"\nlayers adding the most error: {layers}" if layers else ""
    suggestion = (diagnosis.get("suggestion") or {}).get("text")
    return text + (f"\ntry: {suggestion}" if suggestion else "")
