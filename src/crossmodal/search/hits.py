"""Vector hits → file hits: every indexed file with a hit's content, passing the filter.

One stored vector stands for all files of the same content (copies share it); a search
asks the vector index for vectors, and this turns each into the files behind it, with
their metadata, relevance and weak flag.
"""

from __future__ import annotations

from crossmodal.index.store import Store
from crossmodal.search.results import Hit, SearchFilter

__all__ = ["expand_hits"]


def expand_hits(
    store: Store,
    pairs: list[tuple[float, int]],
    where: SearchFilter,
    relevance_of: dict[int, float],
    weak_below: float,
) -> list[Hit]:
    """Vector hits → file hits (every file with that content, passing the filter)."""
    info = store.vectors_for(i for _, i in pairs)
    files = store.files_with_hashes(h for h, _ in info.values())
    sql, params = where.sql()
    file_ids = [fid for entries in files.values() for fid, _ in entries]
    allowed_files = None
    if not where.empty and file_ids:
        allowed_files = set(
            store.db.execute(
                f"SELECT f.id FROM files f WHERE ({sql}) AND f.id IN "
                f"({','.join('?' * len(file_ids))})",
                (*params, *file_ids),
            ).fetchall()
        )
        allowed_files = {row[0] for row in allowed_files}
    rows = store.file_rows(file_ids)
    hits: list[Hit] = []
    for score, vid in pairs:
        digest, frame_time = info.get(vid, ("", None))
        for fid, _ in files.get(digest, []):
            if allowed_files is not None and fid not in allowed_files:
                continue
            _, path, _, kind, size, mtime_ns, _, caption = rows[fid]
            relevance = relevance_of.get(vid, 0.0)  # its vector went meanwhile
            hits.append(
                Hit(
                    path=str(path),
                    score=score,
                    relevance=relevance,
                    weak=relevance < weak_below,
                    kind=str(kind),
                    time=frame_time,
                    caption=None if caption is None else str(caption),
                    size=int(str(size)),
                    mtime=int(str(mtime_ns)) / 1e9,
                )
            )
    return hits
