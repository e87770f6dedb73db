"""``server.safe_xml``: the one parser of untrusted XML refuses what could hurt and reads what is valid."""

from __future__ import annotations

import pytest

from server import safe_xml


def test_reads_a_document_and_drops_comments_unless_asked() -> None:
    root = safe_xml.parse('<?xml version="1.0"?><data id="f"><a>x<!-- note -->y</a><?pi here?></data>')
    assert root.get("id") == "f" and root[0].text == "xy" and len(root) == 1
    kept = safe_xml.parse(b"<data><a>x<!-- note -->y</a></data>", keep_comments=True)
    assert kept[0].text == "x" and len(kept[0]) == 1  # the comment is still there to write back out


@pytest.mark.parametrize(
    "xml",
    [
        b'<!DOCTYPE data [<!ENTITY x "boom">]><data>&x;</data>',
        b'<!DOCTYPE data SYSTEM "file:///etc/passwd"><data/>',
        b"<?xml version='1.0'?>\n<!DOCTYPE data><data/>",
    ],
)
def test_doctypes_and_entities_are_refused(xml: bytes) -> None:
    with pytest.raises(safe_xml.DoctypeRefused):
        safe_xml.parse(xml)


def test_size_and_depth_limits() -> None:
    with pytest.raises(safe_xml.TooLarge):
        safe_xml.parse(b"<data>" + b"x" * 100 + b"</data>", max_bytes=50)
    fine = safe_xml.MAX_DEPTH - 10
    assert safe_xml.parse("<a>" * fine + "</a>" * fine) is not None
    deep = safe_xml.MAX_DEPTH + 50
    with pytest.raises(safe_xml.Malformed):
        safe_xml.parse("<a>" * deep + "</a>" * deep)


def test_malformed_xml_says_where() -> None:
    with pytest.raises(safe_xml.Malformed) as caught:
        safe_xml.parse(b"<data>\n<open></data>")
    assert caught.value.lineno == 2 and caught.value.msg
