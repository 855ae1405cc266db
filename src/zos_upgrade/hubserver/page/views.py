"""The hub's web pages as HTML text: repositories, one repository (flists, links, tags, rollouts),
one flist (its contents and its rollout). Pure functions of what storage and records say.

Everything that comes from outside (repository, flist and file names, link targets, tags, failure
reasons, halt reasons) is hostile: it goes through :func:`html.escape` in text and attributes and
through :func:`urllib.parse.quote` in URLs, and the one script reads its inputs from ``data-``
attributes, never from text pasted into it. The page's Content-Security-Policy allows only that
script and style (by nonce), so injected markup could not run even if it got through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from zos_upgrade.hubserver.page.chart import SERIES, progress_chart
from zos_upgrade.hubserver.rollout.record import ReleaseRecord

__all__ = ["flist_page", "index_page", "layout", "repo_page"]

MAX_CONTENT_ROWS = 2000  # an flist of 100,000 files is shown in part, with a count

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:960px;color:#1f2328;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .8em;border-bottom:1px solid #d0d7de;
text-align:left}th{background:#f6f8fa}code{font-size:90%}.halted{color:#cf222e;font-weight:bold}
.ok{color:#1a7f37}nav a{margin-right:1em}form input{margin:.2em}#control-result{color:#cf222e}
"""

