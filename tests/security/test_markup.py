"""render_comment and render_post against classic XSS payloads (the OWASP XSS filter evasion
cheat sheet and Markdown-specific tricks): every output is parsed with html.parser and must
carry no dangerous tag, no event-handler or style attribute, and no URL outside http, https,
mailto (and, in posts, the media store)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from vedina.security.markup import render_comment, render_post

PAYLOADS = [
    # script tags
    "<script>alert('XSS')</script>",
    "<SCRIPT SRC=https://xss.rocks/xss.js></SCRIPT>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "<script/XSS src=\"http://xss.rocks/xss.js\"></script>",
    "<<SCRIPT>alert(\"XSS\");//<</SCRIPT>",
    "<SCRIPT SRC=http://xss.rocks/xss.js?< B >",
    "<script\x20type=\"text/javascript\">javascript:alert(1);</script>",
    "</TITLE><SCRIPT>alert(\"XSS\");</SCRIPT>",
    "\";alert('XSS');//",
    # images and event handlers
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=javascript:alert('XSS')>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
    "<IMG \"\"\"><SCRIPT>alert(\"XSS\")</SCRIPT>\"\\>",
    "<IMG SRC=# onmouseover=\"alert('xxs')\">",
    "<IMG SRC= onmouseover=\"alert('xxs')\">",
    "<IMG onmouseover=\"alert('xxs')\">",
    "<IMG SRC=/ onerror=\"alert(String.fromCharCode(88,83,83))\"></img>",
    "<img src=x onerror=\"&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083&#0000083&#0000039&#0000041\">",
    "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",
    "<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27&#x58&#x53&#x53&#x27&#x29>",
    "<IMG SRC=\"jav\tascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x09;ascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
    "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
    "<IMG DYNSRC=\"javascript:alert('XSS')\">",
    "<IMG LOWSRC=\"javascript:alert('XSS')\">",
    "<BODY ONLOAD=alert('XSS')>",
    "<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert(\"XSS\")>",
    "<INPUT TYPE=\"IMAGE\" SRC=\"javascript:alert('XSS');\">",
    "<details open ontoggle=alert(1)>",
    "<video><source onerror=\"alert(1)\"></video>",
    "<a href=\"https://example.org\" onclick=\"alert(1)\">x</a>",
    "<p onmouseover=alert(1)>hover</p>",
    # svg, math, frames, objects, styles
    "<svg/onload=alert('XSS')>",
    "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<IFRAME SRC=\"javascript:alert('XSS');\"></IFRAME>",
    "<IFRAME SRC=# onmouseover=\"alert(document.cookie)\"></IFRAME>",
    "<FRAMESET><FRAME SRC=\"javascript:alert('XSS');\"></FRAMESET>",
    "<OBJECT TYPE=\"text/x-scriptlet\" DATA=\"http://xss.rocks/scriptlet.html\"></OBJECT>",
    "<EMBED SRC=\"data:image/svg+xml;base64,PHN2ZyB4bWxuczpzdmc9Imh0dH A6Ly93d3cudzMub3JnLzIwMDAvc3ZnIj48c2NyaXB0PmFsZXJ0KDEpPC9zY3JpcHQ+PC9zdmc+\" AllowScriptAccess=\"always\"></EMBED>",
    "<STYLE>@import'http://xss.rocks/xss.css';</STYLE>",
    "<STYLE>BODY{-moz-binding:url(\"http://xss.rocks/xssmoz.xml#xss\")}</STYLE>",
    "<DIV STYLE=\"width: expression(alert('XSS'));\">",
    "<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">",
    "<LINK REL=\"stylesheet\" HREF=\"javascript:alert('XSS');\">",
    "<META HTTP-EQUIV=\"refresh\" CONTENT=\"0;url=javascript:alert('XSS');\">",
    "<BASE HREF=\"javascript:alert('XSS');//\">",
    "<TABLE BACKGROUND=\"javascript:alert('XSS')\">",
    "<form action=\"javascript:alert(1)\"><button>go</button></form>",
    # links with dangerous schemes
    "<a href=\"javascript:alert(1)\">x</a>",
    "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
    "<a href=\"&#106;avascript:alert(1)\">x</a>",
    "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
    "<a href=\"vbscript:msgbox('XSS')\">x</a>",
    "<a href=\" javascript:alert(1)\">x</a>",
    # comments, quotes, malformed markup
    "<!--<img src=x onerror=alert(1)>-->",
    "<!--[if gte IE 4]><SCRIPT>alert('XSS');</SCRIPT><![endif]-->",
    "<a href=\"https://example.org\"\"onmouseover=alert(1)//\">x</a>",
    "<img src=\"x` `<script>alert(1)</script>\"` `>",
    "<IMG SRC=\"x\" ALT=\"\"\" onerror=alert(1) \"\">",
    "\"><script>alert(document.cookie)</script>",
    "'';!--\"<XSS>=&{()}",
    # Markdown links, images and autolinks
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](javascript&#58;alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](java%0ascript:alert(1))",
    "[click]( javascript:alert(1))",
    "[click](<javascript:alert(1)>)",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](vbscript:msgbox(1))",
    "[click](https://example.org \"title\\\" onmouseover=\\\"alert(1)\")",
    "[click][ref]\n\n[ref]: javascript:alert(1)",
    "<javascript:alert(1)>",
    "<data:text/html,<script>alert(1)</script>>",
    "![x](javascript:alert(1))",
    "![x](https://example.org/x.png\"onerror=\"alert(1))",
    "![x\" onerror=\"alert(1)](/api/media/1)",
    "[![x](javascript:alert(1))](javascript:alert(2))",
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    "*<img src=x onerror=alert(1)>*",
]

DANGEROUS_TAGS = {"script", "iframe", "frame", "frameset", "object", "embed", "style", "svg", "math", "link", "meta",
                  "base", "form", "input", "button", "video", "audio", "source", "details", "body", "applet"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "background", "lowsrc", "dynsrc", "data", "xlink:href"}
# A URL's scheme as a browser reads it (WHATWG URL): a letter, then letters, digits, "+", "-", ".",
# then ":". Anything else ("java%0ascript:...") has no scheme and is a relative URL on this site.
SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):", re.IGNORECASE)
SAFE_SCHEMES = {"http", "https", "mailto"}


class Elements(HTMLParser):
    """Every start tag with its attributes (values entity-decoded, as a browser reads them)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, attrs))


