"""One self-contained HTML report: coverage and its gaps, findings, per-token timelines, the
delegation graph, and sortable, filterable tables. Works offline.

Log content is attacker-controlled, so the page is built with that in mind:
- every value reaches the page through a jinja2 template with autoescaping on, never by string
  concatenation in Python; SVG charts are geometry computed here (numbers) and text placed by
  the template;
- control and bidi characters are shown as visible `<U+202E>` markers (a "Trojan Source" name
  cannot reorder what a responder reads);
- no log value becomes a link, an id, a class name or part of the script; the one inline
  script and the one stylesheet are static files beside the template, allowed by hash in a
  Content-Security-Policy that also forbids every network fetch.

The package is split the way the page is built: `data` reads what the page shows from the case,
`timeline` and `graph` turn it into SVG geometry, `text` is the vocabulary and how values become
display text, `render` fills the template and writes the file.
"""

from .render import TEMPLATES, render_html_report, write_html_report

__all__ = ["TEMPLATES", "render_html_report", "write_html_report"]
