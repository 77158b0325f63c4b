"""Stored data never becomes markup (issue 12, points 1 and 2).

Two halves: the escaping helpers against the payloads the adversarial test used, and a walk over
the dashboard's source that fails on any Markdown- or HTML-rendering call whose text is not a
literal, not passed through ``dashboard.safe``, and not built only from such parts.
"""

from __future__ import annotations

import ast
import datetime as dt
import html.parser
import re
import urllib.parse
from pathlib import Path

import pytest

from dashboard import safe

PAYLOADS = [
    '<iframe srcdoc="<script>parent.alert(10)</script>"></iframe>',
    "<script>alert(1)</script>",
    '<meta http-equiv="refresh" content="0;url=http://evil.example/">',
    '<img src=x onerror="alert(2)">',
    "[phish](http://evil.example/login)",
    "![t](http://evil.example/track.png)",
    "[x](javascript:alert(3))",
    "$\\LaTeX$ and $$x^2$$",
    ":material/warning: :smile:",
    ":red[urgent] :blue-background[x]",
    "`code` and ```fence```",
    "&lt;b&gt; &amp; &#60;script&#62;",
    "<http://evil.example/auto> www.evil.example mail@evil.example https://evil.example/x",
    "**bold** _em_ ~~strike~~ | a | b |",
    "# heading\n\n- item\n1. one\n> quote",
    "line\r\nbreak\ttab\u2028sep",
]


