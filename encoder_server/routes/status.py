"""GET /status: a small page for the people running Flywheel (models, pointers, canary,
gate decisions, nDCG per version, the last load error). GET /status.json is the same data for
scripts. Both need the admin token (they show actors, sources and error text): the header
``Authorization: Bearer <FLYWHEEL_SERVER__ADMIN_TOKEN>``, or ``/status?token=<token>`` in a
browser."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from encoder_server.deps import HolderDep, SettingsDep
from encoder_server.routes.admin import AUTH_RESPONSES, AdminPageDep
from services.status import Status, collect_status

router = APIRouter(tags=["operations"])

SERIES = (
    ("heldout_ndcg", "held-out (gate)", "#264653"),
    ("guard_ndcg", "guard (labels)", "#e9c46a"),
    ("online_ndcg", "online (shoppers)", "#2a9d8f"),
)


def _plot(status: Status) -> str:
    """An inline SVG line chart of nDCG@10 per version and source."""
    versions = [v.version for v in status.versions]
    if not versions:
        return "<p>No model versions yet.</p>"
    width, height, pad = 640, 240, 40
    step = (width - 2 * pad) / max(1, len(versions) - 1)

    def xy(i: int, value: float) -> str:
        return f"{pad + i * step:.1f},{height - pad - value * (height - 2 * pad):.1f}"

    parts = [
        f'<svg role="img" aria-label="nDCG@10 per version" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="background:#fafafa">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#999"/>',
        f'<text x="4" y="{pad}" font-size="11">1.0</text>',
        f'<text x="4" y="{height - pad}" font-size="11">0.0</text>',
    ]
    for i, version in enumerate(versions):
        parts.append(
            f'<text x="{pad + i * step - 8:.1f}" y="{height - pad + 16}" font-size="11">'
            f"{html.escape(version)}</text>"
        )
    for n, (field, label, colour) in enumerate(SERIES):
        points = [
            (i, getattr(v, field))
            for i, v in enumerate(status.versions)
            if getattr(v, field) is not None
        ]
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                f'points="{" ".join(xy(i, val) for i, val in points)}"/>'
            )
            parts += [
                f'<circle cx="{xy(i, val).split(",")[0]}" cy="{xy(i, val).split(",")[1]}" '
                f'r="3" fill="{colour}"/>'
                for i, val in points
            ]
        parts.append(
            f'<text x="{width - 150}" y="{16 + 14 * n}" font-size="11" fill="{colour}">'
            f"{label}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def render(status: Status, serving: list[str]) -> str:
    """The status page as one self-contained HTML document."""
    p = status.pointers
    rows = "".join(
        f"<tr><td>{html.escape(v.version)}</td><td>{html.escape(v.role)}</td>"
        f"<td>{html.escape(v.parent or '')}</td><td>{html.escape(v.source)}</td>"
        f"<td>{v.created_at}</td>"
        f"<td>{'–' if v.gate_passed is None else ('passed' if v.gate_passed else 'rejected')}</td>"
        f"<td>{_fmt(v.heldout_ndcg)}</td><td>{_fmt(v.guard_ndcg)}</td>"
        f"<td>{_fmt(v.online_ndcg)} ({v.online_lists})</td>"
        f"<td>{html.escape('; '.join(v.gate_reasons))}</td></tr>"
        for v in reversed(status.versions)
    )
    decisions = (
        "".join(
            f"<li>{_e(d.get('decided_at', ''))[:19]} <b>{_e(d.get('decision'))}</b> "
            f"{_e(d.get('canary_version'))} against {_e(d.get('production_version'))} "
            f"({_e(d.get('signal') or 'no signal')}, {_e(d.get('test') or '-')}): "
            f"{_e(d.get('reason', ''))}</li>"
            for d in reversed(status.canary_decisions)
        )
        or "<li>none yet</li>"
    )
    timeline = (
        "".join(
            f"<li>{_e(e.get('time', ''))[:19]} {_e(e.get('action'))} by {_e(e.get('actor'))}: "
            f"production {_e((e.get('to') or {}).get('production'))}, "
            f"canary {_e((e.get('to') or {}).get('canary'))}</li>"
            for e in reversed(status.timeline)
        )
        or "<li>none yet</li>"
    )
    canary = f"{p.canary} ({p.canary_fraction:.0%} of sessions)" if p.canary else "none"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Flywheel status</title><style>
body{{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}}
table{{border-collapse:collapse;font-size:.9rem}}td,th{{border:1px solid #ddd;padding:.3rem .5rem}}
th{{background:#f3f3f3}}.pill{{padding:.1rem .5rem;border-radius:1rem;background:#e0f2f1}}
</style></head><body>
<h1>Flywheel status</h1>
<p>Production: <span class="pill" id="production">{html.escape(p.production or "none")}</span>
 · Canary: <span class="pill" id="canary">{html.escape(canary)}</span>
 · Serving here: {html.escape(", ".join(serving) or "nothing loaded")}
 · Rollback targets: {html.escape(", ".join(reversed(p.history)) or "none")}
 · Latest snapshot: {html.escape(status.snapshot or "none")}</p>
<p>Last load error here: <span id="last-error">{html.escape(status.last_error or "none")}</span></p>
<h2>nDCG@10 per version</h2>{_plot(status)}
<h2>Versions</h2><table><tr><th>version</th><th>role</th><th>parent</th><th>source</th>
<th>created</th><th>gate</th><th>held-out nDCG@10</th><th>guard nDCG@10</th>
<th>online nDCG@10 (lists)</th><th>gate reasons</th></tr>{rows}</table>
<h2>Canary decisions</h2><ul>{decisions}</ul>
<h2>Timeline</h2><ul>{timeline}</ul>
</body></html>"""


# The page is HTML, its refusals JSON: say so, or the schema promises HTML for them too.
PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {
        "description": spec["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for code, spec in AUTH_RESPONSES.items()
}


@router.get("/status", response_class=HTMLResponse, responses=PAGE_RESPONSES)
def status_page(_: AdminPageDep, settings: SettingsDep, holder: HolderDep) -> HTMLResponse:
    """Models, pointers, canary state and gate decisions at a glance (admin token)."""
    status = collect_status(holder.registry, settings.exports_dir, last_error=holder.last_error)
    routing = holder.routing
    serving = (
        []
        if routing is None
        else [
            f"{m.version} ({arm})"
            for m, arm in ((routing.production, "production"), (routing.canary, "canary"))
            if m
        ]
    )
    return HTMLResponse(render(status, serving))


@router.get("/status.json", response_model=Status, responses=AUTH_RESPONSES)
def status_json(_: AdminPageDep, settings: SettingsDep, holder: HolderDep) -> Status:
    """The status page's data (admin token)."""
    return collect_status(holder.registry, settings.exports_dir, last_error=holder.last_error)
