"""Charts as SVG made on the server: horizontal bars, stacked (scale) bars and daily columns.

A chart is drawn from a :class:`Chart` (labels and counts, a count being ``None`` when it is hidden by
suppression) and is meant to be read at a glance and by a screen reader:

- the SVG has ``role="img"``, a ``<title>`` and a ``<desc>`` that says what it counts;
- every bar carries its number as text beside it (a hidden count shows as ``[c]``), and every segment a
  ``<title>`` with its label and count, so nothing is told by colour alone; stacked bars have a legend
  in the segments' order and print each segment's count in it when it is wide enough;
- only presentation attributes are used (no ``style``): the console's Content-Security-Policy allows
  no inline styles, and a downloaded file looks the same as the page.

The elements are built with :mod:`xml.etree.ElementTree`, which escapes every label (labels come from
forms, written by people).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal

SVG_NS = "http://www.w3.org/2000/svg"
HIDDEN = "[c]"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"
WIDTH = 760
LABEL_CHARS = 40  # a longer label takes two lines, cut with "…" after that (the full label is in <title>)
CHAR_PX = 7.0  # average width of a 12px character, Latin and Cyrillic alike
ROW = 24
TALL_ROW = 36  # rows whose labels take two lines
TEXT = "#1f2933"
MUTED = "#616e7c"
GRID = "#d9dee3"
BAR = "#2b6cb0"
HIDDEN_FILL = "#e4e7eb"
# Colour-blind-safe categorical colours (Okabe-Ito), darker first so white text stays readable.
CATEGORICAL = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#999999", "#f0e442")
# Scales (1 = worst … 5 = best) in a red-to-blue diverging set; the choices off the scale in greys.
SCALE = ("#b2182b", "#ef8a62", "#d9d9d9", "#67a9cf", "#2166ac")
OFF_SCALE = ("#8c8c8c", "#bdbdbd", "#f0f0f0")
# Ordered categories (low → high severity) from light to dark orange-red.
ORDINAL = ("#fdae61", "#e4572e", "#a50026")
LIGHT = {SCALE[2], *OFF_SCALE[1:], CATEGORICAL[4], CATEGORICAL[5], CATEGORICAL[7], ORDINAL[0]}  # dark text

Kind = Literal["bars", "stacked", "daily"]


@dataclass
class Chart:
    """What a chart shows. ``values[i][j]``: category ``i`` (a bar), series ``j`` (a segment of a stacked
    bar; one series for plain bars). ``totals[i]``: the bar's total (None when hidden)."""

    key: str
    title: str
    kind: Kind
    description: str
    categories: list[str]
    series: list[str]
    values: list[list[int | None]]
    totals: list[int | None]
    scale: bool = False  # series are a 1–5 scale then choices off it (colours as SCALE, OFF_SCALE)
    ordinal: int = 0  # the first N series are ordered (low → high): coloured as ORDINAL, the rest grey
    notes: list[str] = field(default_factory=list)
    hidden_legend: str = f"{HIDDEN} = hidden"  # the legend's words for hidden counts, in the page's language

    @property
    def empty(self) -> bool:
        return not any(self.totals)


def render(chart: Chart) -> str:
    """The chart as an SVG document (UTF-8 text, no XML declaration: it is also inlined in pages)."""
    draw = {"bars": _bars, "stacked": _stacked, "daily": _daily}[chart.kind]
    return draw(chart)


# ------------------------------------------------------------------------------------------ shared


def _svg(chart: Chart, height: int) -> ET.Element:
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "viewBox": f"0 0 {WIDTH} {height}",
            "width": str(WIDTH),
            "height": str(height),
            "role": "img",
            "aria-labelledby": f"{chart.key}-title {chart.key}-desc",
            "font-family": FONT,
            "font-size": "12",
            "fill": TEXT,
        },
    )
    ET.SubElement(svg, "title", {"id": f"{chart.key}-title"}).text = chart.title
    ET.SubElement(svg, "desc", {"id": f"{chart.key}-desc"}).text = chart.description
    ET.SubElement(svg, "rect", {"width": str(WIDTH), "height": str(height), "fill": "#ffffff"})
    return svg


def _text(parent: ET.Element, x: float, y: float, text: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, "text", {"x": f"{x:.1f}", "y": f"{y:.1f}", **attrs})
    element.text = text
    return element


def _rect(parent: ET.Element, x: float, y: float, w: float, h: float, fill: str, tip: str) -> None:
    rect = ET.SubElement(
        parent,
        "rect",
        {"x": f"{x:.1f}", "y": f"{y:.1f}", "width": f"{w:.1f}", "height": f"{h:.1f}", "fill": fill},
    )
    ET.SubElement(rect, "title").text = tip


