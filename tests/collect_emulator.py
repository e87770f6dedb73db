"""A test client that speaks to a running server over HTTP exactly as ODK Collect does.

What it copies from Collect (PROTOCOL.md, "ODK Collect"): the headers of every request (User-Agent,
X-OpenRosa-Version, a GMT Date, Accept-Encoding: gzip), ``deviceID=collect:<16 chars>`` appended to every
URL's query, no cookies, a first request without credentials and Digest (with pre-emptive reuse of the
nonce) when challenged; the form list checks (200, text/xml, the OpenRosa header, one incomplete entry
rejects the whole list), manifests fetched straight after the list, form and media hashes checked; HEAD
(exactly 204) before every POST; a multipart body with an exact Content-Length, ``xml_submission_file``
first, one part per file named after it; splitting by the advertised size and by 100 files, with
``*isIncomplete*=yes`` on all but the last POST, each repeating the same XML; only 201/202 count as sent.

It also fills instances of a downloaded form (every field type gets a plausible value, repeats get two
rows, binary fields get small files), edits them (new instanceID, ``deprecatedID`` = the old one) and
encrypts them as Collect does for forms with a public key.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import os
import random
import secrets
import string
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urlsplit, urlunsplit

import requests
from lxml import etree
from requests.auth import HTTPDigestAuth

USER_AGENT = "org.odk.collect.android/v2024.3.1 Dalvik/2.1.0 (Linux; U; Android 13; SM-A145F Build/TP1A)"
FORM_LIST_NS = "http://openrosa.org/xforms/xformsList"
MANIFEST_NS = "http://openrosa.org/xforms/xformsManifest"
RESPONSE_NS = "http://openrosa.org/http/response"
XF = "http://www.w3.org/2002/xforms"
H = "http://www.w3.org/1999/xhtml"
JR = "http://openrosa.org/javarosa"
ENCRYPTED_NS = "http://www.opendatakit.org/xforms/encrypted"
ORX = "http://openrosa.org/xforms"
DEFAULT_LIMIT = 10_000_000  # what Collect assumes when HEAD gives no limit
MAX_FILES_PER_POST = 100
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class CollectError(Exception):
    """What Collect would show as an error (and leave the form as failed)."""


@dataclass(frozen=True)
class ListedForm:
    form_id: str
    name: str
    version: str
    hash: str
    download_url: str
    manifest_url: str | None


@dataclass(frozen=True)
class MediaFile:
    filename: str
    hash: str
    download_url: str


@dataclass
class DownloadedForm:
    listed: ListedForm
    xml: bytes
    media: dict[str, bytes] = field(default_factory=dict)


@dataclass
class PostResult:
    status: int
    message: str | None
    incomplete: bool
    files: list[str]
    body_bytes: int


@dataclass
class SendResult:
    """One submission sent the way Collect sends it: maybe several POSTs."""

    posts: list[PostResult]

    @property
    def sent(self) -> bool:
        return bool(self.posts) and all(p.status in (201, 202) for p in self.posts)

    @property
    def status(self) -> int:
        return self.posts[-1].status

    @property
    def message(self) -> str | None:
        return self.posts[-1].message


@dataclass
class Instance:
    """A filled form on the tablet: its XML and the files beside it."""

    form_id: str
    instance_id: str
    xml: bytes
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.xml).hexdigest()


def _gmt_date() -> str:
    return formatdate(usegmt=True)


def new_device_id() -> str:
    return "collect:" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))


def response_message(body: bytes) -> str | None:
    """The first <message> of an OpenRosaResponse, as Collect shows it."""
    try:
        root = etree.fromstring(body, _SAFE_PARSER)
    except etree.XMLSyntaxError:
        return None
    node = root.find(f".//{{{RESPONSE_NS}}}message")
    return None if node is None else (node.text or "")


class CollectEmulator:
    def __init__(
        self,
        server_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        device_id: str | None = None,
        timeout: tuple[float, float] = (30, 60),
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.device_id = device_id or new_device_id()
        self.timeout = timeout
        self.session = requests.Session()
        self.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # Collect keeps none
        self.session.trust_env = False
        self.auth = HTTPDigestAuth(username, password) if username is not None else None
        self.requests_made: list[requests.Response] = []

    # ---- HTTP ---------------------------------------------------------------------------------------

    def url(self, url: str) -> str:
        """``url`` with Collect's deviceID appended to its query."""
        parts = urlsplit(url)
        query = f"{parts.query}&" if parts.query else ""
        return urlunsplit(parts._replace(query=f"{query}deviceID={self.device_id}"))

    def headers(self) -> dict[str, str]:
        return {
            "User-Agent": USER_AGENT,
            "X-OpenRosa-Version": "1.0",
            "Date": _gmt_date(),
            "Accept-Encoding": "gzip",
        }

    def request(self, method: str, url: str, **kwargs: object) -> requests.Response:
        headers = {**self.headers(), **dict(kwargs.pop("headers", {}) or {})}  # type: ignore[call-overload]
        response = self.session.request(
            method,
            self.url(url),
            headers=headers,
            auth=self.auth,
            timeout=self.timeout,
            allow_redirects=False,
            **kwargs,  # type: ignore[arg-type]
        )
        self.requests_made.append(response)
        return response

    @staticmethod
    def _check_openrosa_xml(response: requests.Response, what: str) -> None:
        if response.status_code == 401:
            raise CollectError(f"{what}: the server asks for credentials (401)")
        if response.status_code != 200:
            raise CollectError(f"{what}: HTTP {response.status_code}: {response_message(response.content)}")
        if "text/xml" not in response.headers.get("Content-Type", ""):
            raise CollectError(
                f"{what}: Content-Type {response.headers.get('Content-Type')!r} is not text/xml"
            )
        if "X-OpenRosa-Version" not in response.headers:
            raise CollectError(f"{what}: no X-OpenRosa-Version header: not an OpenRosa server")

    # ---- forms --------------------------------------------------------------------------------------

    def form_list(self) -> list[ListedForm]:
        response = self.request("GET", f"{self.server_url}/formList")
        self._check_openrosa_xml(response, "form list")
        root = etree.fromstring(response.content, _SAFE_PARSER)
        if root.tag != f"{{{FORM_LIST_NS}}}xforms":
            raise CollectError(f"form list: unexpected root {root.tag}")
        forms = []
        for node in root.findall(f"{{{FORM_LIST_NS}}}xform"):

            def text(name: str, node: etree._Element = node) -> str | None:
                found = node.find(f"{{{FORM_LIST_NS}}}{name}")
                return None if found is None or found.text is None else found.text.strip()

            form_id, name, url = text("formID"), text("name"), text("downloadUrl")
            if not (form_id and name and url):  # Collect rejects the whole list
                raise CollectError("form list: an entry lacks formID, name or downloadUrl")
            forms.append(
                ListedForm(form_id, name, text("version") or "", text("hash") or "", url, text("manifestUrl"))
            )
        return forms

    def manifest(self, url: str) -> list[MediaFile]:
        response = self.request("GET", url)
        self._check_openrosa_xml(response, "manifest")
        root = etree.fromstring(response.content, _SAFE_PARSER)
        files = []
        for node in root.findall(f"{{{MANIFEST_NS}}}mediaFile"):
            values = {
                name: (node.findtext(f"{{{MANIFEST_NS}}}{name}") or "").strip()
                for name in ("filename", "hash", "downloadUrl")
            }
            if not all(values.values()):  # one incomplete entry drops the whole manifest
                raise CollectError("manifest: an entry lacks filename, hash or downloadUrl")
            files.append(MediaFile(values["filename"], values["hash"], values["downloadUrl"]))
        return files

    def _download(self, url: str, expected_hash: str, what: str) -> bytes:
        response = self.request("GET", url)
        if response.status_code != 200:
            raise CollectError(f"{what}: HTTP {response.status_code}: {response_message(response.content)}")
        md5 = hashlib.md5(response.content, usedforsecurity=False).hexdigest()
        # Collect strips the first four characters ("md5:") without looking at them.
        if md5 != expected_hash[4:]:
            raise CollectError(f"{what}: md5 {md5} differs from the advertised {expected_hash}")
        return response.content

    def download_forms(self, only: Iterable[str] | None = None) -> dict[str, DownloadedForm]:
        """Get blank forms: the list, every manifest straight after it, then forms and media."""
        listed = [f for f in self.form_list() if only is None or f.form_id in set(only)]
        manifests = {f.form_id: self.manifest(f.manifest_url) if f.manifest_url else [] for f in listed}
        downloaded = {}
        for form in listed:
            xml = self._download(form.download_url, form.hash, f"form {form.form_id}")
            media = {
                m.filename: self._download(m.download_url, m.hash, f"media {m.filename}")
                for m in manifests[form.form_id]
            }
            downloaded[form.form_id] = DownloadedForm(form, xml, media)
        return downloaded

    # ---- submissions --------------------------------------------------------------------------------

    def head_submission(self) -> int:
        """HEAD before each submission: the size limit, or Collect's default when it gets none."""
        response = self.request("HEAD", f"{self.server_url}/submission")
        if response.status_code == 401:
            raise CollectError("submission: the server asks for credentials (401)")
        if response.status_code == 204:
            return int(response.headers.get("X-OpenRosa-Accept-Content-Length") or DEFAULT_LIMIT)
        if 200 <= response.status_code < 300:
            raise CollectError(f"submission: HEAD answered {response.status_code}: not an OpenRosa server")
        return DEFAULT_LIMIT

    def submit(self, instance: Instance, *, limit: int | None = None) -> SendResult:
        """HEAD, then as many POSTs as the size limit and 100 files per POST require."""
        advertised = self.head_submission()
        return self.post_batches(instance, limit or advertised)

    def post_batches(self, instance: Instance, limit: int) -> SendResult:
        batches = split_files(len(instance.xml), instance.files, limit)
        results = []
        for index, names in enumerate(batches):
            incomplete = index < len(batches) - 1
            body, content_type = multipart_body(
                instance.xml, [(n, instance.files[n]) for n in names], incomplete=incomplete
            )
            response = self.request(
                "POST",
                f"{self.server_url}/submission",
                data=body,
                headers={"Content-Type": content_type, "Content-Length": str(len(body))},
            )
            result = PostResult(
                response.status_code, response_message(response.content), incomplete, names, len(body)
            )
            results.append(result)
            if response.status_code not in (201, 202):  # 200 and 204 count as failure too
                break
        return SendResult(results)


