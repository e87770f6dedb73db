"""Where a submission was made, as the mission forms record it: the answers named ``region`` and
``district``, kept on the submission row so that the console filters by them through an index.

The first answer of each name wins, wherever the form's groups put it (``/data/place/district``,
``/data/report/place/district``...). A value longer than a choice name can reasonably be is not a
place (free text in a question that happens to be called so) and is left out.
"""

from __future__ import annotations

from collections.abc import Iterable

PLACE_NAMES = ("region", "district")
MAX_PLACE_CHARS = 100


def places(leaves: Iterable[tuple[str, str]]) -> dict[str, str | None]:
    """``{"region": ..., "district": ...}`` from a parsed submission's leaves (None when absent)."""
    found: dict[str, str | None] = dict.fromkeys(PLACE_NAMES)
    for path, value in leaves:
        name = path.rsplit("/", 1)[-1]
        if name in found and found[name] is None:
            value = value.strip()
            found[name] = value if value and len(value) <= MAX_PLACE_CHARS else None
    return found