def _cut(label: str, chars: int = LABEL_CHARS) -> str:
    return label if len(label) <= chars else label[: chars - 1].rstrip() + "…"


def _lines(label: str) -> list[str]:
    """A label on one line, or on two split at a space (the second cut when still too long)."""
    if len(label) <= LABEL_CHARS:
        return [label]
    split = label.rfind(" ", 0, LABEL_CHARS + 1)
    split = split if split > LABEL_CHARS // 2 else LABEL_CHARS
    return [label[:split].rstrip(), _cut(label[split:].strip())]


def _row(chart: Chart) -> int:
    return TALL_ROW if any(len(label) > LABEL_CHARS for label in chart.categories) else ROW


def _category(svg: ET.Element, x: float, middle: float, label: str) -> None:
    """A bar's label, right-aligned before the bar, on one or two lines around ``middle``."""
    lines = _lines(label)
    text = _text(svg, x, middle + 4 - 7 * (len(lines) - 1), "", **{"text-anchor": "end"})
    text.text = None
    for n, line in enumerate(lines):
        span = ET.SubElement(text, "tspan", {"x": f"{x:.1f}", "dy": "0" if n == 0 else "14"})
        span.text = line


def _shown(value: int | None) -> str:
    return HIDDEN if value is None else f"{value:,}".replace(",", "\u202f")


def _done(svg: ET.Element) -> str:
    return ET.tostring(svg, encoding="unicode")


def _label_width(chart: Chart) -> float:
    longest = max((len(line) for label in chart.categories for line in _lines(label)), default=4)
    return min(16 + longest * CHAR_PX, WIDTH * 0.45)


def _nothing(chart: Chart) -> str:
    svg = _svg(chart, 48)
    _text(svg, 12, 28, chart.notes[0] if chart.notes else "—", fill=MUTED)
    return _done(svg)


# --------------------------------------------------------------------------------- horizontal bars


def _bars(chart: Chart) -> str:
    """One horizontal bar per category with its count at its end; a hidden count is a pale bar-less
    row marked [c]."""
    if chart.empty and not chart.categories:
        return _nothing(chart)
    left = _label_width(chart)
    plot = WIDTH - left - 70
    row = _row(chart)
    height = 16 + row * len(chart.categories)
    svg = _svg(chart, height)
    top = max((v for v in chart.totals if v is not None), default=0) or 1
    for i, (label, value) in enumerate(zip(chart.categories, chart.totals, strict=True)):
        middle = 8 + i * row + row / 2
        _category(svg, left - 8, middle, label)
        if value is None:
            _rect(svg, left, middle - 8, plot * 0.04, 16, HIDDEN_FILL, f"{label}: {HIDDEN}")
            _text(svg, left + plot * 0.04 + 6, middle + 4, HIDDEN, fill=MUTED)
            continue
        width = plot * value / top
        _rect(svg, left, middle - 8, width, 16, BAR, f"{label}: {value}")
        _text(svg, left + width + 6, middle + 4, _shown(value))
    ET.SubElement(
        svg,
        "line",
        {"x1": f"{left:.1f}", "x2": f"{left:.1f}", "y1": "6", "y2": str(height - 6), "stroke": MUTED},
    )
    return _done(svg)


# ------------------------------------------------------------------------------------ stacked bars


def _colours(chart: Chart) -> list[str]:
    if chart.ordinal:
        return [*ORDINAL[: chart.ordinal], *OFF_SCALE, *[GRID] * len(chart.series)][: len(chart.series)]
    if chart.scale:
        on_scale = [s for s in chart.series if s[:1].isdigit()]
        scale = SCALE if len(on_scale) == len(SCALE) else CATEGORICAL
        return [*scale[: len(on_scale)], *OFF_SCALE][: len(chart.series)] + [GRID] * len(chart.series)
    return [CATEGORICAL[i % len(CATEGORICAL)] for i in range(len(chart.series))]


