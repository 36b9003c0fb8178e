"""The class's concept check, before and after: ``python tools/concept_report.py FILE ...``.

Each trainee pastes the one line ``cc.submit(...)`` printed (``labkit-concepts v2
before 6/10 abcd...``) into a shared document; save it as a text file and run
this on it (``-`` reads standard input).  Other lines are ignored, so a chat log
can be pasted as it is.  Nothing is sent anywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from labkit.concepts import report


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    lines: list[str] = []
    for name in argv:
        lines += (sys.stdin.read() if name == "-" else Path(name).read_text()).splitlines()
    print(report(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
