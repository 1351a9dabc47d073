"""ClipBpeTokenizer: ids identical to OpenCLIP's SimpleTokenizer, masks, decode, context length.

The oracle is OpenCLIP's own ``SimpleTokenizer`` (what ``open_clip.get_tokenizer("ViT-B-32")``
and ``open_clip.tokenize`` use). ``import open_clip`` pulls in torchvision and timm (several
seconds), so the fast tests load just ``open_clip/tokenizer.py`` from the installed package;
one ``slow`` test goes through the public ``open_clip`` entry points.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from crossmodal.text.base import TokenBatch, Tokenizer
from crossmodal.text.clip_bpe import ClipBpeTokenizer

SOT, EOT = 49406, 49407
LONG_TEXT = "a photo of a cat sitting on a red mat next to a dog, " * 20

TEXTS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "Hello, world! How are you?",
    "Numbers: 3.14159, 2024 and 1,000,000.",
    "don't stop, it's fine; we're here, they've gone, I'm sure you'll see, he'd know",
    "Tom &amp; Jerry &lt;3 &amp;amp; friends",
    "café naïve résumé Zürich façade",
    "emoji 🐱🚗🎉 and a family 👨‍👩‍👧 and a flag 🇯🇵",
    "   lots   of\twhite\n\nspace   ",
    "一只猫坐在垫子上",
    "红色的汽车",
    "你好，世界！",
    "猫がマットの上に座っている",
    "東京タワーの写真です。",
    "a photo of 一只猫 on the red 汽车",
    "",
    LONG_TEXT,
    "“curly quotes” and ‘single’ — dashes – too…",
    "cafÃ© mojibake that ftfy repairs",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３",
    "한국어 문장입니다",
    "Ελληνικά και русский текст",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "snake_case, kebab-case, CamelCase, URL https://example.com/a?b=c#d",
    "!!! ??? ... --- @#$%^&*()",
    "<start_of_text> literal special tokens <end_of_text>",
    "tab\tseparated\x00control\x07chars\x1b",
    "hello!\"! (a real '!' token, id 0)",
]


def _load_openclip_tokenizer_module() -> ModuleType:
    """OpenCLIP's ``tokenizer`` module, without importing the whole ``open_clip`` package."""
    if "open_clip" in sys.modules:  # already paid for by another test: use it as is
        return sys.modules["open_clip"].tokenizer  # type: ignore[no-any-return]
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("open_clip is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("_open_clip_tokenizer_oracle", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def oracle() -> Any:
    """OpenCLIP's ``SimpleTokenizer`` with the defaults of ``get_tokenizer("ViT-B-32")``."""
    return _load_openclip_tokenizer_module().SimpleTokenizer()


@pytest.fixture(scope="module")
def tok() -> ClipBpeTokenizer:
    return ClipBpeTokenizer()


def _oracle_ids(oracle: Any, texts: list[str], context_length: int = 77) -> np.ndarray:
    return oracle(texts, context_length=context_length).numpy()  # type: ignore[no-any-return]


def test_text_list_covers_the_required_cases() -> None:
    assert len(TEXTS) >= 25
    assert "" in TEXTS and LONG_TEXT in TEXTS


def test_ids_match_openclip(tok: ClipBpeTokenizer, oracle: Any) -> None:
    batch = tok(TEXTS)
    expected = _oracle_ids(oracle, TEXTS)
    assert batch.ids.dtype == np.int64 and batch.ids.shape == (len(TEXTS), 77)
    for text, got, want in zip(TEXTS, batch.ids, expected, strict=True):
        assert got.tolist() == want.tolist(), text


def test_encode_matches_openclip_rows(tok: ClipBpeTokenizer, oracle: Any) -> None:
    expected = _oracle_ids(oracle, TEXTS)
    for text, want in zip(TEXTS, expected, strict=True):
        ids = tok.encode(text)
        assert ids[0] == SOT and ids[-1] == EOT and len(ids) <= 77
        assert ids == want[: len(ids)].tolist(), text
        assert not want[len(ids) :].any(), text


def test_empty_text_is_start_and_end(tok: ClipBpeTokenizer) -> None:
    assert tok.encode("") == [SOT, EOT]
    assert tok.encode("   \n\t ") == [SOT, EOT]


def test_long_text_is_truncated_with_end_token_last(tok: ClipBpeTokenizer, oracle: Any) -> None:
    ids = tok.encode(LONG_TEXT)
    assert len(ids) == 77 and ids[0] == SOT and ids[-1] == EOT
    assert EOT not in ids[:-1]
    row = tok([LONG_TEXT]).ids[0]
    assert row[-1] == EOT and row.tolist() == ids
    assert row.tolist() == _oracle_ids(oracle, [LONG_TEXT])[0].tolist()


def test_attention_mask_marks_real_tokens(tok: ClipBpeTokenizer) -> None:
    texts = [t for t in TEXTS if 0 not in tok.encode(t)]
    assert len(texts) >= 25
    batch = tok(texts)
    assert batch.attention_mask.dtype == np.int64
    np.testing.assert_array_equal(batch.attention_mask, (batch.ids != 0).astype(np.int64))
    lengths = batch.attention_mask.sum(axis=1)
    assert lengths.tolist() == [len(tok.encode(t)) for t in texts]


def test_attention_mask_counts_a_real_id_zero(tok: ClipBpeTokenizer) -> None:
    ids = tok.encode('!"!')  # "!" then '"!</w>': the bare "!" symbol is id 0, the pad id
    assert 0 in ids
    batch = tok(['!"!'])
    assert batch.attention_mask[0].sum() == len(ids)
    assert batch.attention_mask[0, : len(ids)].all()


@pytest.mark.parametrize(
    "text",
    ["a photo of a cat", "the quick brown fox jumps over the lazy dog", "hello", ""],
)
def test_decode_round_trips_lowercase_ascii(tok: ClipBpeTokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode(tok([text]).ids[0]) == text  # padded row: stops at the end token


def test_decode_keeps_special_tokens_on_request(tok: ClipBpeTokenizer, oracle: Any) -> None:
    ids = tok.encode("a Photo, of 2 cats!")
    assert tok.decode(ids) == "a photo , of 2 cats !"
    assert tok.decode(ids, skip_special_tokens=False) == oracle.decode(ids)


def test_decode_unicode(tok: ClipBpeTokenizer) -> None:
    assert tok.decode(tok.encode("一只猫坐在垫子上")) == "一只猫坐在垫子上"
    assert tok.decode(tok.encode("café")) == "café"


@pytest.mark.parametrize("context_length", [16, 5, 2])
def test_custom_context_length_matches_openclip(oracle: Any, context_length: int) -> None:
    short = ClipBpeTokenizer(context_length=context_length)
    batch = short(TEXTS)
    assert short.context_length == context_length
    assert batch.ids.shape == batch.attention_mask.shape == (len(TEXTS), context_length)
    np.testing.assert_array_equal(batch.ids, _oracle_ids(oracle, TEXTS, context_length))
    for text in TEXTS:
        ids = short.encode(text)
        assert len(ids) <= context_length and ids[-1] == EOT


def test_bad_context_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="context_length"):
        ClipBpeTokenizer(context_length=1)


def test_special_ids_vocab_and_protocol(tok: ClipBpeTokenizer) -> None:
    assert isinstance(tok, Tokenizer)
    assert tok.vocab_size == 49408
    assert (tok.sot_token_id, tok.eot_token_id, tok.pad_token_id) == (SOT, EOT, 0)
    assert tok.context_length == 77
    assert "49408" in repr(tok)


def test_call_accepts_a_bare_string_and_an_empty_list(tok: ClipBpeTokenizer) -> None:
    one = tok("a photo of a cat")
    assert isinstance(one, TokenBatch) and one.ids.shape == (1, 77)
    assert one.ids[0].tolist() == tok(["a photo of a cat"]).ids[0].tolist()
    empty = tok([])
    assert empty.ids.shape == empty.attention_mask.shape == (0, 77)


def test_bounded_word_cache_gives_the_same_ids(tok: ClipBpeTokenizer) -> None:
    small = ClipBpeTokenizer()
    small._cache_size = 3  # evict all the time
    for text in [*TEXTS, *TEXTS]:
        assert small.encode(text) == tok.encode(text), text
    assert len(small._cache) <= 3


def test_explicit_vocab_path_gz_and_plain(tmp_path: Path, tok: ClipBpeTokenizer) -> None:
    import gzip
    import importlib.resources

    packaged = importlib.resources.files("crossmodal.text").joinpath("bpe_simple_vocab_16e6.txt.gz")
    gz = tmp_path / "vocab.txt.gz"
    gz.write_bytes(packaged.read_bytes())
    plain = tmp_path / "vocab.txt"
    plain.write_bytes(gzip.decompress(packaged.read_bytes()))
    text = "a photo of 一只猫, don't panic!"
    for path in (gz, str(plain)):
        assert ClipBpeTokenizer(vocab_path=path).encode(text) == tok.encode(text)


def test_malformed_vocab_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("#version: 0.2\ni n\nthis line is wrong\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad merge"):
        ClipBpeTokenizer(vocab_path=bad)


@pytest.mark.slow
def test_public_openclip_entry_points_agree(tok: ClipBpeTokenizer) -> None:
    open_clip = pytest.importorskip("open_clip")
    expected = open_clip.get_tokenizer("ViT-B-32")(TEXTS).numpy()
    np.testing.assert_array_equal(tok(TEXTS).ids, expected)
    np.testing.assert_array_equal(tok(TEXTS).ids, open_clip.tokenize(TEXTS).numpy())
    short = ClipBpeTokenizer(context_length=16)
    np.testing.assert_array_equal(
        short(TEXTS).ids, open_clip.tokenize(TEXTS, context_length=16).numpy()
    )
