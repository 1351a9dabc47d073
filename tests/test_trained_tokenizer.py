"""The trained bilingual tokenizer: training, encoding, batching, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from crossmodal.errors import ConfigError
from crossmodal.text.base import TokenBatch, Tokenizer
from crossmodal.text.trained import (
    TokenizerTrainConfig,
    TrainedTokenizer,
    train_tokenizer,
)

CORPUS = [
    "grinning face",
    "an emoji of grinning face",
    "grinning face emoji",
    "smiling face with big eyes",
    "an emoji of smiling face with big eyes",
    "cat face",
    "an emoji of cat face",
    "red heart",
    "an emoji of red heart",
    "嘿嘿",
    "嘿嘿的表情符号",
    "嘿嘿表情",
    "笑脸",
    "笑脸的表情符号",
    "猫脸",
    "猫脸的表情符号",
    "红心",
    "红心的表情符号",
]
VOCAB = 120


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainedTokenizer, Path]:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    return train_tokenizer(CORPUS, VOCAB, path, context_length=16), path


def test_protocol_and_special_ids(trained: tuple[TrainedTokenizer, Path]) -> None:
    tok, _ = trained
    assert isinstance(tok, Tokenizer)
    assert tok.pad_token_id == 0
    assert tok.eos_token_id == tok.vocab_size - 1  # highest id: argmax pooling works too
    assert len({tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id}) == 4
    ids = tok.encode("grinning face")
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert max(ids) == tok.eos_token_id


@pytest.mark.parametrize(
    "text",
    ["grinning face", "an emoji of red heart", "嘿嘿的表情符号", "猫脸", "red heart 红心, cat 猫"],
)
def test_round_trip(trained: tuple[TrainedTokenizer, Path], text: str) -> None:
    tok, _ = trained
    assert tok.decode(tok.encode(text)) == text


def test_normalisation(trained: tuple[TrainedTokenizer, Path]) -> None:
    tok, _ = trained
    # NFKC turns full-width letters into ASCII; case and runs of spaces are folded
    assert tok.encode("ＧＲＩＮＮＩＮＧ   Face ") == tok.encode("grinning face")


def test_chinese_splits_without_unknowns(trained: tuple[TrainedTokenizer, Path]) -> None:
    tok, _ = trained
    for text in ("嘿嘿的表情符号", "笑脸红心", "猫嘿"):  # seen characters, new combinations
        pieces = tok.tokens(text)[1:-1]
        assert "".join(pieces).lstrip("▁") == text
        assert tok.unk_token_id not in tok.encode(text)
    assert tok.unk_token_id in tok.encode("狗")  # never seen: unknown
    assert tok.unk_token_id not in tok.encode("zebra #1!")  # ASCII is always known


def test_cjk_chars_mode_gives_one_piece_per_character(tmp_path: Path) -> None:
    config = TokenizerTrainConfig(cjk="chars")
    tok = train_tokenizer(CORPUS, VOCAB, tmp_path / "t.json", config)
    assert tok.tokens("嘿嘿的表情符号")[1:-1] == ["▁嘿", "嘿", "的", "表", "情", "符", "号"]


def test_truncation_keeps_eos_last(trained: tuple[TrainedTokenizer, Path]) -> None:
    tok, _ = trained
    long_text = " ".join(["grinning face"] * 20) + " 嘿嘿的表情符号" * 5
    ids = tok.encode(long_text)
    assert len(ids) == tok.context_length
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert ids.count(tok.eos_token_id) == 1


def test_batch_padding_and_mask(trained: tuple[TrainedTokenizer, Path]) -> None:
    tok, _ = trained
    texts = ["cat face", "嘿嘿", "grinning face " * 30]
    batch = tok(texts)
    assert isinstance(batch, TokenBatch)
    assert batch.ids.shape == batch.attention_mask.shape == (3, tok.context_length)
    assert batch.ids.dtype == np.int64 and batch.attention_mask.dtype == np.int64
    for row, text in enumerate(texts):
        ids = tok.encode(text)
        n = len(ids)
        assert batch.ids[row, :n].tolist() == ids
        assert (batch.ids[row, n:] == tok.pad_token_id).all()
        assert batch.attention_mask[row].tolist() == [1] * n + [0] * (tok.context_length - n)
        assert tok.decode(batch.ids[row]) == tok.decode(ids)
    assert tok.decode(batch.ids[0]) == "cat face" and tok.decode(batch.ids[1]) == "嘿嘿"
    assert tok("cat face").ids.shape == (1, tok.context_length)  # a bare str is one text


def test_training_is_deterministic(tmp_path: Path) -> None:
    first = train_tokenizer(CORPUS, VOCAB, tmp_path / "a.json")
    second = train_tokenizer(list(reversed(CORPUS)) * 2, VOCAB, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert first.to_str() == second.to_str()


def test_file_and_string_load_equal_in_memory(trained: tuple[TrainedTokenizer, Path]) -> None:
    tok, path = trained
    from_file = TrainedTokenizer(path, context_length=16)
    from_str = TrainedTokenizer.from_str(path.read_text(encoding="utf-8"), context_length=16)
    texts = ["an emoji of cat face", "红心的表情符号", "grinning 笑脸"]
    for other in (from_file, from_str):
        assert other.vocab_size == tok.vocab_size
        assert np.array_equal(other(texts).ids, tok(texts).ids)
        assert np.array_equal(other(texts).attention_mask, tok(texts).attention_mask)


def test_unigram_model_trains(tmp_path: Path) -> None:
    config = TokenizerTrainConfig(model="unigram")
    tok = train_tokenizer(CORPUS, VOCAB, tmp_path / "u.json", config)
    assert tok.decode(tok.encode("嘿嘿的表情符号")) == "嘿嘿的表情符号"
    assert tok.encode("cat face")[-1] == tok.eos_token_id == tok.vocab_size - 1


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="context_length"):
        train_tokenizer(CORPUS, VOCAB, tmp_path / "t.json", context_length=1)
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(CORPUS, 4, tmp_path / "t.json")
    with pytest.raises(ValueError, match="non-empty"):
        train_tokenizer(["", "  "], VOCAB, tmp_path / "t.json")
    with pytest.raises(ConfigError, match="cannot read"):
        TrainedTokenizer(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="not a valid"):
        TrainedTokenizer.from_str("{}")


def test_missing_backend_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from crossmodal.errors import BackendUnavailableError

    monkeypatch.setitem(__import__("sys").modules, "tokenizers", None)
    with pytest.raises(BackendUnavailableError, match="tokenizers"):
        TrainedTokenizer.from_str("{}")


def test_native_model_carries_its_trained_tokenizer_in_one_file(
    trained: tuple[TrainedTokenizer, Path], tmp_path: Path
) -> None:
    import dataclasses

    from crossmodal.encoders import load_encoder
    from crossmodal.models.registry import create_model, get_model_config
    from crossmodal.models.weights import save_weights

    tokenizer, path = trained
    base = get_model_config("test-tiny")
    text = dataclasses.replace(
        base.text,
        tokenizer="trained",
        tokenizer_json=path.read_text(encoding="utf-8"),
        vocab_size=tokenizer.vocab_size,
        pool="eos",
        eos_token_id=tokenizer.eos_token_id,
    )
    model = create_model(dataclasses.replace(base, text=text))
    weights = save_weights(model, tmp_path / "bilingual.safetensors")
    encoder = load_encoder(f"native:@{weights}", device="cpu", precision="fp32")
    batch = encoder.tokenizer(["一只猫", "a cat"])
    assert batch.ids.shape == (2, base.text.context_length)
    assert batch.ids.tolist() == tokenizer(["一只猫", "a cat"]).ids.tolist()
    vectors = encoder.encode_tokens(batch)
    assert vectors.shape == (2, base.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    bad = dataclasses.replace(text, vocab_size=tokenizer.vocab_size + 1)
    with pytest.raises(ConfigError, match="vocab_size"):
        load_encoder_config = dataclasses.replace(base, text=bad)
        from crossmodal.encoders.native import build_tokenizer

        build_tokenizer(load_encoder_config)
