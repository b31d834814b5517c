"""Near-duplicate removal with MinHash signatures and LSH banding, vectorised with numpy.

Each text becomes a set of word n-gram shingles (lowercase, punctuation stripped). A shingle is
hashed once to 64 bits; the ``num_perm`` permutations ``(a * h + b) mod (2**61 - 1)`` are applied
to every shingle at once by broadcasting and min-reduced per row. Signatures are cut into
``bands`` of ``rows`` values; rows whose band hashes agree in any band are candidates, which are
(optionally) verified by their estimated Jaccard similarity and joined into clusters with a
union-find. The first row of each cluster is kept.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import multiprocessing
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xxhash

from modelops.errors import ConfigError
from modelops.sanitize.step import SanitizeStep, StepContext, map_batches, mark, present_fields, row_texts

_MERSENNE = np.uint64((1 << 61) - 1)
_EMPTY = np.uint64((1 << 64) - 1)  # signature of a text with no words: above every permuted value
_GRAMS_PER_CHUNK = 1024  # shingles per broadcast block: keeps the (grams x num_perm) block in cache
_PAIR_WINDOW = 64  # a band bucket pairs each member with at most this many following members
_NON_WORD = re.compile(r"[^\w\s]|_")
_KEYS = "__lsh_keys"


# ----------------------------------------------------------------------------- n-gram hashing

# ASCII text takes a bytes fast path that does exactly what _NON_WORD + str.split do on it.
_ASCII_DROP = bytes(c for c in range(128) if _NON_WORD.match(chr(c)))
_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace())
_ASCII_TABLE = bytes.maketrans(_ASCII_SPACE, b" " * len(_ASCII_SPACE))


def word_tokens(text: str) -> list[bytes]:
    """Lowercase, punctuation-stripped, whitespace-split words as UTF-8 (``"Don't!"`` -> ``[b"dont"]``)."""
    if text.isascii():
        return text.lower().encode().translate(_ASCII_TABLE, _ASCII_DROP).split()
    return [w.encode() for w in _NON_WORD.sub("", text.lower()).split()]


def _fmix64(x: np.ndarray) -> np.ndarray:
    # MurmurHash3's finaliser: a bijection that spreads every input bit over the whole word.
    x = x ^ (x >> np.uint64(33))
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def _position_constants(n: int) -> np.ndarray:
    # Fixed odd multipliers, one per position in the n-gram, so that word order matters.
    return np.random.default_rng(0x5EED).integers(0, 1 << 63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def ngram_hashes(tokens: Sequence[Sequence[bytes]], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64-bit hashes of every word n-gram of every text, all texts concatenated.

    A text with fewer than ``n`` words (but at least one) yields a single gram: its whole word
    sequence. A text with no words yields none.

    Args:
        tokens: the words of each text (see `word_tokens`).
        n: words per gram.

    Returns:
        ``(hashes, row_of_gram, start_of_gram)``: the uint64 hash of each gram, the index of the
        text it comes from, and the position of its first word within that text.
    """
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    flat = itertools.chain.from_iterable(tokens)  # map() over C functions: no Python frame per word
    words = np.fromiter(map(xxhash.xxh3_64_intdigest, flat), dtype=np.uint64, count=int(lengths.sum()))
    words = np.append(words, np.uint64(0))  # index len(words) reads as "no word here"
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    grams_per_row = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
    row_of_gram = np.repeat(np.arange(len(tokens)), grams_per_row)
    first_gram = np.concatenate(([0], np.cumsum(grams_per_row)[:-1])).astype(np.int64)
    start_of_gram = np.arange(len(row_of_gram)) - first_gram[row_of_gram]
    begin = offsets[row_of_gram] + start_of_gram
    end = offsets[row_of_gram] + lengths[row_of_gram]
    acc = np.zeros(len(row_of_gram), dtype=np.uint64)
    for j, c in enumerate(_position_constants(n)):
        idx = begin + j
        acc += words[np.where(idx < end, idx, len(words) - 1)] * c
    return _fmix64(acc), row_of_gram, start_of_gram


