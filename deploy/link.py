"""Print the nbgitpuller link a trainer hands out: log in, get a server, pull the lab, open 00.

    python deploy/link.py https://hub.example.org [--repo URL] [--branch main]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from deploy.local_hub import nbgitpuller_link

REPO = "https://github.com/labkit/labkit"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("hub", help="the hub's address, e.g. https://hub.example.org")
    p.add_argument("--repo", default=REPO, help=f"the lab's git repository (default {REPO})")
    p.add_argument("--branch", default="main")
    p.add_argument("--notebook", default="notebooks/00-start-here.ipynb")
    a = p.parse_args(argv)
    print(nbgitpuller_link(a.hub, a.repo, a.branch, a.notebook))
    return 0


if __name__ == "__main__":
    sys.exit(main())
