"""A Collect storage folder copied from a tablet (USB), in any of Collect's three layouts:

- ``odk/`` (Collect ≤ 1.26, on the SD card),
- ``Android/data/org.odk.collect.android/files/``,
- ``Android/data/org.odk.collect.android/files/projects/<uuid>/`` (Collect 2021.2 and later).

Each has ``instances/<name>_YYYY-MM-DD_HH-MM-SS/<same>.xml`` plus the instance's files. Whether an
instance was finalised is kept in Collect's ``metadata/instances.db`` beside them: drafts are reported,
never sent. Without that database every instance with an instanceID is taken as finalised (and said so).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from server import safe_xml
from sync_client.sources import HubItem

COLLECT_FILES = Path("Android/data/org.odk.collect.android/files")
DRAFT_STATES = {"incomplete", "invalid", "valid"}  # saved but not finalised


@dataclass(frozen=True)
class Root:
    path: Path
    layout: str


@dataclass
class Instance:
    folder: Path
    xml_path: Path
    xml: bytes
    form_id: str
    instance_id: str
    deprecated_id: str | None
    files: dict[str, Path]


@dataclass
class FolderScan:
    roots: list[Root] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    drafts: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    status_known: bool = True


def find_roots(top: Path) -> list[Root]:
    """The Collect storage roots under ``top`` (the folder copied from the tablet, or a part of it)."""
    candidates: list[Root] = []

    def consider(path: Path, layout: str) -> None:
        if (path / "instances").is_dir() and all(r.path != path for r in candidates):
            candidates.append(Root(path, layout))

    for base in (top, top / "sdcard", top / "storage/emulated/0"):
        for files in (base / COLLECT_FILES, base / "files", base):
            projects = files / "projects"
            if projects.is_dir():
                for project in sorted(p for p in projects.iterdir() if p.is_dir()):
                    consider(project, "projects/<uuid> (Collect 2021.2+)")
        consider(base / COLLECT_FILES, "Android/data/org.odk.collect.android/files")
        consider(base / "odk", "odk/ (Collect 1.26 and older)")
        consider(base, "odk/ (Collect 1.26 and older)" if base.name == "odk" else "instances/ folder")
    return candidates


def _states(root: Path) -> dict[str, str] | None:
    """Instance folder name → Collect's status, from metadata/instances.db when it is there."""
    db = root / "metadata" / "instances.db"
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT instanceFilePath, status FROM instances").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return {Path(str(path)).parent.name: str(status) for path, status in rows if path}


def _text(root: etree._Element, name: str) -> str | None:
    for el in root.iter():
        if isinstance(el.tag, str) and etree.QName(el).localname == name and el.text and el.text.strip():
            return el.text.strip()
    return None


def scan(top: Path) -> FolderScan:
    result = FolderScan(roots=find_roots(top))
    for root in result.roots:
        states = _states(root.path)
        if states is None:
            result.status_known = False
        for folder in sorted(p for p in (root.path / "instances").iterdir() if p.is_dir()):
            if states is not None and states.get(folder.name, "complete") in DRAFT_STATES:
                result.drafts.append(folder)
                continue
            found = _read_instance(folder, result)
            if found is not None:
                result.instances.append(found)
    return result


def _read_instance(folder: Path, result: FolderScan) -> Instance | None:
    xml_path = folder / f"{folder.name}.xml"
    if not xml_path.is_file():
        xmls = sorted(folder.glob("*.xml"))
        if len(xmls) != 1:
            result.unreadable.append((folder, "no instance XML in it"))
            return None
        xml_path = xmls[0]
    data = xml_path.read_bytes()
    try:
        tree = safe_xml.parse(data)
    except safe_xml.UnsafeXml as exc:
        result.unreadable.append((folder, f"the XML does not parse ({exc})"))
        return None
    form_id, instance_id = tree.get("id"), _text(tree, "instanceID")
    if not form_id or not instance_id:
        result.unreadable.append((folder, "the XML has no form id or no instanceID"))
        return None
    files = {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p != xml_path}
    return Instance(folder, xml_path, data, form_id, instance_id, _text(tree, "deprecatedID"), files)


class FolderStore:
    """A scanned folder seen like a hub's store, so that ``push`` can send it straight to central."""

    def __init__(self, folder_scan: FolderScan, project_name: str, device_id: str) -> None:
        self.scan = folder_scan
        self.project_name = project_name
        self.device_id = device_id
        self._blobs: dict[str, Path] = {}
        self._items: list[HubItem] = []
        self._xml: dict[tuple[str, int], str] = {}
        for n, inst in enumerate(folder_scan.instances):
            attachments = {}
            for name, path in inst.files.items():
                sha = _sha256(path)
                self._blobs[sha] = path
                attachments[name] = sha
            sha = hashlib.sha256(inst.xml).hexdigest()
            item = HubItem(
                "version", n, project_name, inst.form_id, inst.instance_id, sha, attachments,
                inst.deprecated_id, device_id, "sarhad-sync pull-device",
            )  # fmt: skip
            self._items.append(item)
            self._xml[("version", n)] = inst.xml.decode("utf-8")

    def items(self) -> list[HubItem]:
        return list(self._items)

    def xmls(self, items: list[HubItem]) -> dict[tuple[str, int], str]:
        return {(i.kind, i.row_id): self._xml[(i.kind, i.row_id)] for i in items}

    def blob_sizes(self, shas: list[str]) -> dict[str, int]:
        return {s: self._blobs[s].stat().st_size for s in shas if s in self._blobs}

    def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        with self._blobs[sha256].open("rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def close(self) -> None:
        pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def iter_files(inst: Instance) -> Iterator[tuple[str, Path]]:
    yield from inst.files.items()