# halt / resume: the token goes with the request only (sessionStorage keeps it for this tab)
_SCRIPT = """
const form = document.getElementById("rollout-control");
if (form) {
  const saved = sessionStorage.getItem("hub-token");
  if (saved) { form.elements.token.value = saved; }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.value : "halt";
    const token = form.elements.token.value.trim();
    const out = document.getElementById("control-result");
    if (!token) { out.textContent = "enter the repository's token first"; return; }
    sessionStorage.setItem("hub-token", token);
    const body = action === "halt" ? JSON.stringify({reason: form.elements.reason.value}) : "";
    const reply = await fetch(form.dataset.api + "/" + action, {method: "POST", body: body,
      headers: {"Authorization": "bearer " + token, "Content-Type": "application/json"}});
    if (reply.ok) { window.location.reload(); return; }
    let message = reply.status + " " + reply.statusText;
    try { message = (await reply.json()).message || message; } catch (e) { /* not JSON */ }
    out.textContent = message;
  });
}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _href(**params: str) -> str:
    return "/?" + urlencode(params, quote_via=quote) if params else "/"


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def layout(title: str, body: str, nonce: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><link rel=\"icon\" href=\"data:,\">"
        f"<style nonce=\"{_e(nonce)}\">{_STYLE}</style></head><body>"
        f"<nav><a href=\"/\">repositories</a></nav>{body}"
        f"<script nonce=\"{_e(nonce)}\">{_SCRIPT}</script></body></html>\n"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], table_id: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def index_page(repos: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    rows = [(f'<a href="{_e(_href(repo=r["name"]))}">{_e(r["name"])}</a>',
             "official" if r.get("official") else "", _e(_when(r["updated"]))) for r in repos]
    body = "<h1>Repositories</h1>" + (_table(("repository", "", "updated"), rows, "repositories")
                                      if rows else "<p>No repository yet.</p>")
    return "hub", body


def _summary(record: ReleaseRecord) -> str:
    c = record.counts()
    state = '<span class="halted">halted</span>' if record.halt else '<span class="ok">rolling out</span>'
    return state + " — " + ", ".join(f"{_e(label)} {c[key]}" for key, label, _ in SERIES)


def repo_page(repo: str, listing: Sequence[Mapping[str, Any]],
              rollouts: Sequence[ReleaseRecord]) -> tuple[str, str]:
    flists, links, tags = [], [], []
    for item in listing:
        name, kind = item["name"], item["type"]
        if kind == "tag":
            tags.append((_e(name), _e(_when(item["updated"]))))
            continue
        link = f'<a href="{_e(_href(repo=repo, flist=name))}">{_e(name)}</a>'
        if kind == "regular":
            flists.append((link, _e(item["size"]), _e(_when(item["updated"]))))
        else:
            links.append((link, _e(kind), f'<code>{_e(item.get("target", ""))}</code>'))
    body = [f"<h1>{_e(repo)}</h1>", "<h2>Flists</h2>",
            _table(("flist", "size", "updated"), flists, "flists") if flists else "<p>No flist.</p>"]
    if links:
        body += ["<h2>Links</h2>", _table(("link", "type", "target"), links, "links")]
    if tags:
        body += ["<h2>Tags</h2>", _table(("tag", "updated"), tags, "tags")]
    if rollouts:
        rows = [(f'<a href="{_e(_href(repo=repo, flist=r.name))}">{_e(r.name)}</a>', _summary(r))
                for r in rollouts]
        body += ["<h2>Rollouts</h2>", _table(("release", "state"), rows, "rollouts")]
    return repo, "".join(body)


def _rollout(repo: str, name: str, record: ReleaseRecord) -> str:
    api = f"/api/rollout/{quote(repo, safe='')}/{quote(name, safe='')}"
    out = ["<section id=\"rollout\"><h2>Rollout</h2>"]
    if record.halt is not None:
        out.append('<p id="halt-state" class="halted" data-halted="true">'
                   f"Halted {_e(_when(record.halt.at))} by {_e(record.halt.by)}: "
                   f'<span id="halt-reason">{_e(record.halt.reason)}</span></p>')
    else:
        out.append('<p id="halt-state" class="ok" data-halted="false">Rolling out.</p>')
    if record.plan is not None:
        plan = record.plan
        shape = (f"ramp over {_e(plan['duration'])} s" if "duration" in plan
                 else f"{len(plan.get('steps') or [])} steps")
        threshold = plan.get("failure_threshold")
        out.append(f"<p>Plan: from {_e(plan.get('start', '?'))}, {shape}, failure threshold "
                   f"{_e('none' if threshold is None else str(threshold) + ' %')}.</p>")
    out.append(progress_chart(record.history, record.counts()))
    reasons = record.reasons()
    if reasons:
        rows = [(str(n), f'<span class="reason">{_e(reason)}</span>') for reason, n in reasons]
        out += ["<h3>Failures</h3>", _table(("nodes", "reason"), rows, "reasons")]
    out.append(
        f'<form id="rollout-control" data-api="{_e(api)}"><h3>Halt or resume</h3>'
        '<label>repository token <input name="token" type="password" autocomplete="off"></label>'
        '<label>reason <input name="reason" maxlength="1024"></label>'
        '<button type="submit" name="action" value="halt" id="halt-button">Halt</button>'
        '<button type="submit" name="action" value="resume" id="resume-button">Resume</button>'
        '<p id="control-result"></p></form></section>')
    return "".join(out)


def flist_page(repo: str, name: str, info: Mapping[str, Any], contents: Mapping[str, Any] | None,
               record: ReleaseRecord | None) -> tuple[str, str]:
    body = [f'<h1><a href="{_e(_href(repo=repo))}">{_e(repo)}</a> / {_e(name)}</h1>',
            f"<p>md5 <code>{_e(info.get('md5', ''))}</code>, {_e(info.get('size', ''))} bytes"
            + (f", a {_e(info.get('type'))} to <code>{_e(info.get('target'))}</code>"
               if info.get("target") else "") + "</p>"]
    if record is not None:
        body.append(_rollout(repo, name, record))
    if contents is None:
        body.append("<p>The contents of this flist cannot be read.</p>")
    else:
        entries = contents.get("content", [])
        kinds = ("regular", "symlink", "directory", "special")
        counts = ", ".join(f"{contents.get(k, 0)} {k}" for k in kinds)
        body.append(f"<h2>Contents</h2><p>{_e(counts)}</p>")
        rows = [(f"<code>{_e(e.get('path', ''))}</code>", _e(e.get("size", ""))) for e in
                entries[:MAX_CONTENT_ROWS]]
        body.append(_table(("path", "size"), rows, "contents"))
        if len(entries) > MAX_CONTENT_ROWS:
            body.append(f"<p>... and {len(entries) - MAX_CONTENT_ROWS} more entries.</p>")
    return f"{repo}/{name}", "".join(body)
