"""The HTML report: hostile log content stays text, the page works offline, the coverage
section names the gaps, and (with Chromium installed) charts render and the filter runs."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO, write_jsonl

from tokentrail import Case
from tokentrail.analyse import analyse
from tokentrail.case.ingest import ingest
from tokentrail.export.html import TEMPLATES, render_html_report, write_html_report

HTML_FIXTURES = FIXTURES / "html"
SAMPLE = REPO / "sample-logs"
CHROMIUM = Path("/usr/bin/chromium")

# Every element the template writes. Anything else in the output came from somewhere else.
TEMPLATE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "h4", "p", "span",
    "nav", "a", "main", "section", "div", "table", "thead", "tbody", "tr", "th", "td", "b", "br",
    "dl", "dt", "dd", "ul", "li", "details", "summary", "label", "input", "figure", "figcaption",
    "svg", "g", "rect", "text", "line", "circle", "polygon", "polyline", "path", "defs", "marker",
    "footer", "script",
}
URL_ATTRS = {"href", "src", "xlink:href", "action", "formaction", "poster", "srcset", "background",
             "data", "ping", "cite", "manifest"}
VOID = {"meta", "br", "input", "img", "link", "hr", "source", "area", "base", "col", "embed",
        "param", "track", "wbr"}

HOSTILE = {
    "script": "<script>alert(1)</script>",
    "img": '"><img src=x onerror=alert(1)>',
    "javascript": "javascript:alert(1)",
    "onmouseover": "x onmouseover=alert(1) y",
    "style": "</style><style>body{background:url(http://evil.example/x.png)}</style>",
}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)

    def find_id(self, ident: str) -> Node:
        found = [n for n in self.walk() if n.attrs.get("id") == ident]
        assert len(found) == 1, ident
        return found[0]


class TreeBuilder(HTMLParser):
    """A small DOM: enough to list every element and attribute and read text by element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].text.append(data)


def parse(html: str) -> Node:
    b = TreeBuilder()
    b.feed(html)
    b.close()
    return b.root


def report_for(paths: list[str], out: Path) -> str:
    with Case() as case:
        ingest(case, paths)
        findings = analyse(case.con).findings
        write_html_report(case.con, str(out), findings=findings)
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "report.html"
    report_for([str(SAMPLE)], out)
    return out


@pytest.fixture
def hostile_report(tmp_path: Path) -> str:
    # the file name is log-derived too: it is shown as the source and in every file:line
    envoy = tmp_path / 'envoy-"><img src=x onerror=alert(9)>.jsonl'
    shutil.copy(HTML_FIXTURES / "hostile-envoy.jsonl", envoy)
    return report_for([str(HTML_FIXTURES / "hostile-app.jsonl"), str(envoy)], tmp_path / "r.html")


