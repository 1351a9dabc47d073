"""``crossmodal demo`` end to end, on a warm cache of small fake emoji packages (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossmodal.cli.main import main
from crossmodal.errors import StaleWeightsError
from crossmodal.index.store import Store
from crossmodal.search.demo import run_demo
from crossmodal.search.index import Index
from tests.test_emoji_data import cache  # noqa: F401  (the fixture: fake source packages)


@pytest.mark.slow
def test_demo_builds_indexes_searches_and_writes_the_page(
    tmp_path: Path,
    cache: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--cache-dir", str(cache), "--offline", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "indexed 5 OpenMoji drawings" in printed  # the fake OpenMoji emoji with labels
    assert "'red heart'  (looking for 'red heart': rank" in printed
    assert "queries found their emoji in the top 10" in printed
    assert "re-ranking the top 20 with the shipped re-ranker:" in printed
    page = (out / "search.html").read_text(encoding="utf-8")
    assert page.count("<section>") == 8 and "data:image/jpeg;base64," in page
    # the second run reuses the gallery and the index: nothing embedded again
    result = run_demo(out, queries=[("rocket", "rocket"), ("红心", "red heart")], k=5)
    assert result.gallery == 5
    for q in result.queries:
        names = [(h.caption or "").split(" / ")[0] for h in q.hits]
        assert len(q.hits) == 5 and q.target in names
        assert q.rank == names.index(q.target) + 1  # the reported rank is the real one
        assert q.reranked is not None  # emoji-mini ships a re-ranker: the same 5, re-scored
        assert {h.path for h in q.reranked} == {h.path for h in q.hits}
        assert all(h.rerank is not None for h in q.reranked)
        again = [(h.caption or "").split(" / ")[0] for h in q.reranked]
        assert q.reranked_rank == again.index(q.target) + 1
    # a new release's bundled weights: the demo's own index is rebuilt, not an error

    with Store(out / "index", create=False) as store:
        store.set_meta("weights", "1:an-earlier-release")
    with pytest.raises(StaleWeightsError), Index.open(out / "index") as index:
        index.search("rocket", k=1)  # a user's index is never thrown away
    assert run_demo(out, queries=[("rocket", "rocket")], k=5).queries[0].rank is not None
