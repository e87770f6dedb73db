"""Runs one XLSForm → XForm conversion with pyxform, in a process of its own.

Started by :mod:`server.forms.convert` as ``python convert_worker.py --file-type .xlsx [--fallback-id ID]
[--no-validate]``: the spreadsheet comes on standard input and one JSON object goes to standard output,
either ``{"xform": ..., "warnings": [...], "itemsets": ...}`` or ``{"error": {"message", "sheet", "row"}}``.
A process of its own keeps a slow or huge spreadsheet from holding up the web server's threads, lets the
caller kill it at the time limit, and gives its memory back when it ends.

This module imports nothing from the server package (it runs as a plain script, so that each conversion
starts quickly): only the standard library and pyxform.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import sys
import warnings
from typing import Any

SUPPORTED_FILE_TYPES = (".xlsx", ".xlsm", ".xls", ".csv", ".md")
_ROW = re.compile(r"\[row\s*:\s*(\d+)\]")
_SHEET = re.compile(r"(?:On|on|in|In) the '([^']+)' sheet|sheet(?: named)?:? '([^']+)'")
_VALIDATE_NOISE = re.compile(r"The following files failed validation:.*", re.DOTALL)


def describe_error(exc: BaseException) -> dict[str, Any]:
    """A plain message (no traceback) with the sheet and row pyxform names, when it names them."""
    from pyxform.validators.odk_validate import ODKValidateError

    text = str(exc).strip() or exc.__class__.__name__
    if isinstance(exc, ODKValidateError):
        # ODK Validate ends with the name of a temporary file and "Result: Invalid": noise for a person.
        text = _VALIDATE_NOISE.sub("", text).replace("ODK Validate Errors:", "").strip()
        text = "ODK Validate refused the form: " + " ".join(line.strip(" >:") for line in text.splitlines())
    message = " ".join(text.split())
    row_match = _ROW.search(message)
    sheet_match = _SHEET.search(message)
    sheet = next((g for g in sheet_match.groups() if g), None) if sheet_match else None
    if row_match and sheet is None:
        # pyxform numbers rows without naming the sheet only while it reads the survey sheet.
        sheet = "survey"
    return {"message": message, "sheet": sheet, "row": int(row_match.group(1)) if row_match else None}


def convert_bytes(
    data: bytes, file_type: str, fallback_id: str | None = None, validate: bool = True
) -> dict[str, Any]:
    """Convert in this process. Never raises: a refusal comes back as ``{"error": {...}}``."""
    from pyxform.errors import PyXFormError
    from pyxform.validators.odk_validate import ODKValidateError
    from pyxform.xls2json_backends import Definition, SupportedFileTypes
    from pyxform.xls2xform import convert

    if file_type not in SUPPORTED_FILE_TYPES:
        return {
            "error": {"message": f"Unsupported XLSForm file type {file_type!r}.", "sheet": None, "row": None}
        }
    notes: list[str] = []
    if validate and shutil.which("java") is None:
        validate = False
        notes.append("ODK Validate was not run: Java is not installed on the server.")
    definition = Definition(
        data=io.BytesIO(data), file_type=SupportedFileTypes(file_type), file_path_stem=fallback_id
    )
    try:
        # pyxform and openpyxl talk on stdout/stderr and through warnings; only our JSON may reach stdout.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            result = convert(definition, warnings=notes, validate=validate, file_type=file_type)
    except (PyXFormError, ODKValidateError) as exc:
        return {"error": describe_error(exc)}
    except Exception as exc:  # a spreadsheet pyxform trips over is still the spreadsheet's problem
        described = describe_error(exc)
        described["message"] = (
            f"The XLSForm could not be converted (pyxform stopped on {exc.__class__.__name__}: "
            f"{described['message']}); check that every list name, sheet and column it uses exists."
        )
        return {"error": described}
    return {"xform": result.xform, "warnings": list(dict.fromkeys(notes)), "itemsets": result.itemsets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-type", required=True, choices=SUPPORTED_FILE_TYPES)
    parser.add_argument("--fallback-id", default=None)
    parser.add_argument("--no-validate", action="store_true")
    args = parser.parse_args(argv)
    data = sys.stdin.buffer.read()
    real_stdout = sys.stdout
    result = convert_bytes(data, args.file_type, args.fallback_id, validate=not args.no_validate)
    real_stdout.write(json.dumps(result))
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
