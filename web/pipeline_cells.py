"""The pipeline's cells, written in Python: a 20 × 50 pipeline is a thousand of them, and the
template engine spent ~75 µs on each (40-odd variable lookups and filters), most of the
page's time. Same markup as before; `templates/projects/htmx/project_detail_pipeline.html`
keeps the table around them. `status_detail()` is also the `|status_detail` filter of the
resource and environment pages.

Every value is escaped here (`html.escape`, what Django's `escape` does) and the result is
marked safe once.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from django.utils.safestring import SafeString, mark_safe

from environments.display import Display, display_state


def _short(digest: str, end: int = 19) -> str:
    return escape(digest[7:end])


def status_detail(s: Display) -> str:
    """A status's detail: wraps anywhere; a long one folds (the first line as its summary) and
    stays open across the live refresh while it says the same (`hx-preserve`, by an id that
    changes with the text)."""
    if not s.detail:
        return ""
    if s.folds:
        return (f'<details class="status-detail detail-{s.tone}" id="{escape(s.element_id)}" hx-preserve>'
                f'<summary>{escape(s.summary)}</summary><div class="status-full">{escape(s.detail)}</div></details>')
    return f'<div class="status-detail detail-{s.tone}">{escape(s.detail)}</div>'


def cell_html(r, env, path: str) -> SafeString:
    """One resource's cell: what runs, its source, its state, how it stands against its
    upstream, and the one-click promote where `env.can_pin` allows it. `r` comes from
    `selectors.pipeline()` (annotated, its upstream linked), with `url` set by the view."""
    s = display_state(r)
    url = escape(r.url)
    name = escape(r.name)
    out = [f'<div class="cell" data-resource="{escape(env.slug)}/{name}" data-state="{s.state}">',
           f'<a class="digest" href="{url}" title="{escape(r.current_digest or "nothing running yet")}">',
           f'<code>{_short(r.current_digest)}</code>' if r.current_digest else '<span class="muted">no image yet</span>',
           '</a><div class="badges">']
    upstream = r.promote_from if r.source_type == "promote" else None
    if upstream is not None:
        up_env, up_name = escape(upstream.environment.slug), escape(upstream.name)
    if upstream is None:
        out.append(f'<span class="badge image" title="Image: {escape(r.image)}">image</span>')
    elif r.binding == "track_latest":
        out.append(f'<span class="badge track" title="Tracks {up_env}/{up_name}">track</span>')
    else:
        out.append(f'<span class="badge pin" title="Pinned to {escape(r.pinned_digest)}">pin {_short(r.pinned_digest, 15)}</span>')
    if s.state != "awaiting_approval":
        out.append(f'<span class="phase tone-{s.tone}">{escape(s.label)}</span>')
    if getattr(r, "awaiting_approval", False) or s.state == "awaiting_approval":
        out.append(f'<a class="badge awaiting" href="{url}#approvals" title="A change of what runs waits for approvals">'
                   'awaiting approval</a>')
    out.append('</div>')
    out.append(status_detail(s))
    if r.healthy_digest and r.current_digest != r.healthy_digest:
        out.append(f'<div class="running muted" title="Still running healthy: {escape(r.healthy_digest)}">'
                   f'runs <code>{_short(r.healthy_digest)}</code></div>')
    if upstream is not None:
        out.append(f'<div class="behind"><span class="{s.behind_tone}">{escape(s.behind)}</span> '
                   f'<span class="muted">from {up_env}</span></div>')
        latest = getattr(r, "upstream_digest", None)
        if r.binding == "pin_digest" and env.can_pin and latest and latest != r.pinned_digest:
            out.append(
                f'<a class="btn small" href="{url}promote/?next={escape(quote(path, safe="/"))}" hx-post="{url}promote/" '
                f'hx-target="#pipeline" hx-swap="outerHTML" hx-confirm="Pin {escape(env.slug)}/{name} to '
                f'{escape(latest[:19])}…, the current digest of {up_env}/{up_name}?">Promote {_short(latest, 15)}</a>')
    out.append('</div>')
    return mark_safe("".join(out))
