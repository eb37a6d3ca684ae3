#!/usr/bin/env python3
"""Print the tests a ctest JUnit report (ctest --output-junit) marks as
skipped, one per line: the test's name, a tab, and why it was skipped: the
last line of its output that says SKIP (a skipping test prints its reason
so), else ctest's own message. Used by scripts/test.sh for its summary.

    scripts/junit_skips.py build/junit.xml
"""
import sys
import xml.etree.ElementTree as ET


def main(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print("junit_skips: cannot read %s: %s" % (path, e), file=sys.stderr)
        return 2
    for case in root.iter("testcase"):
        skipped = case.find("skipped")
        if skipped is None and case.get("status") != "notrun":
            continue
        out = case.findtext("system-out") or ""
        said = [line.strip() for line in out.splitlines() if "skip" in line.lower()]
        why = said[-1] if said else (skipped.get("message") if skipped is not None else "") or "no reason given"
        print("%s\t%s" % (case.get("name"), " ".join(why.split())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]) if len(sys.argv) == 2 else 2)
