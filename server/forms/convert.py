"""XLSForm → XForm with pyxform, in a separate process bounded by ``conversion_timeout_seconds``.

The web server calls :func:`convert_xlsform` from a request thread: the thread waits on a child process
(``convert_worker.py``), so other requests go on being served while a large form converts, and a form
that takes too long is killed with everything it started (ODK Validate runs Java) and refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from server import errors
from server.forms.convert_worker import SUPPORTED_FILE_TYPES

WORKER = Path(__file__).with_name("convert_worker.py")

# Content types of an XLSForm upload (ODK Central accepts the first two; csv/md are pyxform's text forms).
XLSFORM_CONTENT_TYPES = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.ms-excel.sheet.macroenabled.12": ".xlsm",
    "text/csv": ".csv",
    "text/markdown": ".md",
}
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Conversion:
    xform: str
    warnings: tuple[str, ...]
    # pyxform writes choices of `select_one_external` questions to an itemsets.csv media file.
    itemsets_csv: str | None


def file_type_of(filename: str) -> str | None:
    """The pyxform file type (".xlsx"...) of a file name, or None when it is not an XLSForm."""
    suffix = Path(filename).suffix.lower()
    return suffix if suffix in SUPPORTED_FILE_TYPES else None


def fallback_form_id(name: str | None) -> str | None:
    """A form id from a file name's stem or Central's ``X-XlsForm-FormId-Fallback`` header, used when
    the settings sheet names none. File names carry spaces and odd characters that make awkward URLs:
    keep letters, digits and ``._-``."""
    if not name:
        return None
    cleaned = _UNSAFE_ID_CHARS.sub("_", name).strip("._-")
    return cleaned[:200] or None


def convert_xlsform(
    data: bytes,
    file_type: str,
    *,
    fallback_id: str | None,
    timeout: float,
    validate: bool = True,
) -> Conversion:
    """Convert in a child process; a refusal or a timeout raises an ``invalid_form`` Problem."""
    if file_type not in SUPPORTED_FILE_TYPES:
        raise errors.invalid_form(
            f"Unsupported XLSForm file type {file_type!r}: use one of {', '.join(SUPPORTED_FILE_TYPES)}."
        )
    if not data:
        raise errors.invalid_form("The XLSForm is empty.")
    command = [sys.executable, str(WORKER), "--file-type", file_type]
    if fallback_id:
        command.append(f"--fallback-id={fallback_id}")  # one argument, even for an id starting with "-"
    if not validate:
        command.append("--no-validate")
    # A session of its own, so that a timeout kills the worker's children (Java) too.
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise errors.invalid_form(
            f"Converting the XLSForm took longer than {timeout:g} seconds and was stopped. "
            "Split the form or ask the operator to raise SARHAD_CONVERSION_TIMEOUT_SECONDS.",
            timeout_seconds=timeout,
        ) from None
    try:
        result = json.loads(out)
    except ValueError:
        # The worker died (killed, out of memory) before it could answer.
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise errors.invalid_form(
            f"The XLSForm could not be converted (the converter stopped: {tail[0][:300]})."
        ) from None
    if "error" in result:
        problem = result["error"]
        where = {key: problem[key] for key in ("sheet", "row") if problem.get(key) is not None}
        raise errors.invalid_form(problem["message"], **where)
    return Conversion(result["xform"], tuple(result["warnings"]), result["itemsets"])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # Windows (a hub laptop) has no process groups: only the worker itself is stopped
            proc.kill()
    proc.communicate()