def split_files(xml_size: int, files: Mapping[str, bytes], limit: int) -> list[list[str]]:
    """Collect's batches: the XML goes in each POST; files are added while the total stays within the
    limit and under 100 files; a batch always takes at least one file (a file over the limit goes alone)."""
    batches: list[list[str]] = []
    current: list[str] = []
    size = xml_size
    for name, data in files.items():
        if current and (size + len(data) > limit or len(current) >= MAX_FILES_PER_POST):
            batches.append(current)
            current, size = [], xml_size
        current.append(name)
        size += len(data)
    batches.append(current)
    return batches


def _content_type(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower()
    return {
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "png": "image/png",
        "m4a": "audio/mp4",
        "amr": "audio/amr",
        "mp4": "video/mp4",
        "csv": "text/csv",
        "enc": "application/octet-stream",
    }.get(ext, "application/octet-stream")


def multipart_body(
    xml: bytes,
    files: Iterable[tuple[str, bytes]],
    *,
    incomplete: bool = False,
    xml_name: str = "submission.xml",
) -> tuple[bytes, str]:
    """The multipart/form-data body Collect builds: XML first, each file a part named after it."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()

    def part(headers: str, data: bytes) -> None:
        out.write(f"--{boundary}\r\n{headers}\r\n\r\n".encode())
        out.write(data)
        out.write(b"\r\n")

    part(
        f'Content-Disposition: form-data; name="xml_submission_file"; filename="{xml_name}"\r\n'
        "Content-Type: text/xml",
        xml,
    )
    for name, data in files:
        part(
            f'Content-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
            f"Content-Type: {_content_type(name)}",
            data,
        )
    if incomplete:
        part('Content-Disposition: form-data; name="*isIncomplete*"', b"yes")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


# ---- filling forms --------------------------------------------------------------------------------------

_WORDS = ["Ҷамоат", "Хоруг", "вода", "border", "мактаб", "police", "бозор", "ёрдам", "village", "Рӯшон"]


@dataclass
class FormModel:
    """What filling a form needs from its XForm: the primary instance, binds, repeats, choices."""

    form_id: str
    version: str
    root_name: str
    primary: etree._Element
    binds: dict[str, etree._Element]
    repeats: set[str]
    choices: dict[str, list[str]]  # path -> choice values
    public_key: str | None


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _step(el: etree._Element) -> str:
    return f"{el.prefix}:{_local(el)}" if el.prefix else _local(el)


def _csv_values(media: Mapping[str, bytes], name: str) -> list[str]:
    data = media.get(name)
    if not data:
        return []
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    return [r.get("name") or next(iter(r.values()), "") for r in rows if r]


def read_form(xml: bytes, media: Mapping[str, bytes] | None = None) -> FormModel:
    media = media or {}
    root = etree.fromstring(xml, _SAFE_PARSER)
    model = root.find(f"{{{H}}}head/{{{XF}}}model")
    assert model is not None, "not an XForm"
    instances = model.findall(f"{{{XF}}}instance")
    primary = next(c for c in instances[0] if isinstance(c.tag, str))
    secondary: dict[str, list[str]] = {}
    for inst in instances[1:]:
        iid = inst.get("id") or ""
        src = inst.get("src") or ""
        if src.startswith("jr://file-csv/"):
            secondary[iid] = _csv_values(media, src.rsplit("/", 1)[-1])
        else:
            secondary[iid] = [
                (item.findtext(f"{{{XF}}}name") or item.findtext("name") or "").strip()
                for item in inst.iter()
                if isinstance(item.tag, str) and _local(item) == "item"
            ]
    binds = {b.get("nodeset"): b for b in model.iter(f"{{{XF}}}bind") if b.get("nodeset")}
    repeats: set[str] = set()
    choices: dict[str, list[str]] = {}
    body = root.find(f"{{{H}}}body")
    for el in body.iter() if body is not None else []:
        if not isinstance(el.tag, str):
            continue
        if _local(el) == "repeat" and el.get("nodeset"):
            repeats.add(el.get("nodeset"))
        if _local(el) in ("select1", "select") and el.get("ref"):
            values = [
                (v.text or "").strip()
                for item in el.findall(f"{{{XF}}}item")
                for v in item.findall(f"{{{XF}}}value")
            ]
            itemset = el.find(f"{{{XF}}}itemset")
            if itemset is not None and not values:
                nodeset = itemset.get("nodeset") or ""
                if nodeset.startswith("instance('"):
                    values = secondary.get(nodeset.split("'")[1], [])
            choices[el.get("ref")] = [v for v in values if v] or ["x"]
    submission = model.find(f"{{{XF}}}submission")
    return FormModel(
        form_id=primary.get("id") or "",
        version=primary.get("version") or "",
        root_name=_step(primary),
        primary=primary,
        binds=binds,
        repeats=repeats,
        choices=choices,
        public_key=submission.get("base64RsaPublicKey") if submission is not None else None,
    )


def _png(seed: int) -> bytes:
    """A small valid PNG (a few hundred bytes), different for each seed."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    width = height = 8
    rows = b"".join(b"\x00" + bytes((seed + x + y) % 256 for x in range(width * 3)) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _value(kind: str, path: str, form: FormModel, rng: random.Random, files: dict[str, bytes]) -> str:
    now = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=5))) + dt.timedelta(
        minutes=rng.randint(0, 10_000)
    )
    if path in form.choices:
        values = form.choices[path]
        if kind == "select":
            return " ".join(dict.fromkeys(rng.sample(values, min(2, len(values)))))
        return rng.choice(values)
    lat, lon = 37.0 + rng.random(), 68.0 + rng.random() * 3
    match kind:
        case "int" | "integer":
            return str(rng.randint(0, 90))
        case "decimal":
            return f"{rng.uniform(0, 100):.2f}"
        case "date":
            return now.date().isoformat()
        case "dateTime":
            return now.isoformat(timespec="milliseconds")
        case "time":
            return now.timetz().isoformat(timespec="milliseconds")
        case "geopoint":
            return f"{lat:.6f} {lon:.6f} 1200.0 5.0"
        case "geotrace":
            return f"{lat:.6f} {lon:.6f} 0 0;{lat + 0.01:.6f} {lon + 0.01:.6f} 0 0"
        case "geoshape":
            pts = [(lat, lon), (lat + 0.01, lon), (lat + 0.01, lon + 0.01), (lat, lon)]
            return ";".join(f"{a:.6f} {b:.6f} 0 0" for a, b in pts)
        case "binary":
            name = f"{path.rsplit('/', 1)[-1]}-{rng.randrange(10**8):08d}.png"
            files[name] = _png(rng.randrange(256))
            return name
        case "barcode":
            return str(rng.randrange(10**12))
        case "boolean":
            return "true"
        case _:
            return f"{rng.choice(_WORDS)} {rng.randint(1, 999)}"


