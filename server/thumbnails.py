"""Small previews of photos, for the console's pages over slow links.

A thumbnail is a WebP at most ``SIZE`` pixels wide or high (a few KB where a phone photo weighs several
MB), made by Pillow the first time it is asked for and kept under ``SARHAD_DATA_DIR/thumbnails`` by the
sha256 of the photo: the same photo in two submissions is made once, and a cached file is never stale
(the bytes it was made from never change). The cache can be deleted at any time.

Who may see a thumbnail is not decided here: the console checks it as for the photo itself.
"""

from __future__ import annotations

import mimetypes
import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

SIZE = 240
QUALITY = 60
# A photo from a tablet is at most a few tens of megapixels; anything far larger is refused unread
# (Pillow stops at this count instead of filling the memory of a hub's laptop).
MAX_PIXELS = 80_000_000
MIMETYPE = "image/webp"


def is_image(name: str) -> bool:
    kind = mimetypes.guess_type(name)[0] or ""
    return kind.startswith("image/") and kind != "image/svg+xml"  # SVG is a document, not a photo


def cache_path(data_dir: Path, sha256: str) -> Path:
    return data_dir / "thumbnails" / sha256[:2] / f"{sha256}.webp"


def thumbnail(data_dir: Path, sha256: str, source: Path) -> Path | None:
    """The cached thumbnail of the photo stored at ``source`` (made now if need be), or None when the
    file is not an image Pillow can read."""
    target = cache_path(data_dir, sha256)
    if target.exists():
        return target
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(source) as image:
            small = ImageOps.exif_transpose(image)  # as the camera held it, not as the sensor lies
            small.thumbnail((SIZE, SIZE))
            if small.mode not in ("RGB", "RGBA"):
                small = small.convert("RGBA" if "A" in small.getbands() else "RGB")
            target.parent.mkdir(parents=True, exist_ok=True)
            # Written aside and renamed, so that a reader never sees half a file.
            fd, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    small.save(out, "WEBP", quality=QUALITY, method=4)
                os.replace(temporary, target)
            finally:
                Path(temporary).unlink(missing_ok=True)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        return None
    return target
