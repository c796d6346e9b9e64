"""Self-contained HTML pages: inline CSS, pictures as data URIs, no scripts, no fonts, no
external reference of any kind, so that a page opens the same from a disk, a mail or a zip.

The Content-Security-Policy forbids loading anything else, so a browser shows a mistake
here as a missing picture instead of quietly fetching it.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       max-width: 1150px; margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #d5dae3; padding-bottom: 0.2em; margin-top: 2em; }
.lead { color: #5a6275; margin-top: 0; }
.note { color: #5a6275; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #e4e7ee; text-align: left; vertical-align: top; }
th { background: #f3f5f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; border-top: 2px solid #c3c9d5; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
code { font-size: 0.9em; background: #f3f5f9; padding: 0 0.25em; }
.score { font-size: 1.4em; font-weight: 600; }
.columns { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, lead: str, sections: Iterable[str]) -> str:
    """A whole document: the title, a line under it, then the sections."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f'<h1>{esc(title)}</h1>\n<p class="lead">{esc(lead)}</p>\n' + "\n".join(sections)
            + "\n</body>\n</html>\n")


def section(anchor: str, heading: str, *parts: str) -> str:
    """A titled section; ``parts`` are HTML already (from the helpers below)."""
    return f'<section id="{esc(anchor)}">\n<h2>{esc(heading)}</h2>\n' + "\n".join(parts) + "\n</section>"


def paragraph(text: str, css_class: str | None = None) -> str:
    """Plain text; `backquoted` words (commands, file names) are set as code."""
    klass = f' class="{esc(css_class)}"' if css_class else ""
    body = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))
    return f"<p{klass}>{body}</p>"


def columns(*parts: str) -> str:
    """Parts side by side where the window is wide enough."""
    return '<div class="columns">\n' + "\n".join(f"<div>{part}</div>" for part in parts) + "\n</div>"


def image(png: bytes, alt: str) -> str:
    """A PNG inlined as a data URI."""
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{esc(alt)}">'


def table(header: Sequence[str] | None, rows: Iterable[Sequence[object]], numeric: Sequence[int] = (),
          total_last: bool = False) -> str:
    """A table (no header row when ``header`` is None); columns listed in ``numeric`` are
    right-aligned; ``total_last`` sets the last row apart."""
    rows = list(rows)
    head = ""
    if header:
        head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>\n"
    body = []
    for n, row in enumerate(rows):
        cells = "".join(f'<td class="num">{esc(v)}</td>' if i in numeric else f"<td>{esc(v)}</td>"
                        for i, v in enumerate(row))
        klass = ' class="total"' if total_last and n == len(rows) - 1 else ""
        body.append(f"<tr{klass}>{cells}</tr>")
    return f"<table>\n{head}<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"
