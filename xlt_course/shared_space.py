"""Lesson 01-shared-space: separate monolingual spaces versus one multilingual space.

Two questions, measured on real data:

1. Are two separately trained word-embedding spaces comparable coordinate by coordinate?
   (No: :func:`unaligned_bli` scores nearest-neighbour translation with no mapping, and
   :func:`structure_correlation` shows that the *shapes* of the spaces agree even though
   their coordinates do not.)
2. Does a multilingual encoder put translations close together? (:func:`distance_ratio`,
   :func:`distance_ratio_matrix` and :func:`retrieval_precision` on word concepts from CLDR
   via :func:`babel_concepts` and on human-translated sentences.)

Retrieval comes from :mod:`xlt_course.retrieval`, normalisation and Procrustes from
:mod:`xlt_course.procrustes` (the course's one implementation of each); this module holds
only what lesson 01 adds. :func:`pca` is not ``procrustes.reduce_dim`` twice: the plots and
exercise 2 need the rotation onto the axes also at full dimension, fixed signs and the
explained variance, while ``reduce_dim`` keeps the coordinates untouched at full dimension
and takes its statistics from the frequent words, as the BLI pipeline needs.
:func:`embed_cached` and :func:`embed_parallel` embed the fixed texts of this lesson; no
other lesson embeds fixed texts.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from xlt_course import paths, procrustes, retrieval

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "CONCEPT_CATEGORIES",
    "Concepts",
    "babel_concepts",
    "center_by_language",
    "distance_ratio",
    "distance_ratio_matrix",
    "embed_cached",
    "embed_parallel",
    "neighbour_agreement",
    "PCAResult",
    "pair_distances",
    "pca",
    "plot_concepts",
    "retrieval_precision",
    "structure_correlation",
    "unaligned_bli",
]

LESSON = "01-shared-space"

ConceptCategory = Literal["month", "day", "country", "language"]
CONCEPT_CATEGORIES: tuple[ConceptCategory, ...] = ("month", "day", "country", "language")

#: CLDR territory codes and language codes whose names make the country/language concepts.
TERRITORIES = ("FR", "DE", "ES", "IT", "RU", "CN", "JP", "BR", "GB", "US")
LANGUAGE_CODES = ("en", "fr", "de", "es", "it", "ru", "zh", "ja", "pt")
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_DAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# --------------------------------------------------------------------------------------------
# Word concepts in many languages (CLDR via babel)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Concepts:
    """The same concepts named in several languages.

    Attributes:
        ids: (c,) concept ids, e.g. ``"month:January"``, ``"country:JP"``.
        categories: (c,) the category of each concept (``"month"``, ``"day"``, ...).
        words: language -> (c,) names, position i naming concept ``ids[i]``.
    """

    ids: list[str]
    categories: list[str]
    words: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, categories: Sequence[str]) -> Concepts:
        """Return the concepts of the given categories only (order kept)."""
        keep = [i for i, c in enumerate(self.categories) if c in categories]
        return Concepts(
            [self.ids[i] for i in keep],
            [self.categories[i] for i in keep],
            {lang: [w[i] for i in keep] for lang, w in self.words.items()},
        )


def _own_names(locale: Any, key: str, count: int) -> dict[int, str]:
    """Return a locale's wide ``key`` names (``"months"`` or ``"days"``), nominative if it can.

    babel (2.18 at least) can return another locale's stand-alone names once that locale
    resolved the CLDR alias they share (python-babel/babel#1234), and
    ``localedata.load(..., merge_inherited=False)`` would replace babel's cached, merged data
    with the unmerged one. So the locale's own data file is read directly: its stand-alone
    names when it defines them (Russian "январь", not the genitive "января" of dates),
    else its format names, else babel's merged format names.
    """
    import pickle

    from babel import localedata

    with open(localedata.resolve_locale_filename(str(locale)), "rb") as f:
        own = pickle.load(f).get(key, {})
    for context in ("stand-alone", "format"):
        names = own.get(context, {}).get("wide")
        if isinstance(names, Mapping) and len(names) == count:
            return {int(k): str(v) for k, v in names.items()}
    return {int(k): str(v) for k, v in getattr(locale, key)["format"]["wide"].items()}


def babel_concepts(
    langs: Sequence[str], categories: Sequence[ConceptCategory] = CONCEPT_CATEGORIES
) -> Concepts:
    """Name the same concepts in every language of ``langs`` from CLDR (the ``babel`` package).

    Concepts: the 12 months, the 7 days of the week, 10 countries (:data:`TERRITORIES`)
    and 9 languages (:data:`LANGUAGE_CODES`), each named as CLDR's translators name it in
    each locale (a real, human-made parallel word list).

    Args:
        langs: ISO 639-1 codes that babel knows, e.g. ``("en", "fr", "ru", "zh")``.
        categories: which of ``"month"``, ``"day"``, ``"country"``, ``"language"`` to include.

    Returns:
        :class:`Concepts` with ``len(langs)`` aligned word lists.

    Raises:
        ValueError: an unknown category or a language babel has no locale for.

    Used in: lesson 01-shared-space.
    """
    from babel import Locale, UnknownLocaleError

    bad = [c for c in categories if c not in CONCEPT_CATEGORIES]
    if bad or not categories:
        raise ValueError(
            f"categories must be a non-empty subset of {CONCEPT_CATEGORIES}, got {bad}"
        )
    if not langs:
        raise ValueError("langs must name at least one language, e.g. ('en', 'fr')")
    ids: list[str] = []
    cats: list[str] = []
    words: dict[str, list[str]] = {lang: [] for lang in langs}
    locales = {}
    for lang in langs:
        try:
            locales[lang] = Locale.parse(lang)
        except (UnknownLocaleError, ValueError) as e:
            raise ValueError(f"babel has no locale {lang!r} ({e}): use an ISO 639-1 code") from e
    for cat in CONCEPT_CATEGORIES:
        if cat not in categories:
            continue
        if cat == "month":
            keys = [f"month:{m}" for m in _MONTHS_EN]
            names = {
                lang: [_own_names(loc, "months", 12)[i] for i in range(1, 13)]
                for lang, loc in locales.items()
            }
        elif cat == "day":
            keys = [f"day:{d}" for d in _DAYS_EN]
            names = {
                lang: [_own_names(loc, "days", 7)[i] for i in range(7)]
                for lang, loc in locales.items()
            }
        elif cat == "country":
            keys = [f"country:{t}" for t in TERRITORIES]
            names = {
                lang: [loc.territories[t] for t in TERRITORIES] for lang, loc in locales.items()
            }
        else:
            keys = [f"language:{c}" for c in LANGUAGE_CODES]
            names = {
                lang: [loc.languages[c] for c in LANGUAGE_CODES] for lang, loc in locales.items()
            }
        ids += keys
        cats += [cat] * len(keys)
        for lang in langs:
            words[lang] += names[lang]
    return Concepts(ids, cats, words)


# --------------------------------------------------------------------------------------------
# Distances between translations and between random pairs
# --------------------------------------------------------------------------------------------


def _paired(A: Any, B: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return unit-length float64 copies of two (n, d) arrays whose row i are translations."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or A.shape != B.shape:
        raise ValueError(
            f"A and B must both be (n, d) with the same shape (row i of B translates row i "
            f"of A), got {A.shape} and {B.shape}"
        )
    if A.shape[0] < 2:
        raise ValueError(f"need at least 2 pairs to have non-translation pairs, got {A.shape[0]}")
    if not (np.isfinite(A).all() and np.isfinite(B).all()):
        raise ValueError("A or B contains NaN or inf")
    na, nb = np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=1)
    if (na == 0).any() or (nb == 0).any():
        raise ValueError(
            f"A has {int((na == 0).sum())} and B {int((nb == 0).sum())} zero rows: "
            "a zero vector has no cosine; drop them"
        )
    return A / na[:, None], B / nb[:, None]


def pair_distances(A: np.ndarray, B: np.ndarray) -> tuple[float, float]:
    """Return the mean cosine distance of translation pairs and of non-translation pairs.

    The cosine distance is ``1 - cos(a, b)``. Translation pairs are ``(A[i], B[i])``;
    non-translation ("random") pairs are every ``(A[i], B[j])`` with ``i != j``.

    Args:
        A: (n, d) vectors in language 1, n >= 2, no zero rows.
        B: (n, d) vectors in language 2, row i translating row i of ``A``.

    Returns:
        ``(translation, random)``: the two mean distances, each in [0, 2].

    Used in: lesson 01-shared-space, exercise 1.
    """
    Au, Bu = _paired(A, B)
    D = 1.0 - Au @ Bu.T
    n = D.shape[0]
    diag = float(np.trace(D))
    return diag / n, (float(D.sum()) - diag) / (n * (n - 1))


def distance_ratio(A: np.ndarray, B: np.ndarray) -> float:
    """Return mean translation distance / mean non-translation distance (cosine distances).

    1 means translations are no closer than unrelated pairs (no shared space); values near
    0 mean translations nearly coincide.

    Args:
        A: (n, d) vectors in language 1.
        B: (n, d) vectors in language 2, row i translating row i of ``A``.

    Returns:
        The ratio, >= 0.

    Used in: lesson 01-shared-space, exercise 1.
    """
    trans, rand = pair_distances(A, B)
    if rand == 0:
        raise ValueError("all non-translation pairs have distance 0: the vectors are all equal")
    return trans / rand


def distance_ratio_matrix(vectors: Mapping[str, np.ndarray], langs: Sequence[str]) -> np.ndarray:
    """Return the (L, L) matrix of :func:`distance_ratio` between every two languages.

    Args:
        vectors: language -> (n, d) vectors, row i the same item in every language.
        langs: the L languages, in the order of the rows/columns.

    Returns:
        (L, L) float64, symmetric, NaN on the diagonal.

    Used in: lesson 01-shared-space.
    """
    L = len(langs)
    R = np.full((L, L), np.nan)
    for a in range(L):
        for b in range(a + 1, L):
            R[a, b] = R[b, a] = distance_ratio(vectors[langs[a]], vectors[langs[b]])
    return R


def retrieval_precision(Q: np.ndarray, C: np.ndarray, k: int = 1) -> float:
    """Return P@k of finding each query's translation among all candidates by cosine.

    Row i of ``C`` is the translation of row i of ``Q``; every row of ``C`` is a candidate
    for every query, so chance level is ``k / n``. Retrieval is
    :func:`xlt_course.retrieval.translate_words` (nearest neighbour), scoring
    :func:`xlt_course.retrieval.precision_at_k`.

    Args:
        Q: (n, d) query vectors.
        C: (n, d) candidate vectors.
        k: cut-off, 1 <= k <= n.

    Returns:
        The fraction of queries whose translation is among their k most similar candidates.

    Used in: lesson 01-shared-space, exercise 3.
    """
    Q = np.asarray(Q)
    C = np.asarray(C)
    if Q.ndim != 2 or Q.shape != C.shape:
        raise ValueError(
            f"Q and C must both be (n, d) with the same shape (row i of C translates row i "
            f"of Q), got {Q.shape} and {C.shape}"
        )
    pred = retrieval.translate_words(Q, C, method="nn", topn=k, progress=False)
    return retrieval.precision_at_k(pred, [{i} for i in range(Q.shape[0])], k)


def neighbour_agreement(X: np.ndarray, labels: Sequence[Any]) -> float:
    """Return the share of points whose nearest *other* point (by cosine) has the same label.

    With concept labels it measures how much points cluster by meaning; with language
    labels, how much they cluster by language.

    Args:
        X: (n, d) vectors, n >= 2, no zero rows.
        labels: (n,) a label per row.

    Returns:
        A fraction in [0, 1].

    Used in: lesson 01-shared-space.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != len(labels) or X.shape[0] < 2:
        raise ValueError(
            f"X must be (n, d) with n = len(labels) >= 2, got {X.shape}, {len(labels)}"
        )
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("X has zero rows: their cosine is undefined")
    Xu = X / norms
    S = Xu @ Xu.T
    np.fill_diagonal(S, -np.inf)  # a point is not its own neighbour
    nearest = S.argmax(axis=1)
    lab = np.asarray(labels, dtype=object)
    return float(np.mean(lab[nearest] == lab))


def center_by_language(vectors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Subtract each language's mean vector from its rows, then rescale rows to unit length.

    A multilingual encoder adds a language-specific offset to every sentence of a language;
    removing the per-language mean removes it (Libovický, Rosa, Fraser 2020, "On the
    language neutrality of pre-trained multilingual representations", Findings of EMNLP).

    Args:
        vectors: language -> (n_lang, d) vectors.

    Returns:
        language -> (n_lang, d) float32, centred per language and unit length.

    Used in: lesson 01-shared-space.
    """
    return {lang: procrustes.normalize(V, center=True, unit=True) for lang, V in vectors.items()}


# --------------------------------------------------------------------------------------------
# PCA by SVD
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PCAResult:
    """A principal component analysis of n points in d dimensions.

    Attributes:
        coords: (n, dim) coordinates of the points on the principal axes.
        axes: (dim, d) the principal axes as unit rows, largest variance first.
        mean: (d,) the mean that was subtracted.
        explained: (dim,) fraction of the total variance along each axis.
    """

    coords: np.ndarray
    axes: np.ndarray
    mean: np.ndarray
    explained: np.ndarray


def pca(X: np.ndarray, dim: int = 2) -> PCAResult:
    """Project the rows of ``X`` on their ``dim`` leading principal axes, by SVD.

    With the centred data ``X_c = X - mean = U diag(s) Vᵀ`` (thin SVD), the principal axes
    are the rows of ``Vᵀ`` in order of decreasing singular value, and the coordinates are
    ``X_c @ Vᵀ[:dim].T = U[:, :dim] * s[:dim]``. An axis is only defined up to its sign;
    here each axis is flipped so that its largest-magnitude entry is positive, which makes
    the result deterministic. Unlike :func:`xlt_course.procrustes.reduce_dim` (eigenvectors of
    the covariance, meant for dimension reduction before alignment), this always rotates
    onto the principal axes, also when ``dim == d``.

    Args:
        X: (n, d) points, n >= 2.
        dim: number of axes, 1 <= dim <= min(n, d).

    Returns:
        :class:`PCAResult` (float64 arrays).

    Used in: lesson 01-shared-space, exercise 2.
    """
    A = np.asarray(X, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] < 2:
        raise ValueError(f"X must be (n, d) with n >= 2, got shape {A.shape}")
    if not 1 <= dim <= min(A.shape):
        raise ValueError(f"dim must be in [1, {min(A.shape)}] for X of shape {A.shape}, got {dim}")
    if not np.isfinite(A).all():
        raise ValueError("X contains NaN or inf")
    mean = A.mean(axis=0)
    centred = A - mean
    _, s, Vt = np.linalg.svd(centred, full_matrices=False)
    axes = Vt[:dim].copy()
    signs = np.sign(axes[np.arange(dim), np.abs(axes).argmax(axis=1)])
    axes *= np.where(signs == 0, 1.0, signs)[:, None]
    total = float((s**2).sum())
    explained = s[:dim] ** 2 / total if total > 0 else np.zeros(dim)
    return PCAResult(centred @ axes.T, axes, mean, explained)


# --------------------------------------------------------------------------------------------
# Two separately trained spaces
# --------------------------------------------------------------------------------------------


def structure_correlation(
    X: np.ndarray, Y: np.ndarray, method: Literal["pearson", "spearman"] = "pearson"
) -> float:
    """Correlate the within-space cosine similarities of two spaces over the same items.

    Representational similarity analysis (Kriegeskorte, Mur, Bandettini 2008, Frontiers in
    Systems Neuroscience): for n items known in both spaces (row i of ``X`` and of ``Y``
    are translations), compute the n(n-1)/2 cosines between items inside each space and
    correlate the two lists. The value does not depend on any rotation of either space,
    nor on their dimensions, so it compares spaces that cannot be compared coordinate-wise.

    Args:
        X: (n, d1) vectors in space 1 (centred and normalised here).
        Y: (n, d2) vectors in space 2, row i the translation of row i of ``X``.
        method: ``"pearson"`` or ``"spearman"`` (rank) correlation.

    Returns:
        The correlation in [-1, 1]; about 0 when the pairing is random.

    Used in: lesson 01-shared-space.
    """
    X = np.asarray(X)
    Y = np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must be (n, d1) and (n, d2), got {X.shape} and {Y.shape}")
    if X.shape[0] < 3:
        raise ValueError(f"need at least 3 items, got {X.shape[0]}")
    Xn, Yn = procrustes.normalize(X), procrustes.normalize(Y)
    iu = np.triu_indices(X.shape[0], k=1)
    sx = (Xn @ Xn.T)[iu].astype(np.float64)
    sy = (Yn @ Yn.T)[iu].astype(np.float64)
    if method == "spearman":
        from scipy.stats import rankdata

        sx, sy = rankdata(sx), rankdata(sy)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    return float(np.corrcoef(sx, sy)[0, 1])


def unaligned_bli(
    src: procrustes.WordVectors,
    tgt: procrustes.WordVectors,
    test_pairs: Sequence[tuple[str, str]],
    *,
    W: np.ndarray | None = None,
    ks: Sequence[int] = (1, 10),
) -> dict[int, float]:
    """Translate test words by nearest neighbour across two spaces of equal dimension.

    With ``W=None`` no mapping is applied: coordinate j of a source vector is compared with
    coordinate j of every target vector, which is what "nearest neighbour across two
    unaligned spaces" means.

    Args:
        src, tgt: prepared spaces of equal dimension d (e.g. from
            :func:`xlt_course.procrustes.prepare_spaces`).
        test_pairs: (source word, target word) gold pairs; a source word with several
            translations counts once (correct if any is retrieved).
        W: (d, d) map applied as ``src.vectors @ W``; None means the identity.
        ks: cut-offs.

    Returns:
        {k: P@k} over the test source words found in both vocabularies.

    Used in: lesson 01-shared-space.
    """
    import warnings

    d = np.asarray(src.vectors).shape[1]
    if np.asarray(tgt.vectors).shape[1] != d:
        raise ValueError(
            f"source vectors are {d}d and target vectors {np.asarray(tgt.vectors).shape[1]}d: "
            "bring them to one dimension first (procrustes.prepare_spaces with dim_reduce='pca')"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", procrustes.DroppedPairsWarning)
        return procrustes.evaluate_bli(
            src, tgt, np.eye(d, dtype=np.float32) if W is None else W, test_pairs,
            method="nn", ks=ks,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Encoder embeddings, cached on disk
# --------------------------------------------------------------------------------------------


def _model_tag(name: str) -> str:
    """Return a file-name-safe tag of the model, including the offline weights' checksum."""
    tag = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    if name == "offline":
        from xlt_course.data.manifest import Manifest

        art = Manifest(paths.build_dir()).entries.get("encoder-weights")
        tag += "-" + (art.sha256[:12] if art else "unbuilt")
    return tag


def _read_store(path: Path) -> tuple[list[str], np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            texts = json.loads(z["texts"].tobytes().decode("utf-8"))
            vectors = np.asarray(z["vectors"], dtype=np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # a corrupt cache is rebuilt, never trusted
    if not isinstance(texts, list) or vectors.ndim != 2 or len(texts) != vectors.shape[0]:
        return None
    return texts, vectors


def _write_store(path: Path, texts: list[str], vectors: np.ndarray) -> None:
    from xlt_course.data.manifest import atomic_path

    blob = np.frombuffer(json.dumps(texts, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, texts=blob, vectors=vectors.astype(np.float32))


def embed_cached(
    texts: Sequence[str],
    name: str = "offline",
    *,
    prefix: str = "",
    pooling: Literal["mean", "cls"] = "mean",
    batch_size: int = 64,
    cache_dir: Path | None = None,
) -> np.ndarray:
    """Embed texts with :func:`xlt_course.training.embed_sentences`, reusing a disk cache.

    The cache is one ``.npz`` per (model, prefix, pooling) under
    ``paths.cache_dir()/01-shared-space/`` mapping each text to its vector, so any subset
    of texts embedded before (e.g. the smoke-size lesson after the full one) costs nothing
    and only new texts go through the encoder. For ``"offline"`` the weights' checksum is
    part of the file name, so rebuilding the encoder invalidates the cache.

    Args:
        texts: n strings (duplicates allowed).
        name: ``"offline"`` or a Hugging Face hub id (see :func:`xlt_course.models.resolve_model_id`).
        prefix: prepended to every text before encoding (E5: ``"query: "``).
        pooling: ``"mean"`` or ``"cls"``.
        batch_size: texts per forward pass.
        cache_dir: folder of the cache files (default ``paths.cache_dir()/01-shared-space``).

    Returns:
        (n, hidden) float32 unit-length rows, in the order of ``texts``.

    Used in: lesson 01-shared-space.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a list of strings (wrap a single text in a list)")
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / LESSON
    key = hashlib.sha256(prefix.encode("utf-8")).hexdigest()[:8]
    path = folder / f"{_model_tag(name)}-{pooling}-prefix{key}.npz"
    stored = _read_store(path) if path.exists() else None
    known_texts, known = stored if stored is not None else ([], None)
    index = {t: i for i, t in enumerate(known_texts)}
    missing = list(dict.fromkeys(t for t in texts if t not in index))
    if missing:
        from xlt_course.training import embed_sentences

        new = embed_sentences(
            missing, name, prefix=prefix, pooling=pooling, normalize=True, batch_size=batch_size
        )
        known = new if known is None else np.concatenate([known, new])
        for t in missing:
            index[t] = len(index)
        _write_store(path, [*known_texts, *missing], known)
    assert known is not None
    if not texts:
        return np.zeros((0, known.shape[1]), dtype=np.float32)
    return known[[index[t] for t in texts]]


def embed_parallel(
    texts: Mapping[str, Sequence[str]], name: str = "offline", *, prefix: str = "", **kwargs: Any
) -> dict[str, np.ndarray]:
    """Embed the texts of several languages in one :func:`embed_cached` call.

    One call instead of one per language means fuller batches and one cache write.

    Args:
        texts: language -> its n_lang texts.
        name, prefix, kwargs: as for :func:`embed_cached`.

    Returns:
        language -> (n_lang, hidden) float32 unit-length rows, in the order of its texts.

    Used in: lesson 01-shared-space.
    """
    langs = list(texts)
    flat = [t for lang in langs for t in texts[lang]]
    E = embed_cached(flat, name, prefix=prefix, **kwargs)
    out: dict[str, np.ndarray] = {}
    start = 0
    for lang in langs:
        out[lang] = E[start : start + len(texts[lang])]
        start += len(texts[lang])
    return out


# --------------------------------------------------------------------------------------------
# Plotting
# --------------------------------------------------------------------------------------------

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")


def _renderable(text: str) -> bool:
    """Return True when matplotlib's default font has a glyph for every character of text."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties())
    if path not in _FONTS:
        _FONTS[path] = FT2Font(path)
    font = _FONTS[path]
    return all(font.get_char_index(ord(c)) != 0 for c in text if not c.isspace())


_FONTS: dict[str, Any] = {}


def plot_concepts(
    coords: np.ndarray,
    concept: Sequence[str],
    lang: Sequence[str],
    labels: Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
    title: str = "",
) -> Axes:
    """Scatter 2-D points coloured by concept, with one marker shape per language.

    Args:
        coords: (n, 2) coordinates, e.g. from :func:`xlt_course.procrustes.reduce_dim`.
        concept: (n,) concept of each point (the colour).
        lang: (n,) language of each point (the marker).
        labels: (n,) optional text written next to each point (e.g. the word); a label the
            default font cannot draw (CJK without a CJK font) is left out.
        ax: axes to draw on (default: a new figure).
        title: the axes title.

    Returns:
        The axes.

    Used in: lesson 01-shared-space.
    """
    import matplotlib.pyplot as plt

    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 2 or len(concept) != len(coords) != len(lang):
        raise ValueError(
            f"coords must be (n, 2) with n = len(concept) = len(lang), got {coords.shape}, "
            f"{len(concept)}, {len(lang)}"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 6))
    concepts = list(dict.fromkeys(concept))
    langs = list(dict.fromkeys(lang))
    cmap = plt.get_cmap("tab10" if len(concepts) <= 10 else "tab20")
    colour = {c: cmap(i % cmap.N) for i, c in enumerate(concepts)}
    marker = {g: _MARKERS[i % len(_MARKERS)] for i, g in enumerate(langs)}
    for (x, y), c, g in zip(coords, concept, lang, strict=True):
        ax.scatter(x, y, color=colour[c], marker=marker[g], s=60, edgecolors="k", linewidths=0.4)
    if labels is not None:
        for (x, y), text in zip(coords, labels, strict=True):
            if _renderable(text):  # e.g. no CJK font installed: the marker still shows it
                ax.annotate(text, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=colour[c], marker="o", linestyle="", label=c) for c in concepts
    ] + [Line2D([], [], color="grey", marker=marker[g], linestyle="", label=g) for g in langs]
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    return ax