def _asset(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def test_hostile_log_values_are_text_never_markup(hostile_report: str):
    html = hostile_report
    root = parse(html)
    nodes = list(root.walk())[1:]
    assert {n.tag for n in nodes} <= TEMPLATE_TAGS, {n.tag for n in nodes} - TEMPLATE_TAGS
    assert not [n for n in nodes if n.tag in ("img", "iframe", "object", "embed", "link", "base")]
    for n in nodes:
        for name, value in n.attrs.items():
            assert not name.startswith("on"), (n.tag, name, value)
            assert name != "style", n.tag
            if name in URL_ATTRS:
                assert value is not None and re.fullmatch(r"#[a-z]+(-[0-9a-f]{12})?", value), value
        assert "javascript:" not in (n.attrs.get("href") or "")
    # exactly the template's one script and one stylesheet, byte for byte, allowed by hash
    scripts = [n for n in nodes if n.tag == "script"]
    styles = [n for n in nodes if n.tag == "style"]
    assert len(scripts) == 1 and scripts[0].all_text() == _asset("report.js")
    assert not scripts[0].attrs
    assert len(styles) == 1 and styles[0].all_text() == _asset("report.css")
    csp = next(n.attrs["content"] for n in nodes if n.attrs.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp
    for asset in ("report.js", "report.css"):
        digest = base64.b64encode(hashlib.sha256(_asset(asset).encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    marker_ends = [n.attrs["marker-end"] for n in nodes if "marker-end" in n.attrs]
    assert marker_ends and all(re.fullmatch(r"url\(#arrow-[a-z]+\)", v or "") for v in marker_ends)

    # the hostile strings were not dropped: they are all there, as text
    text = root.all_text()
    for value in HOSTILE.values():
        assert value in text, value
    assert 'envoy-"><img src=x onerror=alert(9)>.jsonl:1' in text  # evidence file:line
    assert "<script>alert" not in html and "<img" not in html and "</style><style>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # bidi override: shown, not obeyed
    assert "\u202e" not in html
    assert "evil<U+202E>gnp.exe" in text
    # the rejected line's excerpt is shown escaped too
    rejects = root.find_id("gap-rejects").all_text()
    assert "hostile-app.jsonl:5" in rejects and '"kind": "<script>alert(1)</script>"' in rejects
    # the flagged hostile token got a timeline, with the hostile path in an SVG <title>
    timelines = root.find_id("timelines")
    assert [n for n in timelines.walk() if n.tag == "svg" and "chart" in (n.attrs.get("class") or "")]
    titles = " ".join(n.all_text() for n in timelines.walk() if n.tag == "title")
    assert "/b<script>alert(1)</script>" in titles


def test_render_returns_the_same_document_it_writes(tmp_path: Path):
    with Case() as case:
        ingest(case, [str(HTML_FIXTURES / "hostile-app.jsonl")])
        findings = analyse(case.con).findings
        text = render_html_report(case.con, findings=findings)
        out = tmp_path / "out"
        out.mkdir()
        (out / "r.html").write_text("an older report")
        write_html_report(case.con, str(out / "r.html"), findings=findings)
    written = (out / "r.html").read_text(encoding="utf-8")
    strip = re.compile(r"generated [^<]*? by")
    assert strip.sub("", text) == strip.sub("", written)
    assert [p.name for p in out.iterdir()] == ["r.html"]  # replaced; no temporary file left


def test_report_is_self_contained_offline(sample_report: Path):
    html = sample_report.read_text(encoding="utf-8")
    root = parse(html)
    remote = re.compile(r"^\s*(https?:)?//", re.I)
    for n in root.walk():
        assert n.tag not in ("link", "img", "iframe", "object", "embed", "base"), n.tag
        for name, value in n.attrs.items():
            if name in URL_ATTRS:
                assert not remote.match(value or ""), (n.tag, name, value)
                assert (value or "").startswith("#"), (n.tag, name, value)
            assert "url(" not in (value or "") or re.fullmatch(r"url\(#[a-z-]+\)", value or ""), value
    for n in root.walk():
        if n.tag in ("style", "script"):
            body = n.all_text()
            assert "url(" not in body and "@import" not in body and "http://" not in body
            assert "https://" not in body and "fetch(" not in body and "XMLHttpRequest" not in body
    # the issuers are https URLs: they appear, but only as text
    assert "https://sso.acme.example/realms/acme" in root.all_text()


def test_coverage_names_the_gaps_in_the_sample_logs(sample_report: Path):
    root = parse(sample_report.read_text(encoding="utf-8"))
    coverage = root.find_id("coverage")
    main = next(n for n in root.walk() if n.tag == "main")
    assert main.children[0] is coverage  # coverage comes first
    never = coverage.find_id("gap-never-issued").all_text()
    assert "Tokens used but never seen issued" in never and "Checked:" in never
    assert "ASIALN5YQ6SWF73864KW" in never  # the instance credentials: used, never issued
    network = coverage.find_id("gap-network-only").all_text()
    assert "ip:203.0.113.45/curl" in network and "ip:198.51.100.77/globex-sync" in network
    assert "spiffe://" not in network
    formats = coverage.find_id("gap-formats").all_text()
    assert "envoy" in formats and "keycloak" not in formats
    rejects = coverage.find_id("gap-rejects").all_text()
    assert "None found" in rejects and "Checked:" in rejects
    sources = coverage.all_text()
    for name in ("envoy-acme-gateway-access.jsonl", "okta-system-log.json", "k8s-audit"):
        assert name in sources


def test_empty_gaps_say_none_found_and_what_was_checked(tmp_path: Path):
    log = write_jsonl(tmp_path / "app.jsonl", [
        {"ts": "2026-11-02T09:00:00Z", "kind": "issue", "token_id": "t-1", "client_id": "svc",
         "peer_spiffe": "spiffe://acme.example/ns/a/sa/svc"},
        {"ts": "2026-11-02T09:01:00Z", "kind": "use", "token_id": "t-1", "client_id": "svc",
         "peer_spiffe": "spiffe://acme.example/ns/a/sa/svc", "resource": "api"},
    ])
    root = parse(report_for([str(log)], tmp_path / "r.html"))
    for gap in ("gap-formats", "gap-never-issued", "gap-network-only", "gap-no-token", "gap-rejects"):
        text = root.find_id(gap).all_text()
        assert "None found" in text and "Checked:" in text, gap
    assert "No findings" in root.find_id("findings").all_text()


def _chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess[bytes]:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={user_data}", *args]
    return subprocess.run(cmd, capture_output=True, timeout=60, check=True)


def _png_is_not_blank(png: bytes) -> bool:
    """Decode enough of a PNG to tell a rendered page from an empty one, without Pillow."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    idat, pos = b"", 8
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            idat += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    # filtered scanlines: a blank page compresses to a handful of distinct byte values
    return width > 100 and height > 100 and len(set(raw)) > 64


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium "
                    "(Debian packages chromium and chromium-driver)")
def test_in_chromium_charts_render_and_the_filter_hides_rows(sample_report: Path, tmp_path: Path):
    url = sample_report.as_uri() + "#filter=TT005"
    dom = _chromium("--dump-dom", url, user_data=tmp_path / "profile-dom").stdout.decode()
    root = parse(dom)
    html = next(n for n in root.walk() if n.tag == "html")
    assert html.attrs.get("data-tt-ready") == "1"  # the script ran (its CSP hash matched)
    table = root.find_id("findings-table")
    rows = [n for n in table.walk() if n.tag == "tr" and n.attrs.get("class", "").startswith("sev-row")]
    shown = [r for r in rows if "hidden" not in r.attrs]
    assert len(rows) > 5 and shown
    assert all("TT005" in r.all_text() for r in shown)
    assert all("TT005" not in r.all_text() for r in rows if "hidden" in r.attrs)
    assert root.find_id("findings-table-count").all_text() == f"{len(shown)} of {len(rows)} rows"
    charts = [n for n in root.walk() if n.tag == "svg" and "chart" in (n.attrs.get("class") or "")]
    assert len(charts) >= 2  # timelines and the delegation graph
    assert sum(1 for n in root.walk() if n.tag in ("circle", "polygon")) > 20
    assert sum(1 for n in root.find_id("delegation").walk() if n.tag == "path") > 5

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,900", sample_report.as_uri(),
              user_data=tmp_path / "profile-shot")
    assert _png_is_not_blank(shot.read_bytes())


_PROBE = """<script>
window.addEventListener('load', function () {
  var out = {};
  var svg = document.querySelector('svg.chart.graph text');
  out.graphText = svg ? svg.getBoundingClientRect().height : -1;
  var tl = document.querySelector('figure.timeline svg.chart text');
  out.timelineText = tl ? tl.getBoundingClientRect().height : -1;
  var ids = Array.prototype.slice.call(document.querySelectorAll('#holders-table td, #findings-table td.id'));
  out.narrowestCell = Math.min.apply(null, ids.map(function (c) { return c.getBoundingClientRect().width; }));
  var inc = document.getElementById('incidents');
  out.incidentsTop = inc ? inc.getBoundingClientRect().top : -1;
  out.firstIncidentWidth = inc ? inc.querySelector('li.incident').getBoundingClientRect().width : -1;
  out.viewport = window.innerWidth;
  (window.parent || window).document.documentElement.setAttribute('data-probe', JSON.stringify(out));
});
</script>"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium "
                    "(Debian packages chromium and chromium-driver)")
@pytest.mark.parametrize("width", [1400, 390])
def test_in_chromium_incidents_lead_and_the_report_reads_at_1400_and_390_px(tmp_path: Path, width: int):
    """Sizes measured in the browser by a probe script (the report's CSP is relaxed in a copy
    for it). Headless Chromium's window is at least 500 px wide, so the page is shown in an
    iframe of the wanted width (srcdoc: same origin, so the probe reports to the wrapper);
    the screenshots are kept in tmp_path for a person to look at."""
    import json

    with Case() as case:
        ingest(case, [str(REPO / "sample-logs")])
        analysis = analyse(case.con)
        report = tmp_path / "report.html"
        write_html_report(case.con, str(report), findings=analysis.findings,
                          incidents=analysis.incidents)
    html = report.read_text(encoding="utf-8")
    assert html.index('id="incidents"') < html.index('id="coverage"')
    probe = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    probe = probe.replace("</body>", _PROBE + "</body>")
    import html as htmllib

    def framed(doc: str, height: int) -> Path:
        page = tmp_path / f"framed-{height}.html"
        page.write_text('<!doctype html><html><body style="margin:0">'
                        f'<iframe style="border:0;width:{width}px;height:{height}px" srcdoc="'
                        + htmllib.escape(doc, quote=True) + '"></iframe></body></html>',
                        encoding="utf-8")
        return page

    window = f"--window-size={max(width, 500)},900"
    dom = _chromium("--dump-dom", "--virtual-time-budget=5000", window,
                    framed(probe, 900).as_uri(), user_data=tmp_path / "profile-probe").stdout.decode()
    m = re.search(r'data-probe="([^"]+)"', dom)
    assert m, "the probe did not run"
    sizes = json.loads(m.group(1).replace("&quot;", '"'))
    assert sizes["viewport"] <= width
    assert sizes["graphText"] >= 10 and sizes["timelineText"] >= 9, sizes  # readable, not ~3 px
    assert sizes["narrowestCell"] >= 40, sizes  # no column one character wide
    assert 0 <= sizes["incidentsTop"] < 400, sizes  # the incidents are on the first screen
    assert sizes["firstIncidentWidth"] <= width
    shot = tmp_path / f"report-{width}.png"
    _chromium(f"--screenshot={shot}", f"--window-size={max(width, 500)},1200",
              framed(html.replace('<meta http-equiv="Content-Security-Policy"', '<meta name="x"'),
                     1200).as_uri(), user_data=tmp_path / "profile-shot")
    assert _png_is_not_blank(shot.read_bytes())


def test_what_a_format_can_show_comes_from_the_case_even_for_a_custom_mapping(tmp_path: Path):
    """The coverage table says what each format declares it can show about issuance: stored
    in `sources.provides` at ingest, so a user's own mapping (which no registry knows) is
    described too, and escaped like any other text."""
    custom = (FIXTURES / "custom" / "mcp-server.toml").read_text(encoding="utf-8")
    mapping = tmp_path / "mcp.toml"
    mapping.write_text(custom + '\n[provides]\nissuance = "none: tool calls only <b>(no grants)</b>"\n',
                       encoding="utf-8")
    with Case() as case:
        ingest(case, [str(FIXTURES / "custom" / "mcp-server.jsonl")], mapping_file=str(mapping))
        stored = case.con.execute("SELECT provides->>'issuance' FROM sources").fetchone()[0]
        findings = analyse(case.con).findings
        html = render_html_report(case.con, findings=findings)
    assert stored == "none: tool calls only <b>(no grants)</b>"
    assert "none: tool calls only &lt;b&gt;(no grants)&lt;/b&gt;" in html
    assert "<b>(no grants)</b>" not in html