def fill(
    form: FormModel,
    *,
    rng: random.Random | None = None,
    instance_id: str | None = None,
    deprecated_id: str | None = None,
    repeat_rows: int = 2,
) -> Instance:
    """A filled instance of ``form``: every field a value of its type, each repeat ``repeat_rows`` rows."""
    rng = rng or random.Random()
    instance_id = instance_id or f"uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    files: dict[str, bytes] = {}
    root = _copy_shell(form.primary)

    def build(template: etree._Element, out: etree._Element, path: str) -> None:
        seen_repeats: set[str] = set()
        for child in template:
            if not isinstance(child.tag, str):
                continue
            child_path = f"{path}/{_step(child)}"
            if child_path in form.repeats:
                if child_path in seen_repeats:  # pyxform writes a template and a first row: build once
                    continue
                seen_repeats.add(child_path)
                for _ in range(repeat_rows):
                    row = _copy_shell(child)
                    build(child, row, child_path)
                    out.append(row)
                continue
            node = _copy_shell(child)
            out.append(node)
            if any(isinstance(c.tag, str) for c in child):
                build(child, node, child_path)
            else:
                node.text = _leaf(child_path, child, form, rng, files, instance_id, deprecated_id)

    build(form.primary, root, f"/{form.root_name}")
    if deprecated_id and not any(_local(e) == "deprecatedID" for e in root.iter() if isinstance(e.tag, str)):
        meta = next((e for e in root if isinstance(e.tag, str) and _local(e) == "meta"), None)
        if meta is not None:
            etree.SubElement(
                meta, etree.QName(etree.QName(meta).namespace, "deprecatedID")
            ).text = deprecated_id
    xml = b"<?xml version='1.0' ?>" + etree.tostring(root, encoding="utf-8")
    return Instance(form.form_id, instance_id, xml, files)


