"""axe-core (the npm package, `package.json`) run in the page by Playwright.

`assert_accessible(page, name)` takes the step's screenshot, runs axe on the page as it is now
(after any HTMX swap the test waited for) and fails on any *serious* or *critical* violation of
WCAG 2.0/2.1 A and AA or axe's best practices, listing each rule with the first elements it
flagged. The full axe result is written next to the screenshot
(test-artifacts/browser/<test>/<n>-<name>.axe.json), minor and moderate findings included.

axe is injected with `page.evaluate(source)`: through the DevTools protocol, which the page's
Content-Security-Policy (script-src 'self', no inline script) does not apply to. A <script> tag
(`page.add_script_tag`) would be refused by that policy; tests/browser/test_accessibility.py
checks both.

`make test` installs axe-core (`npm ci`, Makefile). Without it the axe tests skip with the reason,
except under CI (CI=true), where they fail.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
FAILING_IMPACTS = ("serious", "critical")
SHOWN_NODES = 3  # elements listed per rule in a failure message (the JSON report has them all)


@cache
def source() -> str | None:
    return AXE_JS.read_text() if AXE_JS.exists() else None


def require_axe() -> str:
    """axe-core's source, or skip (locally) / fail (CI) saying how to install it."""
    found = source()
    if found is None:
        reason = (f"axe-core is not installed ({AXE_JS.relative_to(ROOT)} is missing): run `make test`, "
                  "or `npm ci` (needs node and npm: apt-get install nodejs npm)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


def inject(page) -> None:
    """axe into the page (each navigation starts a new document without it)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(require_axe())
        assert page.evaluate("typeof window.axe === 'object' && typeof window.axe.run === 'function'"), \
            "axe-core did not load into the page"


# Runs axe; then moves the nodes a waiver names (rule id, CSS selector of third-party markup, why)
# from the violations to `waived`, which the report keeps.
RUN = """async ([options, waivers]) => {
  const result = JSON.parse(JSON.stringify(await axe.run(document, options)));
  result.waived = [];
  for (const violation of result.violations) {
    const mine = waivers.filter(([rule]) => rule === violation.id);
    if (!mine.length) continue;
    violation.nodes = violation.nodes.filter(node => {
      const element = node.target.length === 1 && typeof node.target[0] === 'string'
        ? document.querySelector(node.target[0]) : null;
      const waiver = element && mine.find(([, selector]) => element.closest(selector));
      if (waiver) result.waived.push({rule: violation.id, selector: waiver[1], reason: waiver[2],
                                      target: node.target, html: node.html});
      return !waiver;
    });
  }
  result.violations = result.violations.filter(violation => violation.nodes.length);
  return result;
}"""


def run(page, *, waive=()) -> dict:
    """axe's result for the page's document as it is now: violations only, every impact.

    `waive`: (rule id, CSS selector, reason) of third-party markup Hoist can't change; only that
    rule's findings inside those elements are set aside (listed under "waived" in the result).
    """
    inject(page)
    options = {"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]}
    return page.evaluate(RUN, [options, [list(waiver) for waiver in waive]])


def serious(result: dict) -> list[dict]:
    return [v for v in result["violations"] if v.get("impact") in FAILING_IMPACTS]


def describe(violations: list[dict], url: str) -> str:
    lines = [f"{len(violations)} serious/critical accessibility violation(s) on {url}:"]
    for violation in violations:
        nodes = violation["nodes"]
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} "
                     f"[{len(nodes)} element(s)] {violation['helpUrl']}")
        for node in nodes[:SHOWN_NODES]:
            target = " ".join(" >> ".join(part) if isinstance(part, list) else part for part in node["target"])
            html = " ".join(node["html"].split())
            lines.append(f"    {target}")
            lines.append(f"      {html[:200]}{'…' if len(html) > 200 else ''}")
            summary = " ".join((node.get("failureSummary") or "").split())
            if summary:
                lines.append(f"      {summary[:300]}")
        if len(nodes) > SHOWN_NODES:
            lines.append(f"    … and {len(nodes) - SHOWN_NODES} more (see the .axe.json report)")
    return "\n".join(lines)


def assert_accessible(page, name: str, *, waive=()) -> dict:
    """Screenshot `name`, run axe, keep its report beside the screenshot, fail on serious/critical."""
    require_axe()
    page.shots(name)
    result = run(page, waive=waive)
    report = page.shots.folder / f"{page.shots.count:02d}-{name}.axe.json"
    report.write_text(json.dumps({"step": name, **result}, indent=1))
    failing = serious(result)
    if failing:
        pytest.fail(describe(failing, page.url) + f"\nReport: {report.relative_to(ROOT)}", pytrace=False)
    return result
