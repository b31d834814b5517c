"""NearDedup against datasketch's MinHash + MinHashLSH run with the same parameters."""

from __future__ import annotations

import numpy as np
import pytest

from modelops.errors import ConfigError
from modelops.sanitize.near_dedup import NearDedup, near_duplicate_clusters, near_duplicate_pairs, optimal_bands_rows
from modelops.sanitize.step import MODIFIED, REASON, StepContext

datasketch = pytest.importorskip("datasketch")

NGRAM, NUM_PERM, THRESHOLD = 5, 128, 0.7


def make_corpus(n_base: int = 2000, n_copies: int = 800, seed: int = 0) -> list[str]:
    """Random-vocabulary paragraphs of 30-80 words, plus near-copies with 0-6 word edits, shuffled."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(5000)]
    base = [list(rng.choice(vocab, rng.integers(30, 81))) for _ in range(n_base)]
    copies = []
    for source in rng.choice(n_base, n_copies):
        words = list(base[source])
        for _ in range(rng.integers(0, 7)):
            at, op = rng.integers(len(words)), rng.integers(3)
            if op == 0:
                words[at] = str(rng.choice(vocab))
            elif op == 1:
                words.insert(at, str(rng.choice(vocab)))
            elif len(words) > 1:
                del words[at]
        copies.append(words)
    docs = [" ".join(w) for w in base + copies]
    return [docs[i] for i in rng.permutation(len(docs))]


def shingles(text: str, n: int = NGRAM) -> set[str]:
    words = text.split()  # the corpus is lowercase letters and spaces: nothing to strip
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return make_corpus()


def datasketch_lsh(corpus: list[str], seed: int):
    """datasketch's candidate pairs and its MinHashes, same shingles, num_perm and threshold."""
    minhashes = []
    lsh = datasketch.MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    for i, text in enumerate(corpus):
        m = datasketch.MinHash(num_perm=NUM_PERM, seed=seed)
        m.update_batch([s.encode() for s in shingles(text)])
        lsh.insert(i, m)
        minhashes.append(m)
    pairs = {(min(i, j), max(i, j)) for i, m in enumerate(minhashes) for j in lsh.query(m) if j != i}
    return pairs, minhashes


@pytest.fixture(scope="module")
def reference(corpus):
    return datasketch_lsh(corpus, seed=1)


@pytest.fixture(scope="module")
def reference_reseeded(corpus):
    """datasketch again with other permutations: how far the reference agrees with itself."""
    return datasketch_lsh(corpus, seed=2)


def verified(pairs, minhashes) -> set[tuple[int, int]]:
    return {(i, j) for i, j in pairs if minhashes[i].jaccard(minhashes[j]) >= THRESHOLD}


def components(n: int, pairs) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def true_jaccard(corpus: list[str], i: int, j: int) -> float:
    a, b = shingles(corpus[i]), shingles(corpus[j])
    return len(a & b) / len(a | b)


def recall(labels: np.ndarray, pairs) -> float:
    """Share of `pairs` whose two rows share a cluster label."""
    return sum(labels[i] == labels[j] for i, j in pairs) / len(pairs)


def assert_recall(corpus, labels, ref_pairs, reseeded_pairs):
    # Clear near-duplicates (true Jaccard >= threshold + 0.1): LSH catches them almost surely.
    clear = {(i, j) for i, j in ref_pairs if true_jaccard(corpus, i, j) >= THRESHOLD + 0.1}
    assert len(clear) > 100
    assert recall(labels, clear) >= 0.95
    # Near the threshold banding is a coin flip for any hash family, so datasketch with other
    # permutations only partly agrees with itself; ours must agree with it as well, up to noise.
    self_agreement = recall(components(len(corpus), reseeded_pairs), ref_pairs)
    assert recall(labels, ref_pairs) >= self_agreement - 0.05


def test_bands_rows_match_datasketch_choice():
    for threshold, num_perm in [(0.5, 64), (0.7, 128), (0.85, 128), (0.9, 256), (0.3, 100)]:
        lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=num_perm)
        assert optimal_bands_rows(threshold, num_perm) == (lsh.b, lsh.r), (threshold, num_perm)


def test_candidates_recall_datasketch_lsh(corpus, reference, reference_reseeded):
    pairs, _ = reference
    assert len(pairs) > 300  # the corpus really holds near-duplicates
    labels = near_duplicate_clusters(corpus, ngram=NGRAM, num_perm=NUM_PERM, threshold=THRESHOLD, verify=False)
    assert_recall(corpus, labels, pairs, reference_reseeded[0])


def test_verified_pairs_recall_datasketch_estimate(corpus, reference, reference_reseeded):
    labels = near_duplicate_clusters(corpus, ngram=NGRAM, num_perm=NUM_PERM, threshold=THRESHOLD)
    assert_recall(corpus, labels, verified(*reference), verified(*reference_reseeded))


