"""Reading a submission's multipart/form-data body as it arrives, with python-multipart.

Why not werkzeug's form parser: it compiles two regular expressions for every request's boundary, and
Collect sends a new boundary with every request, so that cost (about a quarter of a millisecond) was paid
on every submission. python-multipart's state machine needs no compilation.

Text parts (no filename) are kept in memory up to ``text_limit`` bytes; file parts go to the file objects
``new_file()`` returns (spooled: memory while small, then disk). A body that is cut short, malformed or
has too many parts is refused with a 400, and everything opened for it is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from werkzeug.datastructures import FileStorage, MultiDict

from server import errors

READ_SIZE = 64 * 1024
MAX_BOUNDARY = 70  # RFC 2046; Collect's are 36
UNREADABLE = "The multipart body could not be read (cut short or malformed)."


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    text: bytearray = field(default_factory=bytearray)
    file: IO[bytes] | None = None


class _Collector:
    """The parser's callbacks: they build the parts as the bytes come."""

    def __init__(self, new_file: Callable[[], IO[bytes]], text_limit: int, max_parts: int) -> None:
        self.new_file = new_file
        self.text_limit = text_limit
        self.max_parts = max_parts
        self.parts: list[_Part] = []
        self.field = bytearray()
        self.value = bytearray()
        self.ended = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self.field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.value.extend(data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        if len(self.parts) >= self.max_parts:
            raise errors.bad_request(f"The body has more than {self.max_parts} parts.")
        self.parts.append(_Part())

    def header_end(self) -> None:
        self.parts[-1].headers[bytes(self.field).strip().lower()] = bytes(self.value).strip()
        self.field.clear()
        self.value.clear()

    def headers_finished(self) -> None:
        part = self.parts[-1]
        _kind, options = parse_options_header(part.headers.get(b"content-disposition", b"").decode("latin-1"))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            part.filename = options[b"filename"].decode("utf-8", "replace")
            part.file = self.new_file()

    def part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        if part.file is not None:
            part.file.write(data[start:end])
            return
        part.text.extend(data[start:end])
        if len(part.text) > self.text_limit:
            raise errors.too_large(self.text_limit)

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        for part in self.parts:
            if part.file is not None:
                part.file.close()


def read_multipart(
    stream: IO[bytes],
    boundary: str,
    *,
    new_file: Callable[[], IO[bytes]],
    text_limit: int,
    max_parts: int,
) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
    """(text parts, file parts) of the body in ``stream``, read to its end."""
    if not boundary:
        raise errors.bad_request("The multipart body has no boundary in its Content-Type.")
    if len(boundary) > MAX_BOUNDARY:
        raise errors.bad_request(f"The multipart boundary is longer than {MAX_BOUNDARY} characters.")
    collector = _Collector(new_file, text_limit, max_parts)
    try:
        parser = MultipartParser(boundary.encode("latin-1"), collector.callbacks())  # type: ignore[arg-type]
        while chunk := stream.read(READ_SIZE):
            parser.write(chunk)
        if not collector.ended:
            raise errors.bad_request(UNREADABLE)
    except FormParserError:  # the base of python-multipart's own errors
        collector.close()
        raise errors.bad_request(UNREADABLE) from None
    except BaseException:
        collector.close()
        raise
    texts: MultiDict[str, str] = MultiDict()
    files: MultiDict[str, FileStorage] = MultiDict()
    for part in collector.parts:
        if part.file is None:
            texts.add(part.name, part.text.decode("utf-8", "replace"))
            continue
        part.file.seek(0)
        content_type = part.headers.get(b"content-type", b"").decode("latin-1") or None
        files.add(part.name, FileStorage(part.file, part.filename, part.name, content_type=content_type))
    return texts, files
