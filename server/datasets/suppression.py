"""Small-cell suppression of a count table with published totals, so that no count below k can be read
off the table, not even by arithmetic on the totals.

The table is a grid of counts with a total column (one per row) and a total row (one per column, plus
the grand total), or, with no column dimension, one column of counts and its grand total.

1. **Primary suppression**: every published number n with 0 < n < k, totals included. Zeros are shown
   (a zero singles nobody out).
2. **Secondary suppression**: more numbers are hidden until no hidden number can be computed exactly from
   the shown ones. For the grid with its totals this has an exact graph form: put a node for every row
   (the total row included) and every column (the total column included), and an edge for every hidden
   number between its row and its column. Each node is a sum relation (a line adds up to its total); a
   hidden number is determined by those relations exactly when its edge is a *bridge* (on no cycle) —
   otherwise one can add +d, -d around a cycle and every shown total still holds. So: while some line
   hides exactly one number, hide another of that line; while a bridge remains, hide a number that closes
   a cycle through it. Complements are chosen as the smallest non-zero numbers (least information lost;
   and a hidden zero next to a hidden small count could pin it down once counts are known to be >= 0).
3. **Group disclosure** (dimensions from questions tagged ``sensitive``): a *group* is a line of the
   table across the categories of a sensitive dimension (a row when the columns are sensitive, a column
   when the rows are; the total line too: it is the group of everyone counted). When one category holds
   the group's whole non-missing count (all 6 surveyed in a district reported abuse), the line tells the
   answer of everyone known to be in the group, however large the count. Then every category cell of
   that line is hidden — the full one *and* its zeros, since shown zeros beside one hidden count give it
   away — and the line's total and its "(missing)" cell stay shown: the reader learns how many are in
   the group, not how they answered. These cells then go through step 2 like small ones, so none of
   them can be worked out from the other lines' totals. Hiding was chosen over merging groups into
   larger ones because it keeps every table's layout the same whatever the data (a donor's spreadsheet
   and the dashboard's charts do not change shape from one month to the next), and step 2 already
   guarantees the hidden cells stay unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Cell = tuple[int, int]  # (row, column) in the grid *with* its totals: the last row and column are totals


def suppress_grid(grid: Sequence[Sequence[int]], k: int, forced: Iterable[Cell] = ()) -> set[Cell]:
    """Which cells of ``grid`` (counts with the total column last and the total row last) to hide;
    ``forced`` are hidden whatever their count (group disclosure, step 3) and protected like small ones."""
    rows, cols = len(grid), len(grid[0])
    hidden = {(r, c) for r in range(rows) for c in range(cols) if 0 < grid[r][c] < k} | set(forced)
    lines = [[(r, c) for c in range(cols)] for r in range(rows)]
    lines += [[(r, c) for r in range(rows)] for c in range(cols)]
    while True:
        single = next((line for line in lines if _hidden_in(line, hidden) == 1), None)
        if single is not None:
            hidden.add(_cheapest(grid, (cell for cell in single if cell not in hidden)))
            continue
        bridge = _find_bridge(hidden)
        if bridge is None:
            return hidden
        hidden.add(_cheapest(grid, _cycle_closers(bridge, hidden, rows, cols)))


def suppress_column(
    counts: Sequence[int], total: int, k: int, forced: Iterable[int] = ()
) -> tuple[set[int], bool]:
    """One column of counts and its total (a table with no column dimension): which counts to hide, and
    whether to hide the total. The one relation is ``sum(counts) == total``: one hidden number alone
    would be computable, so a second is hidden with it. ``forced`` as in :func:`suppress_grid`."""
    hidden = {i for i, n in enumerate(counts) if 0 < n < k} | set(forced)
    hide_total = 0 < total < k
    if len(hidden) + hide_total == 1:
        shown = [i for i in range(len(counts)) if i not in hidden]
        if shown:
            hidden.add(min(shown, key=lambda i: (counts[i] == 0, counts[i], i)))
        else:
            hide_total = True
    return hidden, hide_total


def whole_group_lines(grid: Sequence[Sequence[int]], categories: Sequence[int], *, rows: bool) -> set[Cell]:
    """Group disclosure (module docstring, 3): the category cells of every line where one category holds
    the line's whole non-missing count. ``rows``: the groups are the grid's rows and ``categories`` are
    column indexes (the sensitive dimension is the columns); otherwise the groups are the columns and
    ``categories`` are row indexes. The "(missing)" and total lines are not in ``categories``."""
    lines = range(len(grid)) if rows else range(len(grid[0]))

    def at(line: int, category: int) -> Cell:
        return (line, category) if rows else (category, line)

    hidden: set[Cell] = set()
    for line in lines:
        held = [grid[r][c] for r, c in (at(line, category) for category in categories)]
        if sum(held) > 0 and sum(n > 0 for n in held) == 1:
            hidden.update(at(line, category) for category in categories)
    return hidden


def _hidden_in(line: Iterable[Cell], hidden: set[Cell]) -> int:
    return sum(cell in hidden for cell in line)


def _cheapest(grid: Sequence[Sequence[int]], candidates: Iterable[Cell]) -> Cell:
    """The smallest non-zero count among ``candidates``; inner cells before totals at equal counts."""
    rows, cols = len(grid), len(grid[0])

    def cost(cell: Cell) -> tuple[bool, int, bool, Cell]:
        r, c = cell
        value = grid[r][c]
        return (value == 0, value, r == rows - 1 or c == cols - 1, cell)

    return min(candidates, key=cost)


def _find_bridge(hidden: set[Cell]) -> Cell | None:
    """A hidden cell that lies on no cycle of the row/column graph, or None (iterative Tarjan)."""
    adjacency: dict[tuple[str, int], list[tuple[tuple[str, int], Cell]]] = {}
    for r, c in hidden:
        adjacency.setdefault(("r", r), []).append((("c", c), (r, c)))
        adjacency.setdefault(("c", c), []).append((("r", r), (r, c)))
    order: dict[tuple[str, int], int] = {}
    low: dict[tuple[str, int], int] = {}
    for root in sorted(adjacency):
        if root in order:
            continue
        order[root] = low[root] = len(order)
        stack = [(root, None, iter(adjacency[root]))]
        while stack:
            node, via, edges = stack[-1]
            advanced = False
            for neighbour, cell in edges:
                if cell == via:
                    continue
                if neighbour in order:
                    low[node] = min(low[node], order[neighbour])
                else:
                    order[neighbour] = low[neighbour] = len(order)
                    stack.append((neighbour, cell, iter(adjacency[neighbour])))
                    advanced = True
                    break
            if advanced:
                continue
            stack.pop()
            if stack:
                parent = stack[-1][0]
                low[parent] = min(low[parent], low[node])
                if low[node] > order[parent]:
                    assert via is not None
                    return via
    return None


def _cycle_closers(bridge: Cell, hidden: set[Cell], rows: int, cols: int) -> list[Cell]:
    """Shown cells joining the two sides of ``bridge``: hiding any one of them puts it on a cycle."""
    side = _component(("r", bridge[0]), hidden - {bridge})
    row_side = {n for kind, n in side if kind == "r"}
    col_side = {n for kind, n in side if kind == "c"}
    other = _component(("c", bridge[1]), hidden - {bridge})
    other_rows = {n for kind, n in other if kind == "r"}
    other_cols = {n for kind, n in other if kind == "c"}
    closers = [(r, c) for r in row_side for c in other_cols] + [(r, c) for r in other_rows for c in col_side]
    return [cell for cell in closers if cell not in hidden and cell[0] < rows and cell[1] < cols]


def _component(start: tuple[str, int], hidden: set[Cell]) -> set[tuple[str, int]]:
    seen = {start}
    todo = [start]
    while todo:
        kind, n = todo.pop()
        for r, c in hidden:
            if (kind == "r" and r == n) or (kind == "c" and c == n):
                neighbour = ("c", c) if kind == "r" else ("r", r)
                if neighbour not in seen:
                    seen.add(neighbour)
                    todo.append(neighbour)
    return seen
