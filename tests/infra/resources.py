"""Checks that checkov's Bicep parser sees every resource declared in infra/: its parser predates some syntax and
silently drops what it cannot read (single-line objects, the Microsoft Graph extension), so a clean checkov run
alone proves nothing about a resource it never saw. Run by scripts/ci-infra.sh with checkov's venv."""
import re
import sys
from pathlib import Path

from checkov.bicep.parser import Parser

DECLARATION = re.compile(r"^\s*resource\s+(\w+)\s+'", re.MULTILINE)


def main(root: Path, skipped: set[str]) -> int:
    failures = 0
    for path in sorted(root.rglob("*.bicep")):
        relative = path.relative_to(root).as_posix()
        if any(relative.startswith(prefix) for prefix in skipped):
            continue
        declared = set(DECLARATION.findall(path.read_text()))
        parsed, _ = Parser().parse(path)
        if parsed is None:
            print(f"{relative}: checkov cannot parse this file")
            failures += 1
            continue
        seen = set(parsed.get("resources", {}).keys())
        missing = declared - seen
        if missing:
            print(f"{relative}: checkov does not see {sorted(missing)}")
            failures += 1
        else:
            print(f"{relative}: checkov sees all {len(declared)} resource(s)")
    return failures


if __name__ == "__main__":
    sys.exit(1 if main(Path(sys.argv[1]), set(sys.argv[2:])) else 0)