# ----------------------------------------------------------------------------- MinHash signatures


HASH_FUNCTIONS = ("xxh3", "sha1")
_MAX_HASH32 = np.uint64((1 << 32) - 1)


def _permutations(num_perm: int, seed: int, hash_function: str = "xxh3") -> tuple[np.ndarray, np.ndarray]:
    if hash_function == "sha1":
        # datasketch's own draw for its default `affine32` scheme, so signatures match it value for value.
        gen = np.random.RandomState(seed)
        a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        return a, b
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64, endpoint=True)
    return a, b


def _permute(h: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray, spare: np.ndarray) -> np.ndarray:
    """``(a * h + b) mod (2**61 - 1)`` for every (shingle, permutation), on uint64 that wraps at 2**64.

    `out` and `spare` are ``(len(h), len(a))`` buffers, reused so that no block is allocated per chunk.
    """
    np.multiply(h[:, None], a[None, :], out=out)
    out += b
    np.right_shift(out, np.uint64(61), out=spare)
    out &= _MERSENNE
    out += spare  # 2**61 = 1 (mod p), so the top bits fold back in
    np.subtract(out, _MERSENNE, out=spare)  # wraps to a huge value unless out >= p
    return np.minimum(out, spare, out=out)


def _sha1_gram_hashes(tokens: Sequence[Sequence[bytes]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's `sha1_hash32` of each space-joined word n-gram (a short text: its whole word sequence)."""
    grams = [[b" ".join(t[i : i + n]) for i in range(len(t) - n + 1)] if len(t) >= n else [b" ".join(t)] if t else []
             for t in tokens]  # fmt: skip
    unique = [sorted(set(g)) for g in grams]  # datasketch hashes a set of shingles
    row_of_gram = np.repeat(np.arange(len(tokens)), [len(g) for g in unique])
    flat = itertools.chain.from_iterable(unique)
    hashes = np.fromiter((int.from_bytes(hashlib.sha1(g).digest()[:4], "little") for g in flat), dtype=np.uint64,
                         count=len(row_of_gram))  # fmt: skip
    return hashes, row_of_gram


def _fmix32(x: np.ndarray) -> np.ndarray:
    # MurmurHash3's 32-bit finaliser, as datasketch applies it before its affine32 permutations.
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> np.uint32(16))


def _permute_datasketch(h: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray, spare: np.ndarray):
    # Exactly datasketch's affine32 arithmetic: fmix32, then a * h + b on uint32 that wraps at 2**32.
    mixed = _fmix32(h.astype(np.uint32))
    out[:] = mixed[:, None] * a[None, :] + b[None, :]
    return out


def minhash_signatures(
    texts: Sequence[str], ngram: int, a: np.ndarray, b: np.ndarray, hash_function: str = "xxh3"
) -> np.ndarray:
    """MinHash signatures of `texts` (one row each, ``len(a)`` uint64 values) over word `ngram` shingles.

    `hash_function="sha1"` reproduces datasketch's `MinHash` (sha1_hash32, its permutations and
    arithmetic) value for value, at the cost of a Python-level sha1 per shingle; `xxh3` is the fast default.
    """
    tokens = [word_tokens(t) for t in texts]
    if hash_function == "sha1":
        hashes, row_of_gram = _sha1_gram_hashes(tokens, ngram)
        permute, empty = _permute_datasketch, _MAX_HASH32
    else:
        hashes, row_of_gram, _ = ngram_hashes(tokens, ngram)
        permute, empty = _permute, _EMPTY
    sig = np.full((len(texts), len(a)), empty, dtype=np.uint64)
    out, spare = np.empty((2, min(_GRAMS_PER_CHUNK, len(hashes)), len(a)), dtype=np.uint64)
    for lo in range(0, len(hashes), _GRAMS_PER_CHUNK):
        rows = row_of_gram[lo : lo + _GRAMS_PER_CHUNK]
        block = permute(hashes[lo : lo + _GRAMS_PER_CHUNK], a, b, out[: len(rows)], spare[: len(rows)])
        # Rows are contiguous runs; a row cut by the chunk edge is min-combined with its other part.
        seg = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        seg_rows = rows[seg]
        sig[seg_rows] = np.minimum(sig[seg_rows], np.minimum.reduceat(block, seg, axis=0))
    return sig


def _signatures(
    texts: Sequence[str], ngram: int, num_perm: int, seed: int, batch_size: int, num_proc: int, hash_function: str
):
    a, b = _permutations(num_perm, seed, hash_function)
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    work = functools.partial(minhash_signatures, ngram=ngram, a=a, b=b, hash_function=hash_function)
    if num_proc > 1 and len(texts) >= 2 * batch_size:
        with multiprocessing.get_context().Pool(num_proc) as pool:
            parts = pool.map(work, batches)
    else:
        parts = [work(batch) for batch in batches]
    return np.concatenate(parts) if parts else np.empty((0, num_perm), dtype=np.uint64)


# ----------------------------------------------------------------------------- LSH parameters


@functools.lru_cache(maxsize=64)
def optimal_bands_rows(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """The ``(bands, rows)`` that minimise the weighted false-positive + false-negative probability.

    Same search as datasketch's ``MinHashLSH._optimal_param``: over every ``b * r <= num_perm``,
    integrate ``P(candidate | s) = 1 - (1 - s**r)**b`` below the threshold (false positives) and
    its complement above it (false negatives). The integrands are polynomials of degree
    ``b * r <= num_perm``, so Gauss-Legendre quadrature with ``num_perm // 2 + 1`` nodes is exact.
    """
    nodes, w = np.polynomial.legendre.leggauss(num_perm // 2 + 1)
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=np.float64)
    bands, rows = pairs[:, :1], pairs[:, 1:]

    def integral(lo: float, hi: float, false_negative: bool) -> np.ndarray:
        s = (hi - lo) / 2 * nodes + (hi + lo) / 2
        p = 1 - (1 - s[None, :] ** rows) ** bands
        return ((1 - p) if false_negative else p) @ w * (hi - lo) / 2

    error = weights[0] * integral(0.0, threshold, False) + weights[1] * integral(threshold, 1.0, True)
    b, r = pairs[int(np.argmin(error))]  # argmin takes the first minimum, as datasketch's strict `<` does
    return int(b), int(r)


def check_params(
    where: str,
    ngram: int,
    num_perm: int,
    threshold: float,
    bands: int | None,
    rows: int | None,
    weights: tuple[float, float] = (0.5, 0.5),
) -> tuple[int, int]:
    """Validate near-dedup parameters and return the ``(bands, rows)`` to use.

    Raises:
        ConfigError: naming ``<where>.<field>`` for the first value that cannot work.
    """
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"{where}.threshold: must lie strictly between 0 and 1, got {threshold!r}")
    if ngram < 1:
        raise ConfigError(f"{where}.ngram: must be at least 1 word, got {ngram!r}")
    if num_perm < 2:
        raise ConfigError(f"{where}.num_perm: must be at least 2, got {num_perm!r}")
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"{where}.weights: must be two non-negative numbers (fp, fn), not both 0, got {weights!r}")
    if (bands is None) != (rows is None):
        missing = "rows" if rows is None else "bands"
        raise ConfigError(f"{where}.{missing}: bands and rows must be given together (or neither, to use threshold)")
    if bands is None:
        return optimal_bands_rows(float(threshold), int(num_perm), tuple(float(x) for x in weights))
    for key, value in (("bands", bands), ("rows", rows)):
        if value < 1:
            raise ConfigError(f"{where}.{key}: must be at least 1, got {value!r}")
    if bands * rows > num_perm:
        raise ConfigError(f"{where}.bands: bands * rows = {bands} * {rows} exceeds num_perm = {num_perm}")
    return int(bands), int(rows)