def _copy_shell(el: etree._Element) -> etree._Element:
    attrs = {k: v for k, v in el.attrib.items() if k != f"{{{JR}}}template"}
    return etree.Element(el.tag, attrs, nsmap=el.nsmap)


def _leaf(
    path: str,
    template: etree._Element,
    form: FormModel,
    rng: random.Random,
    files: dict[str, bytes],
    instance_id: str,
    deprecated_id: str | None,
) -> str | None:
    name = _local(template)
    if path.endswith("/meta/instanceID") or path.endswith(":meta/orx:instanceID"):
        return instance_id
    if name == "deprecatedID":
        return deprecated_id
    bind = form.binds.get(path)
    if name == "audit" and "/meta/" in path:
        files["audit.csv"] = b"event,node,start,end\nform start,,1700000000000,\n"
        return "audit.csv"
    if bind is None:
        return template.text
    if (
        bind.get("readonly") == "true()"
        and bind.get("calculate") is None
        and bind.get("type") in (None, "string")
    ):
        return None  # a note
    kind = (bind.get("type") or "string").removeprefix("xsd:")
    if kind == "base64Binary":
        kind = "binary"
    preload = bind.get(f"{{{JR}}}preload")
    if preload == "property":
        return "collect:" + "a" * 16
    if bind.get("calculate") is not None and kind == "string":
        return f"calc {rng.randint(1, 99)}"
    return _value(kind, path, form, rng, files)