def test_verified_clusters_hold_similar_texts(corpus):
    roots = near_duplicate_clusters(corpus, ngram=NGRAM, num_perm=NUM_PERM, threshold=THRESHOLD)
    members = np.flatnonzero(roots != np.arange(len(corpus)))
    similarity = np.array([true_jaccard(corpus, i, roots[i]) for i in members])
    # Clusters are transitive, so a member may be a step removed from its root; most are close.
    assert len(members) > 200
    assert np.mean(similarity >= THRESHOLD - 0.15) >= 0.9


def test_pairs_find_exact_copies_and_spare_a_different_text(corpus):
    text = " ".join(corpus[:4])  # ~200 words: one edit leaves a true Jaccard of about 0.95
    other = "an entirely different text about the weather that shares nothing with the rest"
    near = text.split()
    near[len(near) // 2] = "edited"
    pairs = {tuple(p) for p in near_duplicate_pairs([text, other, text, " ".join(near)] + [text] * 3).tolist()}
    assert {(0, 2), (0, 3), (0, 4), (0, 5), (0, 6)} <= pairs  # copies and the near copy link to the first
    assert not any(1 in p for p in pairs)


def test_workers_give_the_same_clusters(corpus):
    texts = corpus[:1200]
    one = near_duplicate_clusters(texts, batch_size=300, num_proc=1)
    two = near_duplicate_clusters(texts, batch_size=300, num_proc=2)
    np.testing.assert_array_equal(one, two)


def test_explicit_bands_rows(corpus, reference):
    # Banding 32 x 4 is far looser than 14 x 9: it must catch at least what datasketch's LSH did.
    pairs, _ = reference
    labels = near_duplicate_clusters(corpus, bands=32, rows=4, verify=False)
    assert recall(labels, pairs) >= 0.99


def _step_table():
    import datasets

    rng = np.random.default_rng(1)
    long_text = " ".join(f"w{k}" for k in rng.integers(0, 10_000, 200))
    edited = long_text.split()
    edited[100] = "changed"
    texts = [
        long_text,  # 0: kept, first of its cluster
        "a completely different sentence about gardening and tomatoes in the summer heat",  # 1: kept
        " ".join(edited),  # 2: one word changed -> near duplicate of 0
        long_text.upper() + "!",  # 3: same words after lowercasing / punctuation stripping
        "a completely different sentence about gardening and tomatoes in the summer heat",  # 4: copy of 1
        "short one",  # 5: fewer than 5 words, compared on its whole sequence
        "Short one.",  # 6: same words as 5
        "short two",  # 7: different
    ]
    return datasets.Dataset.from_dict({"text": texts, "label": list(range(len(texts)))})


def test_step_keeps_first_of_each_cluster_and_leaves_rows_unchanged():
    table = _step_table()
    before = table.to_dict()
    # Every row has its own label: as text rows (labels ignored) the clusters are by text alone.
    out = NearDedup()(table, StepContext(format="text"))
    assert out[REASON] == [
        "",
        "",
        "near_duplicate:of_row=0",
        "near_duplicate:of_row=0",
        "near_duplicate:of_row=1",
        "",
        "near_duplicate:of_row=5",
        "",
    ]
    assert out[MODIFIED] == [False] * len(table)
    assert out.select_columns(["text", "label"]).to_dict() == before
    assert table.to_dict() == before and REASON not in table.column_names


def test_step_on_empty_table():
    import datasets

    out = NearDedup()(datasets.Dataset.from_dict({"text": []}), StepContext())
    assert len(out) == 0 and REASON in out.column_names


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 0.0}, "near_dedup.threshold"),
        ({"threshold": 1.0}, "near_dedup.threshold"),
        ({"threshold": 1.5}, "near_dedup.threshold"),
        ({"ngram": 0}, "near_dedup.ngram"),
        ({"num_perm": 1}, "near_dedup.num_perm"),
        ({"bands": 20, "rows": 10}, "near_dedup.bands"),
        ({"bands": 16}, "near_dedup.rows"),
        ({"rows": 0, "bands": 4}, "near_dedup.rows"),
    ],
)
def test_bad_params_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        NearDedup(**kwargs)


def test_sha1_mode_reproduces_datasketch_and_finds_its_pairs(corpus, reference):
    from modelops.sanitize.near_dedup import _permutations, minhash_signatures

    pairs, minhashes = reference
    a, b = _permutations(NUM_PERM, 1, "sha1")
    signatures = minhash_signatures(corpus[:300], NGRAM, a, b, "sha1")
    assert all((m.hashvalues.astype(np.uint64) == s).all() for m, s in zip(minhashes[:300], signatures, strict=True))
    options = {"ngram": NGRAM, "num_perm": NUM_PERM, "threshold": THRESHOLD, "hash_function": "sha1"}
    # The criterion, on every pair datasketch's LSH finds: at least 95% (here: all of them).
    assert recall(near_duplicate_clusters(corpus, verify=False, **options), pairs) >= 0.95
    assert recall(near_duplicate_clusters(corpus, **options), verified(pairs, minhashes)) >= 0.95


def test_unknown_hash_function_is_a_config_error():
    with pytest.raises(ConfigError, match=r"near_dedup\.hash_function"):
        NearDedup(hash_function="md5")