def _stacked(chart: Chart) -> str:
    """One bar per category, 100% wide, split by series in order. Hidden counts are pooled into one pale
    segment (what the shown ones leave of the total); a bar whose total is hidden is not drawn. The
    legend below lists the series in the same order, each with its colour swatch."""
    if not chart.categories:
        return _nothing(chart)
    left = _label_width(chart)
    plot = WIDTH - left - 70
    colours = _colours(chart)
    legend_rows = len(chart.series) + 1
    row = _row(chart)
    bars_height = 8 + row * len(chart.categories)
    height = bars_height + 12 + 18 * legend_rows
    svg = _svg(chart, height)
    for i, label in enumerate(chart.categories):
        y = 8 + i * row + (row - ROW) / 2
        total = chart.totals[i]
        _category(svg, left - 8, y + ROW / 2, label)
        if not total:
            _text(svg, left + 4, y + 16, HIDDEN if total is None else "0", fill=MUTED)
            continue
        x = left
        known = 0
        for j, value in enumerate(chart.values[i]):
            if not value:
                continue
            known += value
            width = plot * value / total
            _rect(svg, x, y + 3, width, ROW - 6, colours[j], f"{label} — {chart.series[j]}: {value}")
            if width >= 8 + len(str(value)) * CHAR_PX:
                light = colours[j] in LIGHT
                _text(
                    svg,
                    x + width / 2,
                    y + 16,
                    str(value),
                    **{"text-anchor": "middle", "fill": TEXT if light else "#ffffff"},
                )
            x += width
        if known < total:
            width = plot * (total - known) / total
            _rect(svg, x, y + 3, width, ROW - 6, HIDDEN_FILL, f"{label}: {HIDDEN} {total - known}")
            _text(svg, x + width / 2, y + 16, HIDDEN, **{"text-anchor": "middle", "fill": MUTED})
        _text(svg, left + plot + 6, y + 16, f"n={_shown(total)}", fill=MUTED)
    y = bars_height + 10
    for j, name in enumerate([*chart.series, HIDDEN]):
        if name == HIDDEN and not any(v is None for line in chart.values for v in line):
            break
        colour = HIDDEN_FILL if name == HIDDEN else colours[j]
        ET.SubElement(
            svg,
            "rect",
            {
                "x": f"{left:.1f}",
                "y": f"{y + j * 18:.1f}",
                "width": "12",
                "height": "12",
                "fill": colour,
                "stroke": MUTED,
                "stroke-width": "0.5",
            },
        )
        shown = chart.hidden_legend if name == HIDDEN else name
        _text(svg, left + 18, y + j * 18 + 10, _cut(shown, int((WIDTH - left - 24) / CHAR_PX)))
    return _done(svg)


# ----------------------------------------------------------------------------------- daily columns


def _daily(chart: Chart) -> str:
    """One column per day (``categories`` are ISO dates, oldest first) with a light grid; the highest
    column and every hidden day are labelled, and the first, last and every Nth date."""
    if not chart.categories:
        return _nothing(chart)
    left, bottom, top_pad = 44, 40, 16
    height = 220
    plot_w, plot_h = WIDTH - left - 16, height - bottom - top_pad
    svg = _svg(chart, height)
    peak = max((v for v in chart.totals if v is not None), default=0) or 1
    for step in (0, 0.5, 1):
        y = top_pad + plot_h * (1 - step)
        ET.SubElement(
            svg,
            "line",
            {"x1": str(left), "x2": str(WIDTH - 16), "y1": f"{y:.1f}", "y2": f"{y:.1f}", "stroke": GRID},
        )
        _text(svg, left - 6, y + 4, _shown(round(peak * step)), **{"text-anchor": "end", "fill": MUTED})
    n = len(chart.categories)
    slot = plot_w / n
    every = max(1, round(n / 8))
    for i, (day, value) in enumerate(zip(chart.categories, chart.totals, strict=True)):
        x = left + i * slot
        if value is None:
            _rect(svg, x + slot * 0.15, top_pad + plot_h - 6, slot * 0.7, 6, HIDDEN_FILL, f"{day}: {HIDDEN}")
            _text(
                svg,
                x + slot / 2,
                top_pad + plot_h - 10,
                "c",
                **{"text-anchor": "middle", "fill": MUTED, "font-size": "10"},
            )
        elif value:
            h = plot_h * value / peak
            bar = min(slot * 0.7, 36)
            _rect(svg, x + (slot - bar) / 2, top_pad + plot_h - h, bar, h, BAR, f"{day}: {value}")
            if value == peak or n <= 31:
                _text(
                    svg,
                    x + slot / 2,
                    top_pad + plot_h - h - 4,
                    str(value),
                    **{"text-anchor": "middle", "font-size": "10"},
                )
        if i % every == 0 or i == n - 1:
            _text(
                svg, x + slot / 2, height - bottom + 16, day[5:], **{"text-anchor": "middle", "fill": MUTED}
            )
    _text(svg, left, height - 8, f"{chart.categories[0]} – {chart.categories[-1]}", fill=MUTED)
    return _done(svg)
