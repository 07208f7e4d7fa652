"""The backups folder of /restore: which manifests there are, and the one a name means.

Only a plain file name (no ``/``, no ``..``, not absolute, not hidden) whose real
path — symlinks resolved — is directly inside the configured folder."""

from __future__ import annotations

from pathlib import Path

from bot.domain.incident import InvalidInput

BACKUP_SUFFIXES = ("", ".yaml", ".yml", ".json")
MAX_BACKUP_NAME = 200  # file systems refuse names over 255 bytes


class Backups:
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def backups_dir(self) -> Path:
        return Path(self.folder).expanduser().resolve()

    def backups(self) -> list[str]:
        """Backup manifests in the configured folder (names as /restore takes them)."""
        folder = self.backups_dir()
        try:
            found = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        except OSError:
            return []
        return sorted(p.name for p in found if p.resolve().parent == folder)

    def backup_path(self, name: str) -> Path:
        """The manifest ``name`` names inside the backups folder, or InvalidInput.

        Only a plain file name (no ``/``, no ``..``, not absolute, not hidden) whose real path
        — symlinks resolved — is directly inside the folder."""
        if (
            not name
            or name.startswith((".", "~"))
            or any(c in name for c in "/\\\x00")
            or Path(name).is_absolute()
        ):
            raise InvalidInput(f"{name!r} is not a backup name (a file name in the backups folder)")
        if len(name) > MAX_BACKUP_NAME:
            raise InvalidInput(
                f"a backup name has at most {MAX_BACKUP_NAME} characters, not {len(name)}"
            )
        folder = self.backups_dir()
        for suffix in BACKUP_SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            try:
                if not (candidate.is_symlink() or candidate.exists()):
                    continue
                real = candidate.resolve()
            except OSError as exc:  # a name the file system refuses (too long, ...)
                raise InvalidInput(
                    f"{name[:40]!r} is not a usable backup name: {exc.strerror}"
                ) from None
            if real.parent != folder or not real.is_file():
                raise InvalidInput(f"backup {name!r} points outside the backups folder")
            return real
        known = self.backups()
        listing = ", ".join(known[:20]) if known else "none"
        raise InvalidInput(f"there is no backup {name!r} (available: {listing})")
