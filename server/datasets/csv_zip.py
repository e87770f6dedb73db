"""CSV exports in ODK Central's exact layout, streamed chunk by chunk.

The zip holds ``{formId}.csv`` (SubmissionDate, the fields by group path joined with ``-``, then KEY,
SubmitterID, SubmitterName, AttachmentsPresent, AttachmentsExpected, Status, ReviewState, DeviceID, Edits,
FormVersion), one ``{formId}-{repeat}.csv`` per repeat (its fields, then PARENT_KEY and KEY; a repeat name
used twice gets ``~1``, ``~2``), and ``media/`` with the attachments the requester may receive. Sarhad's
own exports add an ``_issues`` column, ``codebook.csv`` and ``conflicts.csv``.

Memory stays flat: the root CSV is compressed straight into the response while repeat rows wait in
temporary files on disk (a zip entry must be written whole), copied in after the root table.
Text is UTF-8 without BOM, ``\\n`` line ends, quotes only where needed (comma, quote, line break), as
Central's csv-stringify writes it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from server.blobs import BlobCorrupt, BlobMissing
from server.datasets import iter_attachments
from server.datasets.codebook import CODEBOOK_HEADER, CONFLICT_HEADER, codebook_lines, conflict_lines
from server.datasets.tables import Dataset, OutRow, Table, sanitize_filename
from server.odk_encryption import plain_name

CHUNK_BYTES = 256 * 1024
log = logging.getLogger(__name__)
COMPRESS_LEVEL = 6
BlobOpener = Callable[[str], IO[bytes]]


class _Sink:
    """A write-only file for ``zipfile`` that hands its bytes to the response generator."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self.size += len(chunk)
        return len(chunk)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self.size = 0
        return data


def _needs_slow_quoting(cells: Iterable[Any]) -> bool:
    return any(isinstance(c, str) and "\r" in c for c in cells)


def _quote(cell: Any) -> str:
    text = "" if cell is None else str(cell)
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


class CsvText:
    """CSV lines written as Central writes them (Python's csv module does not quote a lone CR)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.writer = csv.writer(out, lineterminator="\n")

    def row(self, cells: list[Any], maybe_cr: bool = False) -> None:
        if maybe_cr and _needs_slow_quoting(cells):
            self.out.write(",".join(_quote(c) for c in cells) + "\n")
        else:
            self.writer.writerow(cells)


def _row_cells(table: Table, row: OutRow) -> list[Any]:
    return table.render(row)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=dt.datetime.now().timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def stream_csv_zip(
    dataset: Dataset,
    tables: list[Table],
    *,
    open_blob: BlobOpener | None = None,
    extras: bool = False,
) -> Iterator[bytes]:
    """The zip, as byte chunks. ``open_blob`` given = include ``media/``; ``extras`` = codebook/conflicts."""
    sink = _Sink()
    root, repeats = tables[0], tables[1:]
    by_path = {t.path: t for t in repeats}
    # Closed in the finally below, also when the client goes away mid-download.
    spools = {t.path: tempfile.TemporaryFile("w+", encoding="utf-8", newline="") for t in repeats}  # noqa: SIM115
    try:
        writers = {path: CsvText(spool) for path, spool in spools.items()}
        for t in repeats:
            writers[t.path].row([c.header for c in t.columns])
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
            with zf.open(_entry(f"{root.name}.csv"), "w", force_zip64=True) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8", newline="", write_through=False)
                root_writer = CsvText(text)
                root_writer.row([c.header for c in root.columns])
                for rows in dataset.submissions():
                    maybe_cr = "&#" in rows[0].record.xml
                    for row in rows:
                        if row.table is None:
                            root_writer.row(_row_cells(root, row), maybe_cr)
                        elif row.table in by_path:
                            writers[row.table].row(_row_cells(by_path[row.table], row), maybe_cr)
                    if sink.size >= CHUNK_BYTES:
                        yield sink.take()
                text.flush()
                text.detach()
            for t in repeats:
                spool = spools[t.path]
                spool.seek(0)
                with zf.open(_entry(f"{t.name}.csv"), "w", force_zip64=True) as raw:
                    while block := spool.read(CHUNK_BYTES):
                        raw.write(block.encode("utf-8"))
                        if sink.size >= CHUNK_BYTES:
                            yield sink.take()
                spool.close()
            if extras:
                yield from _write_table(
                    zf, sink, "codebook.csv", CODEBOOK_HEADER, codebook_lines(tables, dataset.opts.access)
                )
                yield from _write_table(
                    zf, sink, "conflicts.csv", CONFLICT_HEADER, conflict_lines(dataset.session, dataset.form)
                )
            if open_blob is not None:
                yield from _write_media(zf, sink, dataset, open_blob)
        yield sink.take()
    finally:
        for spool in spools.values():
            spool.close()


def _write_table(
    zf: zipfile.ZipFile, sink: _Sink, name: str, header: list[str], lines: Iterable[list[Any]]
) -> Iterator[bytes]:
    with zf.open(_entry(name), "w", force_zip64=True) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = CsvText(text)
        writer.row(header)
        for line in lines:
            writer.row(line, True)
            if sink.size >= CHUNK_BYTES:
                yield sink.take()
        text.flush()
        text.detach()


def _write_media(
    zf: zipfile.ZipFile, sink: _Sink, dataset: Dataset, open_blob: BlobOpener
) -> Iterator[bytes]:
    allowed = dataset.allowed_attachments
    for att in iter_attachments(dataset.session, dataset.form, dataset.opts.filters):
        name, plain = att.name, None
        if att.encrypted and dataset.decryptor is not None:
            media = dataset.decryptor.media(att.version_id)
            if plain_name(att.name) in media:
                # Decrypted in memory, under its own name (as Central): never written anywhere else.
                name = plain_name(att.name)
                plain = media[name]
        if allowed is not None and (att.version_id, name) not in allowed:
            continue
        if plain is not None:
            with zf.open(_entry(f"media/{sanitize_filename(name)}"), "w", force_zip64=True) as target:
                target.write(plain)
            if sink.size >= CHUNK_BYTES:
                yield sink.take()
            continue
        try:
            source = open_blob(att.blob_sha256)
        except BlobMissing:
            # A storage fault (``sarhad doctor`` reports it): the rest of the export is still worth having.
            log.error("export of %s: the file %s of %s is missing from the blob store",
                      dataset.form.xml_form_id, att.name, att.instance_id)  # fmt: skip
            continue
        try:
            with (
                source,
                zf.open(_entry(f"media/{sanitize_filename(att.name)}"), "w", force_zip64=True) as target,
            ):
                while block := source.read(CHUNK_BYTES):
                    target.write(block)
                    if sink.size >= CHUNK_BYTES:
                        yield sink.take()
        except BlobCorrupt:
            log.error("export of %s: the file %s of %s does not match its checksum",
                      dataset.form.xml_form_id, att.name, att.instance_id)  # fmt: skip


def stream_root_csv(dataset: Dataset, root: Table) -> Iterator[bytes]:
    """Central's ``submissions.csv``: the root table alone, not zipped."""
    buffer = io.StringIO()
    writer = CsvText(buffer)
    writer.row([c.header for c in root.columns])
    for rows in dataset.submissions():
        maybe_cr = "&#" in rows[0].record.xml
        writer.row(_row_cells(root, rows[0]), maybe_cr)
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def download_name(xml_form_id: str, suffix: str) -> str:
    return f"{sanitize_filename(xml_form_id)}{suffix}"