# ----------------------------------------------------------------------------- candidates and clusters


def _row_hash(values: np.ndarray) -> np.ndarray:
    """One 64-bit hash per row of a uint64 matrix (a random linear combination, then mixed)."""
    c = _permutations(values.shape[1], 0x8A4D)[0]
    return _fmix64((values * c).sum(axis=1, dtype=np.uint64))


def _bucket_pairs(keys: np.ndarray, window: int = _PAIR_WINDOW) -> np.ndarray:
    """Pairs ``(i, j)``, ``i < j``, of positions with equal keys; each pairs with <= `window` later ones."""
    order = np.argsort(keys, kind="stable")  # stable: row indices ascend within a bucket
    sorted_keys = keys[order]
    pairs = []
    for d in range(1, min(window, len(keys) - 1) + 1):
        same = np.flatnonzero(sorted_keys[d:] == sorted_keys[:-d])
        if len(same) == 0:
            break  # no bucket holds more than d members
        pairs.append(np.stack([order[same], order[same + d]], axis=1))
    return np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)


def _unique_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    keys = np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1])
    return np.stack([keys // n, keys % n], axis=1)


def estimated_jaccard(sig: np.ndarray, pairs: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """MinHash estimate of the Jaccard similarity of each pair of signature rows."""
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), chunk):
        u, v = pairs[lo : lo + chunk, 0], pairs[lo : lo + chunk, 1]
        out[lo : lo + chunk] = (sig[u] == sig[v]).mean(axis=1)
    return out


def lsh_pairs(sig: np.ndarray, bands: int, rows: int, threshold: float | None = None) -> np.ndarray:
    """Candidate pairs of rows whose signatures agree on all values of at least one band.

    Rows with identical signatures are linked to the first of them (a star, not every pair),
    and only that first one enters the banding, so many exact copies stay cheap.

    Args:
        sig: MinHash signatures, one row per text.
        bands: number of bands.
        rows: signature values per band.
        threshold: when given, keep only pairs whose estimated Jaccard similarity reaches it.

    Returns:
        int64 array ``(k, 2)`` of ``(i, j)`` with ``i < j``, sorted.
    """
    n = len(sig)
    _, first, inverse = np.unique(_row_hash(sig), return_index=True, return_inverse=True)
    twin = first[inverse.reshape(-1)]
    copies = np.flatnonzero(twin != np.arange(n))
    exact = np.stack([twin[copies], copies], axis=1)
    reps = np.sort(first)
    band_pairs = [_bucket_pairs(_row_hash(sig[reps, k * rows : (k + 1) * rows])) for k in range(bands)]
    candidates = reps[np.concatenate(band_pairs)] if band_pairs else np.empty((0, 2), dtype=np.int64)
    candidates = _unique_pairs(candidates, n) if len(candidates) else candidates
    if threshold is not None and len(candidates):
        candidates = candidates[estimated_jaccard(sig, candidates) >= threshold]
    return _unique_pairs(np.concatenate([exact, candidates]).astype(np.int64), max(n, 1))


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Per row: the hash of its whole signature, then the hash of each of its `bands` bands.

    These ``bands + 1`` values are all `lsh_pairs_from_keys` needs to find candidates, so a large
    table keeps them (a few words per row) instead of its signatures (`num_perm` words per row).
    """
    columns = [_row_hash(sig)] + [_row_hash(sig[:, k * rows : (k + 1) * rows]) for k in range(bands)]
    return np.stack(columns, axis=1) if len(sig) else np.empty((0, bands + 1), dtype=np.uint64)


def lsh_pairs_from_keys(keys: np.ndarray, signatures_of, threshold: float | None = None) -> np.ndarray:
    """`lsh_pairs` from `band_keys` output: the same pairs, without every signature in memory.

    Args:
        keys: `band_keys` of every row.
        signatures_of: called with the sorted row indices that are in a candidate pair, returns
            their signatures; only used when `threshold` is given.
        threshold: when given, keep only pairs whose estimated Jaccard similarity reaches it.
    """
    n = len(keys)
    _, first, inverse = np.unique(keys[:, 0], return_index=True, return_inverse=True)
    twin = first[inverse.reshape(-1)]
    copies = np.flatnonzero(twin != np.arange(n))
    exact = np.stack([twin[copies], copies], axis=1)
    reps = np.sort(first)
    band_pairs = [_bucket_pairs(keys[reps, 1 + k]) for k in range(keys.shape[1] - 1)]
    candidates = reps[np.concatenate(band_pairs)] if band_pairs else np.empty((0, 2), dtype=np.int64)
    candidates = _unique_pairs(candidates, n) if len(candidates) else candidates
    if threshold is not None and len(candidates):
        needed = np.unique(candidates)
        local = np.searchsorted(needed, candidates)
        candidates = candidates[estimated_jaccard(signatures_of(needed), local) >= threshold]
    return _unique_pairs(np.concatenate([exact, candidates]).astype(np.int64), max(n, 1))


def union_find(n: int, pairs: np.ndarray) -> np.ndarray:
    """The root of each of `n` nodes joined by `pairs`: the smallest index of its connected component."""
    parent = np.arange(n)
    u, v = pairs[:, 0], pairs[:, 1]
    while True:
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            return parent
        # Hook the larger root under the smaller one, then compress every path to its root.
        np.minimum.at(parent, np.maximum(pu, pv)[differ], np.minimum(pu, pv)[differ])
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


# ----------------------------------------------------------------------------- public API


def near_duplicate_pairs(
    texts: Sequence[str],
    *,
    ngram: int = 5,
    num_perm: int = 128,
    threshold: float = 0.7,
    bands: int | None = None,
    rows: int | None = None,
    weights: tuple[float, float] = (0.5, 0.5),
    verify: bool = True,
    seed: int = 1,
    batch_size: int = 1000,
    num_proc: int = 1,
    hash_function: str = "xxh3",
) -> np.ndarray:
    """Pairs of near-duplicate texts found by MinHash LSH; they link the texts into clusters.

    Args:
        texts: the documents.
        ngram: words per shingle.
        num_perm: MinHash permutations (signature length).
        threshold: Jaccard similarity aimed at; picks bands/rows when those are not given.
        bands: LSH bands (give with `rows`).
        rows: signature values per band (give with `bands`).
        weights: (false positive, false negative) weights for choosing bands/rows.
        verify: keep only candidates whose estimated Jaccard similarity reaches `threshold`.
        seed: seed of the permutations.
        batch_size: texts per signature batch.
        num_proc: worker processes for the signatures.
        hash_function: `xxh3` (fast) or `sha1` (datasketch's MinHash, value for value).

    Returns:
        int64 array ``(k, 2)`` of ``(i, j)``, ``i < j``. Exact copies are linked to their first
        occurrence only, so this is a set of edges, not every similar pair.
    """
    bands, rows = check_params("near_dedup", ngram, num_perm, threshold, bands, rows, weights)
    _check_hash_function("near_dedup", hash_function)
    sig = _signatures(list(texts), ngram, num_perm, seed, batch_size, num_proc, hash_function)
    return lsh_pairs(sig, bands, rows, threshold if verify else None)


def near_duplicate_clusters(texts: Sequence[str], **kwargs) -> np.ndarray:
    """For each text, the index of the first text of its near-duplicate cluster (itself if it is first).

    Takes the keyword arguments of `near_duplicate_pairs`.
    """
    texts = list(texts)
    return union_find(len(texts), near_duplicate_pairs(texts, **kwargs))


@dataclass
class NearDedup(SanitizeStep):
    """Drop rows that are near-duplicates of an earlier row (MinHash + LSH over word n-grams).

    Rows join a cluster when their signatures agree on a whole band (and, with `verify`, their
    estimated Jaccard similarity reaches `threshold`); clusters are transitive. The first row of
    a cluster is kept, the others get ``near_duplicate:of_row=<index of the kept row>``, indices
    being positions in the table this step sees. Texts with fewer than `ngram` words are one
    shingle, their whole word sequence; rows with no words at all are duplicates of each other.

    Args:
        ngram: words per shingle.
        num_perm: MinHash permutations.
        threshold: Jaccard similarity to catch, strictly between 0 and 1.
        bands: LSH bands; give with `rows` to override the choice made from `threshold`.
        rows: signature values per band.
        weights: (false positive, false negative) weights of the bands/rows choice, as datasketch.
        verify: confirm candidates by estimated Jaccard similarity >= threshold.
        seed: seed of the permutations.
        same_label: on classification data, rows with different labels are never near-duplicates
            of each other (a text with two labels is a conflict, which `exact_dedup` reports or drops).
        hash_function: `xxh3` (fast default) or `sha1`, which reproduces datasketch's MinHash exactly.
    """

    ngram: int = 5
    num_perm: int = 128
    threshold: float = 0.7
    bands: int | None = None
    rows: int | None = None
    weights: tuple[float, float] = (0.5, 0.5)
    verify: bool = True
    seed: int = 1
    same_label: bool = True
    hash_function: str = "xxh3"
    name: ClassVar[str] = "near_dedup"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_hash_function(self.name, self.hash_function)
        self.weights = tuple(self.weights)
        self._bands, self._rows = check_params(
            self.name, self.ngram, self.num_perm, self.threshold, self.bands, self.rows, self.weights
        )

    def __call__(self, table, ctx: StepContext):
        keys = self._row_keys(table, ctx)
        a, b = _permutations(self.num_perm, self.seed, self.hash_function)

        def signatures_of(rows: np.ndarray) -> np.ndarray:
            # Only rows in a candidate pair need their whole signature: recomputing a few beats holding all.
            texts: list[str] = []
            picked = table.select(rows.tolist())
            for batch in picked.iter(batch_size=ctx.batch_size):
                texts.extend(row_texts(batch, ctx))
            return minhash_signatures(texts, self.ngram, a, b, self.hash_function)

        pairs = lsh_pairs_from_keys(keys, signatures_of, self.threshold if self.verify else None)
        roots = union_find(len(keys), pairs)
        duplicate = roots != np.arange(len(keys))
        reasons = np.full(len(keys), "", dtype=object)
        reasons[duplicate] = [f"near_duplicate:of_row={root}" for root in roots[duplicate].tolist()]
        self.notes = {"lsh_bands": self._bands, "lsh_rows": self._rows}
        return mark(table, _string_array(reasons))

    def _row_keys(self, table, ctx: StepContext) -> np.ndarray:
        """`band_keys` of every row, computed batch by batch (in `ctx.num_proc` workers)."""
        if len(table) == 0:
            return np.empty((0, self._bands + 1), dtype=np.uint64)
        a, b, hash_function = *_permutations(self.num_perm, self.seed, self.hash_function), self.hash_function
        # Classification rows with different labels are a conflict (exact_dedup's business), not duplicates.
        by_label = self.same_label and ctx.format == "classification" and "label" in table.column_names
        ngram, bands, rows = self.ngram, self._bands, self._rows

        def batch_fn(batch):
            keys = band_keys(minhash_signatures(row_texts(batch, ctx), ngram, a, b, hash_function), bands, rows)
            if by_label:
                keys ^= _fmix64(np.fromiter(map(_label_hash, batch["label"]), dtype=np.uint64))[:, None]
            return {_KEYS: keys}

        columns = [*present_fields(table.column_names, ctx), *(["label"] if by_label else [])]
        return np.concatenate(map_batches(table, ctx, batch_fn, columns, parallel=True)[_KEYS])


def _check_hash_function(step: str, value: str) -> None:
    if value not in HASH_FUNCTIONS:
        raise ConfigError(f"{step}.hash_function: {value!r} is not one of {list(HASH_FUNCTIONS)}")


def _label_hash(label) -> int:
    return xxhash.xxh3_64_intdigest(str(label).encode())


def _string_array(values: np.ndarray):
    import pyarrow as pa

    return pa.array(values, type=pa.string())
