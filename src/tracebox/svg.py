"""Small SVG charts drawn here (no library, no script, no external reference), shared by
the harness report and `tracebox ui`. Every label is escaped; values are numbers."""

from __future__ import annotations

import html

PALETTE = ("#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457")


def bars(
    title: str,
    values: list[tuple[str, float]],
    color: str = PALETTE[0],
    *,
    ymax: float | None = None,
    width: int = 360,
    height: int = 180,
) -> str:
    """One bar per ``(label, value)``, the value written above it."""
    return stacked(
        title,
        [(label, [v]) for label, v in values],
        [""],
        [color],
        ymax=ymax,
        width=width,
        height=height,
    )


def stacked(
    title: str,
    rows: list[tuple[str, list[float]]],
    series: list[str],
    colors: list[str] | tuple[str, ...] = PALETTE,
    *,
    ymax: float | None = None,
    width: int = 360,
    height: int = 180,
) -> str:
    """One stacked bar per ``(label, [value per series])``, with a legend when there are
    several series; each segment has a tooltip (``<title>``)."""
    pad, top = 30, 22 + (14 if len(series) > 1 else 0)
    totals = [sum(vs) for _, vs in rows]
    ymax = ymax or max(totals + [1])
    n = max(1, len(rows))
    bw = (width - 2 * pad) / n
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{width / 2}" y="14" text-anchor="middle" font-size="12">{html.escape(title)}</text>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
    ]
    if len(series) > 1:
        x = pad
        for j, name in enumerate(series):
            out.append(
                f'<rect x="{x}" y="22" width="9" height="9" fill="{colors[j % len(colors)]}"/>'
            )
            out.append(f'<text x="{x + 12}" y="30" font-size="10">{html.escape(name)}</text>')
            x += 16 + 6 * len(name)
    usable = height - pad - top
    for i, (label, vs) in enumerate(rows):
        x = pad + i * bw + bw * 0.15
        y = height - pad
        for j, v in enumerate(vs):
            h = usable * (v / ymax if ymax else 0)
            y -= h
            tip = f"{label}{': ' + series[j] if series[j] else ''}: {v:,.6g}"
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw * 0.7:.1f}" height="{h:.1f}" '
                f'fill="{colors[j % len(colors)]}"><title>{html.escape(tip)}</title></rect>'
            )
        out.append(
            f'<text x="{x + bw * 0.35:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="10">{totals[i]:,.6g}</text>'
        )
        out.append(
            f'<text x="{x + bw * 0.35:.1f}" y="{height - pad + 13}" text-anchor="middle" font-size="10">'
            f"{html.escape(label[:18])}</text>"
        )
    out.append("</svg>")
    return "".join(out)