def edit(form: FormModel, original: Instance, *, rng: random.Random | None = None) -> Instance:
    """An edit of a sent instance: new answers, a new instanceID, deprecatedID = the old one."""
    edited = fill(form, rng=rng, deprecated_id=original.instance_id)
    return edited


# ---- encryption (ODK's scheme, PROTOCOL.md) -------------------------------------------------------------


def encrypt(form: FormModel, instance: Instance) -> Instance:
    """The envelope and ``.enc`` files Collect sends for a form with a ``base64RsaPublicKey``."""
    from cryptography.hazmat.primitives import hashes, padding, serialization
    from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    try:  # CFB lives among the "decrepit" modes since cryptography 47
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.modes import CFB

    assert form.public_key, "the form has no public key"
    public_key = serialization.load_der_public_key(base64.b64decode(form.public_key))
    oaep = rsa_padding.OAEP(mgf=rsa_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    key = os.urandom(32)
    encrypted_key = base64.b64encode(public_key.encrypt(key, oaep)).decode()  # type: ignore[union-attr]
    seed = bytearray(hashlib.md5(instance.instance_id.encode() + key, usedforsecurity=False).digest())
    plain = [*instance.files.items(), ("submission.xml", instance.xml)]
    encrypted: dict[str, bytes] = {}
    # Collect signs the version only when the form has one.
    signature_lines = [
        form.form_id,
        *([form.version] if form.version else []),
        encrypted_key,
        instance.instance_id,
    ]
    for index, (name, data) in enumerate(plain):
        seed[index % 16] = (seed[index % 16] + 1) % 256
        padder = padding.PKCS7(128).padder()
        cipher = Cipher(algorithms.AES(key), CFB(bytes(seed))).encryptor()
        encrypted[f"{name}.enc"] = cipher.update(padder.update(data) + padder.finalize()) + cipher.finalize()
        signature_lines.append(f"{name}::{hashlib.md5(data, usedforsecurity=False).hexdigest()}")
    digest = hashlib.md5(("\n".join(signature_lines) + "\n").encode(), usedforsecurity=False).digest()
    signature = base64.b64encode(public_key.encrypt(digest, oaep)).decode()  # type: ignore[union-attr]
    media = "".join(f"<media><file>{name}.enc</file></media>" for name, _ in plain[:-1])
    version = f' version="{form.version}"' if form.version else ""
    envelope = (
        f'<data xmlns="{ENCRYPTED_NS}" xmlns:orx="{ORX}" id="{form.form_id}"{version} encrypted="yes">'
        f"<base64EncryptedKey>{encrypted_key}</base64EncryptedKey>"
        f"<orx:meta><orx:instanceID>{instance.instance_id}</orx:instanceID></orx:meta>"
        f"{media}<encryptedXmlFile>submission.xml.enc</encryptedXmlFile>"
        f"<base64EncryptedElementSignature>{signature}</base64EncryptedElementSignature></data>"
    )
    return Instance(form.form_id, instance.instance_id, envelope.encode(), encrypted)


def prepare(form: FormModel, instance: Instance) -> Instance:
    """What Collect sends for a finalised instance: encrypted when the form has a public key."""
    return encrypt(form, instance) if form.public_key else instance
