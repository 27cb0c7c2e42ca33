"""Content-addressed file storage under the data home.

A file's bytes are stored once at ``<root>/<sha[:2]>/<sha256>``; the name a seller
uploaded is only metadata.  Uploads are streamed to a temporary file in the same folder
while their sha256 is computed and their size capped, then atomically renamed into place,
so a failed or oversized upload never leaves a partial blob behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from databazaar.core.errors import InvalidInput, NotFound, PayloadTooLarge

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 16


@dataclass(frozen=True)
class StagedFile:
    """An upload written to a temporary file, not yet committed to the store."""

    path: Path
    sha256: str
    size_bytes: int


class BlobStore:
    """Files addressed by their sha256 under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / ".staging"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        """Where the blob with this digest lives (the digest is validated first)."""
        if not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256):
            raise InvalidInput(f"invalid sha256 digest {sha256!r}")
        return self.root / sha256[:2] / sha256

    def stage(self, stream: BinaryIO, max_bytes: int) -> StagedFile:
        """Copy ``stream`` to a temporary file, hashing it; refuse more than ``max_bytes``.

        Raises :class:`PayloadTooLarge` (and deletes the temporary file) when the stream
        is longer than ``max_bytes`` and :class:`InvalidInput` when it is empty.
        """
        digest = hashlib.sha256()
        size = 0
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="up-")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(
                            f"upload is larger than the limit of {max_bytes} bytes",
                            hint="split the data or raise DATABAZAAR_MAX_UPLOAD_BYTES",
                        )
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise InvalidInput("the uploaded file is empty")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedFile(path=path, sha256=digest.hexdigest(), size_bytes=size)

    def commit(self, staged: StagedFile) -> Path:
        """Move a staged file to its content address (a no-op if already stored)."""
        dest = self.path_for(staged.sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            staged.path.unlink(missing_ok=True)
        else:
            os.replace(staged.path, dest)
        return dest

    def discard(self, staged: StagedFile) -> None:
        """Delete a staged file that will not be stored."""
        staged.path.unlink(missing_ok=True)

    def open(self, sha256: str) -> BinaryIO:
        """Open a stored blob for reading, verifying it exists."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise NotFound(f"blob {sha256} is missing from the store")
        return path.open("rb")

    def verify(self, sha256: str) -> bool:
        """Whether the stored bytes still hash to ``sha256``."""
        digest = hashlib.sha256()
        with self.open(sha256) as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest() == sha256
