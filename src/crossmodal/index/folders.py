"""The folders an index holds files in, as people see them: each indexed folder and its
sub-folders one level down, with file counts (the web page's folder filter), and where a file
lies as its indexed folder's name and the path under it (``gallery/2019/cat.jpg``), which tells
a person where it is without the server's full path.

A folder root is its own folder. A manifest (or a single file) added as a root names files
wherever they lie: its folder is the deepest one holding all of them, found from the root's
smallest and largest stored paths (the common prefix of a sorted set is that of its ends), so
no listing reads every path into Python. The sub-folders are counted in SQL over the stored
text form of the paths (:mod:`crossmodal.paths`), which maps a prefix to a prefix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from crossmodal.index.store import Store
from crossmodal.paths import from_text, printable

__all__ = ["Folder", "list_folders", "place_of"]


@dataclass(frozen=True)
class Folder:
    """A folder holding indexed files."""

    path: str  # absolute, as a search's folder filter takes it
    label: str  # for people: the indexed folder's name, then the path under it
    files: int  # indexed files in it, sub-folders included


def list_folders(store: Store) -> list[Folder]:
    """Every indexed folder, each followed by its sub-folders (one level down), by path.

    Roots over one folder (a folder and a manifest of files in it) are listed once; a root's
    folder inside another's is listed as its sub-folder, or not at all when deeper. Counts are
    of every indexed file under the folder, whatever root it came through.
    """
    tops = sorted(
        {
            _folder_of(str(root), str(lowest), str(highest))
            for root, lowest, highest in store.db.execute(
                "SELECT root, min(path), max(path) FROM files GROUP BY root"
            )
        }
    )
    folders: list[Folder] = []
    for top in tops:
        if any(top.startswith(other.rstrip(os.sep) + os.sep) for other in tops if other != top):
            continue
        name = os.path.basename(top) or top
        prefix = top.rstrip(os.sep) + os.sep
        (count,) = store.db.execute(
            "SELECT count(*) FROM files WHERE substr(path, 1, ?) = ?", (len(prefix), prefix)
        ).fetchone()
        folders.append(Folder(from_text(top), printable(from_text(name)), int(count)))
        for sub, files in _subfolders(store, prefix):
            label = printable(from_text(os.path.join(name, sub)))
            folders.append(Folder(from_text(prefix + sub), label, files))
    return folders


def _folder_of(root: str, lowest: str, highest: str) -> str:
    """The stored text of the folder holding a root's files (all three in stored form)."""
    if lowest.startswith(root.rstrip(os.sep) + os.sep):
        return root.rstrip(os.sep) or os.sep  # a folder root: every path lies under it
    if lowest == highest:
        return os.path.dirname(lowest)  # one file
    common = os.path.commonprefix([lowest, highest])
    return common[: common.rfind(os.sep)] or os.sep  # cut back to a whole folder name


def _subfolders(store: Store, prefix: str) -> list[tuple[str, int]]:
    """``(name, files)`` of the folders directly inside the folder ``prefix`` (ending in a
    separator) that hold indexed files, at any depth."""
    rows = store.db.execute(
        "SELECT substr(rest, 1, instr(rest, ?) - 1) AS sub, count(*) FROM "
        "(SELECT substr(path, ?) AS rest FROM files WHERE substr(path, 1, ?) = ?) "
        "WHERE instr(rest, ?) > 0 GROUP BY sub ORDER BY sub",
        (os.sep, len(prefix) + 1, len(prefix), prefix, os.sep),
    )
    return [(str(sub), int(count)) for sub, count in rows]


def place_of(path: str, root: str) -> str:
    """Where ``path`` lies, for people: its indexed folder's name and the path under it.

    ``root`` is the folder, manifest or file it was indexed through; a file a manifest names
    outside the manifest's folder is shown with its own folder's name.
    """
    base = root if path.startswith(root.rstrip(os.sep) + os.sep) else os.path.dirname(root)
    if not path.startswith(base.rstrip(os.sep) + os.sep):
        base = os.path.dirname(path)
    return printable(os.path.relpath(path, os.path.dirname(base)))
