"""Where things are in a hub's storage folder, and which links may be followed (SPEC 6).

Layout: ``<root>/<repo>/<name>.flist|.fl`` files; a symlink flist is a filesystem symlink in the
repo folder (``latest.flist -> app:1.2.3.flist`` or cross-repo ``../other/x.flist``); a tag is a
folder ``.tag-<tag>/`` of symlinks; a taglink an extension-less symlink to ``../<repo>/.tag-<tag>``.

Every name is validated (:mod:`zos_upgrade.hub.names`) before it becomes a path, and a symlink is
only ever followed when the file it resolves to lies inside the root: anything else is "not found".
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from zos_upgrade.hub.models import HubError
from zos_upgrade.hub.names import validate_name

__all__ = ["TAG_PREFIX", "Conflict", "FileChanged", "NotInStorage", "StorageLayout", "clean_symlink"]

log = logging.getLogger(__name__)

TAG_PREFIX = ".tag-"


class NotInStorage(HubError):
    """A repository, flist or tag does not exist (or resolves outside the root): HTTP 404."""


class FileChanged(HubError):
    """A file was replaced between resolving and reading it: resolve again (HTTP 503 if it keeps on)."""


class Conflict(HubError):
    """A write would destroy something it must not (a regular flist where a link goes): HTTP 409."""


def clean_symlink(target: str) -> str:
    """How the real hub shows a link target in listings: ``../`` removed, ``.tag-`` -> ``tags/``."""
    return target.replace("../", "").replace(TAG_PREFIX, "tags/")


class StorageLayout:
    """One storage root: names to folders, the containment rule, and a count of the stats it makes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise HubError(f"hub root {root} is not a directory")
        self.stat_calls = 0  # how many stat()s hit the disk: the listing cache is tested by it

    def lstat(self, path: Path | str) -> os.stat_result:
        self.stat_calls += 1
        return os.lstat(path)

    def stat(self, path: Path | str) -> os.stat_result:
        self.stat_calls += 1
        return os.stat(path)

    def inside(self, path: Path | str, *, resolved: bool = False) -> bool:
        """Whether ``path`` (resolved here unless ``resolved``) is the root or lies below it."""
        real = str(path) if resolved else os.path.realpath(path)
        return real == str(self.root) or real.startswith(str(self.root) + os.sep)

    def repo_dir(self, repo: str) -> Path:
        """The folder of ``repo``; raises :class:`NotInStorage` ("user not found")."""
        validate_name(repo, "repository")
        path = self.root / repo
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise NotInStorage("user not found") from None
        # a real folder named by a validated name is inside the root; a symlinked one must resolve there
        if stat.S_ISDIR(mode) or (stat.S_ISLNK(mode) and path.is_dir() and self.inside(path)):
            return path
        raise NotInStorage("user not found")

    def tag_dir(self, repo: str, tag: str) -> Path:
        """The folder of ``repo``'s tag ``tag``; a symlink in its place is "not found", never followed."""
        validate_name(tag, "tag")
        path = self.repo_dir(repo) / (TAG_PREFIX + tag)
        if not path.is_dir() or path.is_symlink():
            raise NotInStorage(f"tag {tag!r} not found in repository {repo!r}")
        return path

    def follow(self, link: Path) -> tuple[str, Path | None]:
        """Read a link and resolve it; ``None`` when it dangles or leaves the root."""
        target = os.readlink(link)
        # resolve the text we read, not the link again: it may have been moved in between
        real = Path(os.path.realpath(link.parent / target))
        if not self.inside(real, resolved=True):
            log.warning(
                "symlink leaves the hub root, not followed", extra={"link": str(link), "target": target}
            )
            return target, None
        if not real.exists():
            return target, None
        return target, real
