"""The ``sarhad-sync`` command."""

from __future__ import annotations

import sys


def main() -> int:
    print("sarhad-sync: not available yet in this version of Sarhad.", file=sys.stderr)
    return 2