class _Collect(html.parser.HTMLParser):
    """What a browser would build from an HTML string: its elements and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.text: list[str] = []
        self.links: list[tuple[str | None, str | None]] = []  # (href, target) of each <a>, decoded

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)
        if tag == "a":
            self.links.append((dict(attrs).get("href"), dict(attrs).get("target")))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_html_escape_builds_no_element_and_keeps_the_text(payload: str) -> None:
    out = safe.html(payload)
    parsed = _Collect()
    parsed.feed(f"<span>{out}</span>")
    parsed.close()
    assert parsed.tags == ["span"]  # no iframe, script, meta, img or link
    shown = "".join(parsed.text).replace(safe.WORD_JOINER, "")
    assert shown == re.sub(r"[\r\n\t\u2028]", " ", payload)  # the reader sees exactly what was stored
    # And no character is left that Streamlit's Markdown would read as syntax between HTML tags.
    assert not set(out) & set("<>\"'`*_[]$~|@!\\:\n\r")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_markdown_escape_leaves_no_syntax(payload: str) -> None:
    out = safe.md(payload)
    unescaped = re.sub(r"\\.", "", out)  # remove every escaped pair: what remains is read as text
    assert not set(unescaped) & set("<>`*_[]$~|@!#&:\\\n\r")
    assert ":material/" not in out and "material_" not in out  # Streamlit's raw-source icon rewrite
    assert not re.search(r":\w", out.replace("\\:" + safe.WORD_JOINER, ""))  # no :name: shortcode or directive
    assert not re.match(r"\s*([-+=>]|\d+[.)])", out)  # no list, quote or thematic break at the start
    assert "www." not in out  # GFM autolink literal
    # Unescaping gives the payload back, line breaks as spaces (a label is one line).
    assert re.sub(r"\\(.)", r"\1", out).replace(safe.WORD_JOINER, "") == re.sub(r"[\r\n\t\u2028]", " ", payload)


def test_plain_words_and_numbers_read_unchanged() -> None:
    assert safe.md("Cora Critical, CRIT-1 (0.74 mg/dL)") == "Cora Critical, CRIT-1 (0.74 mg/dL)"
    assert safe.html("Cora Critical, CRIT-1 (0.74 mg/dL)") == "Cora Critical, CRIT-1 (0.74 mg/dL)"
    assert safe.md("-0.5") == "\\-0.5" and safe.md("x -0.5") == "x -0.5"


# --- the source walk ----------------------------------------------------------------------------

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"

# Calls whose first positional argument (body or label) Streamlit renders as Markdown or HTML.
MARKDOWN_BODY = {
    "markdown", "caption", "title", "header", "subheader", "error", "warning", "info", "success", "toast",
    "html", "write", "latex", "spinner", "status", "badge",
    "button", "download_button", "link_button", "page_link", "form_submit_button", "expander", "popover",
    "checkbox", "toggle", "radio", "pills", "segmented_control", "selectbox", "multiselect", "select_slider",
    "slider", "text_input", "text_area", "number_input", "date_input", "time_input", "file_uploader",
    "camera_input", "color_picker", "metric", "chat_input",
}
# Keyword arguments rendered as Markdown on any of them.
MARKDOWN_KEYWORDS = {"body", "label", "help", "caption", "captions", "text"}
# Option labels rendered as Markdown (format_func's result), where Streamlit documents it.
MARKDOWN_OPTIONS = {"radio", "pills", "segmented_control"}
SAFE_HELPERS = {"md", "html"}  # dashboard.safe
# Calls whose result holds no stored text: dates, counts, numbers, and builders that escape inside.
CLEAN_CALLS = {"isoformat", "iso", "strftime", "len", "int", "float", "round", "abs", "code_label", "synthetic_label",
               "badge_html", "ward_table_html", "_cell"}
PRAGMA = re.compile(r"#\s*markup-safe:\s*\S")  # a reviewed exception, with its reason on the line


def _upper(name: str) -> bool:
    return name.isupper() or (name.startswith("_") and name[1:].isupper())


class _Checker:
    """Is an expression built only from literals, escaped values and clean calls?

    A name is clean when every value assigned to it anywhere in the file is (assignments, ``+=``,
    ``.append``, loop targets); a function of the same file when every value it returns is. A
    parameter is never clean: escape it where it is rendered."""

    def __init__(self, tree: ast.Module) -> None:
        self.assigned: dict[str, list[ast.expr]] = {}
        self.returns: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    self._bind(target, node.value)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr) and node.value is not None:
                self._bind(node.target, node.value)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in {"append", "extend", "insert"} and isinstance(node.func.value, ast.Name)):
                self.assigned.setdefault(node.func.value.id, []).extend(node.args[-1:])
            elif isinstance(node, ast.For | ast.comprehension):
                self._bind(node.target, node.iter)
            elif isinstance(node, ast.FunctionDef):
                self.returns[node.name] = [r.value for r in ast.walk(node) if isinstance(r, ast.Return) and r.value]
        self._visiting: set[str] = set()

    def _bind(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.assigned.setdefault(target.id, []).append(value)
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:  # a, b = ... / for k, v in ...: each name gets the whole value
                self._bind(element, value)

    def bind(self, name: str, value: ast.expr) -> None:
        self.assigned.setdefault(name, []).append(value)

    def _follow(self, key: str, values: list[ast.expr] | None) -> bool:
        if not values or key in self._visiting:
            return False
        self._visiting.add(key)
        try:
            return all(self.clean(v) for v in values)
        finally:
            self._visiting.discard(key)

    def clean(self, node: ast.expr | None) -> bool:  # noqa: PLR0911 - one case per kind of expression
        if node is None or isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.JoinedStr):
            return all(self.clean(v) for v in node.values)
        if isinstance(node, ast.FormattedValue):
            spec = node.format_spec.values[-1] if isinstance(node.format_spec, ast.JoinedStr) and node.format_spec.values else None
            numeric = isinstance(spec, ast.Constant) and str(spec.value)[-1:] in set("dfFgGeEn%")
            return numeric or self.clean(node.value)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Add):
                return self.clean(node.left) and self.clean(node.right)
            return isinstance(node.op, ast.Sub | ast.Mult | ast.Div | ast.FloorDiv)  # numbers; % may format text
        if isinstance(node, ast.IfExp):
            return self.clean(node.body) and self.clean(node.orelse)
        if isinstance(node, ast.BoolOp):
            return all(self.clean(v) for v in node.values)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            return all(self.clean(e) for e in node.elts)
        if isinstance(node, ast.Starred):
            return self.clean(node.value)
        if isinstance(node, ast.ListComp | ast.GeneratorExp | ast.SetComp):
            return self.clean(node.elt)
        if isinstance(node, ast.DictComp):
            return self.clean(node.value)
        if isinstance(node, ast.Dict):
            return all(self.clean(v) for v in node.values)
        if isinstance(node, ast.Name):
            return _upper(node.id) or self._follow(node.id, self.assigned.get(node.id))  # constants are code
        if isinstance(node, ast.Attribute):
            return _upper(node.attr)
        if isinstance(node, ast.Subscript):  # what is rendered is the looked-up value
            return isinstance(node.value, ast.Name | ast.Attribute) and self.clean(node.value)
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in SAFE_HELPERS and isinstance(func, ast.Attribute) and ast.unparse(func.value) == "safe":
                return True
            if name in CLEAN_CALLS:
                return True
            if isinstance(func, ast.Attribute) and name in {"join", "strip", "upper", "lower", "capitalize", "items",
                                                            "values", "keys"}:
                return self.clean(func.value) and all(self.clean(a) for a in node.args)
            if isinstance(func, ast.Attribute) and name == "get":  # a value of a clean mapping, or the default
                return self.clean(func.value) and all(self.clean(a) for a in node.args[1:])
            if name in {"str", "list", "tuple", "sorted", "enumerate", "zip", "reversed", "dict"}:
                return all(self.clean(a) for a in node.args)
            if isinstance(func, ast.Name) and name in self.returns:
                return self._follow(f"{name}()", self.returns[name])
        return False


def _label_args(call: ast.Call, method: str, checker: _Checker | None = None) -> list[ast.expr]:
    out: list[ast.expr] = []
    if method in MARKDOWN_BODY and call.args:
        first = call.args[0]
        # st.tabs takes a list of labels; everything else takes one.
        out.append(first)
    out += [k.value for k in call.keywords if k.arg in MARKDOWN_KEYWORDS]
    if method in MARKDOWN_OPTIONS:
        options = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "options"), None)
        for k in call.keywords:
            if k.arg == "format_func" and isinstance(k.value, ast.Lambda):
                if options is not None and checker is not None:
                    for param in k.value.args.args:  # the lambda's argument is one of the options
                        checker.bind(param.arg, options)
                out.append(k.value.body)
    return out


def _unsafe_calls() -> list[str]:
    found: list[str] = []
    for path in sorted(DASHBOARD.rglob("*.py")):
        if path.name == "safe.py":
            continue
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        checker = _Checker(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method = node.func.attr
            if _root(node.func) in NOT_STREAMLIT:
                continue
            if method == "tabs" and node.args:
                args = [node.args[0]]
            elif method in MARKDOWN_BODY or any(k.arg in MARKDOWN_KEYWORDS for k in node.keywords):
                if method not in MARKDOWN_BODY and not _looks_streamlit(node):
                    continue
                args = _label_args(node, method, checker)
            else:
                continue
            span = "\n".join(lines[node.lineno - 1 : (node.end_lineno or node.lineno)])
            if PRAGMA.search(span):
                continue
            for arg in args:
                if not checker.clean(arg):
                    found.append(f"{path.relative_to(DASHBOARD.parent)}:{node.lineno}: {method}({ast.unparse(arg)[:90]})")
    return found


NOT_STREAMLIT = {"safe", "pw", "widgets", "data", "figures", "clinic_figures", "auth", "services", "re", "json", "pd"}


def _root(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _looks_streamlit(call: ast.Call) -> bool:
    """A keyword like ``help=`` on a call of st (or a column / container of it)."""
    root = call.func
    while isinstance(root, ast.Attribute):
        root = root.value
    return isinstance(root, ast.Name) and root.id in {"st"}


def test_every_markdown_or_html_call_renders_only_escaped_data() -> None:
    assert _unsafe_calls() == []


def test_the_walk_catches_the_original_banner(tmp_path: Path) -> None:
    """The walk is not blind: the never-rechallenge banner as it was, and a name in a label, fail."""
    tree = ast.parse(
        'named = []\nfor drug in drugs:\n    named.append(f"<b>{drug}</b>")\n'
        'text = "; ".join(named)\n'
        'st.markdown(f"<div>{text}</div>", unsafe_allow_html=True)\n'
        'st.button(f"Open {p.name}")\nst.markdown(f"### {safe.md(p.name)}")\n'
        'st.pills("Open", mrns, format_func=lambda m: labels[m])\n'
    )
    checker = _Checker(tree)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in MARKDOWN_BODY]
    calls.sort(key=lambda c: c.lineno)
    verdicts = [all(checker.clean(a) for a in _label_args(c, c.func.attr, checker)) for c in calls]  # type: ignore[union-attr]
    # the banner as it was, a name in a button, an escaped title, names as pill labels
    assert verdicts == [False, False, True, False]


# --- the HTML the dashboard builds, with the payloads as stored data ------------------------------

ALLOWED_TAGS = {"table", "thead", "tbody", "tr", "th", "td", "span", "b", "br", "div"}


def _elements(markup: str, *, links: bool = False) -> list[str]:
    parsed = _Collect()
    parsed.feed(markup)
    parsed.close()
    allowed = {"class", "style", "role", "data-mrn"} | ({"href", "target"} if links else set())
    assert parsed.attributes <= allowed  # no src, srcdoc, on...; href only where links are built
    return parsed.tags


def test_never_rechallenge_banner_shows_a_script_drug_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard import widgets

    shown: list[str] = []
    monkeypatch.setattr(widgets.st, "markdown", lambda body, **_: shown.append(body))
    drug = PAYLOADS[0]
    widgets.banner("critical", "NEVER RECHALLENGE: culprit drug(s) ", widgets.Strong(drug), ".")
    (markup,) = shown
    assert set(_elements(markup)) <= {"div", "b"}
    parsed = _Collect()
    parsed.feed(markup)
    assert drug in "".join(parsed.text)  # the clinician reads the drug exactly as recorded


def test_ward_table_keeps_every_payload_inert() -> None:
    from types import SimpleNamespace

    from dashboard import widgets

    rows = [
        SimpleNamespace(worst="critical", name=payload, synthetic=False, mrn=f"M-{i}{payload}", setting="inpatient",
                        day_since_onset=3, course_day=None, course_start=None, dose_mg=None, dose_mg_per_kg=None,
                        changes={"alt": None}, alerts=[("critical", "ICU_CRITERIA")], handled={"ICU_CRITERIA": payload},
                        new=[payload], second_line=[("ivig", dt.date(2026, 12, 1))])
        for i, payload in enumerate(PAYLOADS)
    ]
    markup = widgets.ward_table_html(rows, [("alt", "ALT U/L")], as_of=dt.date(2026, 12, 2))
    assert set(_elements(markup, links=True)) <= ALLOWED_TAGS | {"a"}
    # Issue 18 point 8: each name is one link to its own patient's timeline, the MRN URL-encoded
    # inside an escaped attribute (so a payload MRN neither ends the attribute nor adds a query).
    parsed = _Collect()
    parsed.feed(markup)
    assert parsed.links == [(f"timeline?mrn={urllib.parse.quote(r.mrn, safe='')}", "_self") for r in rows]
    assert [urllib.parse.parse_qs(urllib.parse.urlsplit(h or "").query)["mrn"] for h, _ in parsed.links] == [
        [r.mrn] for r in rows
    ]
    assert "](" not in markup and "$" not in markup and ":material" not in markup  # nothing Markdown reads either
    parsed = _Collect()
    parsed.feed(markup)
    text = "".join(parsed.text).replace(safe.WORD_JOINER, "")
    assert all(" ".join(p.split()) in " ".join(text.split()) for p in PAYLOADS)  # each name shown as stored


def test_ward_round_list_keeps_every_payload_inert() -> None:
    """Issue 18 point 15: the printable list is a whole HTML document; stored text in it is text."""
    from types import SimpleNamespace

    from dashboard.ward_model import Change
    from dashboard.ward_round import ward_round_html

    taken = dt.datetime(2026, 12, 1, 6, 0)
    rows = [
        SimpleNamespace(worst="warning", name=payload, synthetic=False, mrn=f"M-{i}{payload}", setting=payload,
                        day_since_onset=3, course_day=2, course_start=dt.date(2026, 11, 29), dose_mg=60.0, dose_mg_per_kg=1.0,
                        changes={"alt": Change("alt", 80.0, "U/L", None, taken, "")},
                        alerts=[("warning", "HEPATIC_INVOLVEMENT")], handled={"HEPATIC_INVOLVEMENT": payload},
                        new=[payload], second_line=[("ivig", dt.date(2026, 12, 1))])
        for i, payload in enumerate(PAYLOADS)
    ]
    doc = ward_round_html(rows, [("alt", "ALT U/L")], as_of=dt.date(2026, 12, 2), heading=f"search {PAYLOADS[0]!r}",
                          generated_at=dt.datetime(2026, 12, 2, 7, 0), author=PAYLOADS[1])
    parsed = _Collect()
    parsed.feed(doc)
    parsed.close()
    assert set(parsed.tags) <= ALLOWED_TAGS | {"html", "head", "meta", "title", "style", "body", "h1", "p"}
    assert parsed.attributes <= {"lang", "charset", "class", "data-mrn"}  # no href, src, on...
    assert parsed.tags.count("style") == 1 and parsed.tags.count("title") == 1  # only our own
    text = " ".join("".join(parsed.text).replace(safe.WORD_JOINER, "").split())
    assert all(" ".join(p.split()) in text for p in PAYLOADS)  # each stored text shown as stored
    order = [text.index(f"MRN M-{i}") for i in range(len(PAYLOADS))]
    assert order == sorted(order)  # printed in the order given
