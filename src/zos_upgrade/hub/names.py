"""Repository and flist names: validated before any of them touches a file system path or a URL.

The same rules serve the server (every path parameter) and the client (every fqdn it is given), so
a name one side accepts the other accepts too.
"""

from __future__ import annotations

from zos_upgrade.hub.models import InvalidName

__all__ = [
    "ARCHIVE_SUFFIX", "FLIST_SUFFIXES", "MAX_NAME_BYTES", "flist_filename", "split_fqdn", "validate_name",
]

# one path component on Linux file systems; a 10 KB name is refused long before open() sees it
MAX_NAME_BYTES = 255
FLIST_SUFFIXES = (".flist", ".fl")
# what the real 0-hub's /api/flist/me/upload takes (its `allowed-extensions`): a tree it makes an flist of
ARCHIVE_SUFFIX = ".tar.gz"


def validate_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it can name one entry inside one folder, else raise :class:`InvalidName`.

    Refused: empty, longer than 255 bytes, ``/`` or ``\\``, NUL or any control character, ``..``
    anywhere, a leading ``.`` (hidden names are the hub's own: tag folders, temp files), and ``%``
    (a name that still holds percent escapes after the URL was decoded is a double-encoding trick
    such as ``%2e%2e``).
    """
    if not isinstance(value, str) or not value:
        raise InvalidName(f"{what} is empty (expected 1 to {MAX_NAME_BYTES} bytes)")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise InvalidName(f"{what} is {size} bytes long (at most {MAX_NAME_BYTES} allowed)")
    shown = value if len(value) <= 80 else value[:77] + "..."
    if "/" in value or "\\" in value:
        raise InvalidName(f"{what} {shown!r} contains a path separator (expected a single name)")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise InvalidName(f"{what} {shown!r} contains a NUL or control character")
    if ".." in value:
        raise InvalidName(f"{what} {shown!r} contains '..'")
    if value.startswith("."):
        raise InvalidName(f"{what} {shown!r} starts with '.' (hidden names are reserved)")
    if "%" in value:
        raise InvalidName(f"{what} {shown!r} contains '%' (percent escapes are decoded once, not twice)")
    return value


def flist_filename(name: str) -> str:
    """The stored file name of an flist: the real hub appends ``.flist`` to a name without extension."""
    validate_name(name, "flist name")
    if name.endswith(FLIST_SUFFIXES):
        return name
    filename = name + ".flist"
    return validate_name(filename, "flist name")


def split_fqdn(fqdn: str) -> tuple[str, str]:
    """``"repo/name"`` -> ``("repo", "name")``, both validated."""
    if not isinstance(fqdn, str) or fqdn.count("/") != 1:
        raise InvalidName(f"flist {fqdn!r} is not of the form 'repo/name'")
    repo, name = fqdn.split("/")
    return validate_name(repo, "repository"), validate_name(name, "flist name")