def assert_inert(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered and "<iframe" not in lowered and "<object" not in lowered
    assert "<embed" not in lowered and "<style" not in lowered and "<svg" not in lowered and "<math" not in lowered
    for tag, attributes in Elements(html).tags:
        assert tag not in DANGEROUS_TAGS, (tag, html)
        for name, value in attributes:
            assert not re.match(r"on\w+", name), (name, html)
            assert name != "style", html
            if name in URL_ATTRIBUTES:
                # What a browser would see: entities decoded (done by the parser), controls and spaces dropped.
                url = re.sub(r"[\x00-\x20]", "", value or "")
                assert not re.match(r"(?:javascript|data|vbscript):", url, re.IGNORECASE), (url, html)
                scheme = SCHEME.match(url)
                assert scheme is None or scheme.group(1).lower() in SAFE_SCHEMES, (url, html)


def test_there_are_at_least_fifty_payloads_and_no_duplicates():
    assert len(PAYLOADS) >= 50
    assert len(set(PAYLOADS)) == len(PAYLOADS)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_comment_body_with_an_xss_payload_renders_inert(payload):
    html = render_comment(payload)
    assert_inert(html)
    for tag, attributes in Elements(html).tags:
        assert tag in {"p", "br", "em", "strong", "a", "code", "pre"}, (tag, html)
        if tag == "a":
            assert dict(attributes).get("rel") == "nofollow ugc noopener", html


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_post_body_with_an_xss_payload_renders_inert(payload):
    html = render_post(payload)
    assert_inert(html)
    for tag, attributes in Elements(html).tags:
        if tag == "img":
            assert all(re.fullmatch(r"/api/media/[0-9]+", v or "") for n, v in attributes if n == "src"), html


def test_the_comment_subset_keeps_emphasis_links_and_code():
    html = render_comment("*soft* **bold** `x < y` [site](https://example.org/a?b=1&c=2)")
    assert html == ('<p><em>soft</em> <strong>bold</strong> <code>x &lt; y</code> '
                    '<a href="https://example.org/a?b=1&amp;c=2" rel="nofollow ugc noopener">site</a></p>')


def test_raw_html_in_a_comment_stays_visible_text():
    assert render_comment("<b>bold?</b>") == "<p>&lt;b&gt;bold?&lt;/b&gt;</p>"


def test_a_comment_drops_headings_images_and_lists_to_text():
    html = render_comment("# title\n\n![img](https://example.org/x.png)\n\n- item")
    assert "<h1" not in html and "<img" not in html and "<li" not in html
    assert "title" in html and "item" in html
