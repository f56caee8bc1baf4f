"""Tests for labcore.embed: masked mean pooling (arXiv 2305.09246 step 1), normalisation, parity, cache."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from labcore import embed  # noqa: E402
from labcore.embed import EmbeddingCache, embed_texts, l2_normalise, mean_pool, minilm_path, text_key  # noqa: E402

TEXTS = [
    "Premise: A man is playing a guitar. Hypothesis: A person makes music. Entailment?",
    "Which word fits: The trophy doesn't fit in the suitcase because _ is too big.",
    "short",
    "Complete the story: She opened the door and saw that the garden had been covered by snow overnight, so she",
]


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache folder."""
    monkeypatch.setenv("LABCORE_CACHE", str(tmp_path / "cache"))


def test_mean_pool_hand_computed():
    # Row 0: tokens [1, 2], [3, 4] real, [100, 100] padding -> mean (2, 3). Row 1: one real token (5, 6).
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                      [[5.0, 6.0], [-7.0, 9.0], [8.0, 8.0]]])  # (B=2, T=3, d=2)
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    torch.testing.assert_close(mean_pool(h, m), torch.tensor([[2.0, 3.0], [5.0, 6.0]]))
    torch.testing.assert_close(l2_normalise(torch.tensor([[3.0, 4.0], [0.0, 0.0]])),
                               torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


@torch.no_grad()
def test_padded_batch_pooling_equals_unpadded_per_text():
    tokenizer, model = embed.load_encoder("minilm", "cpu")
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding for this test to mean anything"
    pooled = mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])  # (B, d)
    for i, t in enumerate(TEXTS):
        one = tokenizer([t], return_tensors="pt")
        h = model(**one).last_hidden_state[0]  # (T_i, d), no padding at all
        torch.testing.assert_close(pooled[i], h.mean(dim=0), atol=2e-5, rtol=1e-4)


def test_embeddings_normalised_and_match_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    e = embed_texts(TEXTS, batch_size=3, progress=False)
    assert e.dtype == np.float32 and e.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    ref = st.SentenceTransformer(str(minilm_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(e, ref, atol=1e-5)


def test_order_restored_and_duplicates():
    texts = ["b", "a much longer text than the others", "b", "c c"]
    e = embed_texts(texts, progress=False, cache=False)
    single = np.stack([embed_texts([t], progress=False, cache=False)[0] for t in texts])
    np.testing.assert_allclose(e, single, atol=1e-5)
    np.testing.assert_array_equal(e[0], e[2])


def _count_encode(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = embed._encode

    def counting(texts, *args, **kwargs):
        calls.append(list(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(embed, "_encode", counting)
    return calls


def test_cache_full_hit_runs_no_model(monkeypatch):
    calls = _count_encode(monkeypatch)
    first = embed_texts(TEXTS, progress=False)
    assert len(calls) == 1
    second = embed_texts(TEXTS, progress=False)
    assert len(calls) == 1, "a full cache hit must not run the model"
    np.testing.assert_array_equal(first, second)
    # A different max_length is a different cache entry (truncation changes embeddings).
    embed_texts(TEXTS, progress=False, max_length=8)
    assert len(calls) == 2


def test_cache_partial_hit_embeds_only_missing(monkeypatch):
    calls = _count_encode(monkeypatch)
    embed_texts(TEXTS[:2], progress=False)
    mixed = [TEXTS[3], TEXTS[1], TEXTS[2], TEXTS[0]]
    e = embed_texts(mixed, progress=False)
    assert calls[-1] == [TEXTS[3], TEXTS[2]], calls
    np.testing.assert_allclose(e, embed_texts(mixed, progress=False, cache=False), atol=1e-5)


def test_cache_shards_merge_and_stay_readable(tmp_path):
    cache = EmbeddingCache("minilm", 256, root=tmp_path / "emb")
    rng = np.random.default_rng(0)
    rows = {}
    for s in range(embed._MAX_SHARDS + 2):  # one shard per call: forces a merge
        texts = [f"text {s}-{j}" for j in range(3)]
        vecs = rng.standard_normal((3, 4)).astype(np.float32)
        cache.store([text_key(t) for t in texts], vecs)
        rows.update(zip(texts, vecs))
    assert len(list(cache.dir.glob("*.npz"))) <= embed._MAX_SHARDS
    names = sorted(rows)
    got, found = cache.lookup([text_key(t) for t in names] + [text_key("never stored")])
    assert found[:-1].all() and not found[-1]
    np.testing.assert_array_equal(got[:-1], np.stack([rows[t] for t in names]))


def test_offline_unknown_model_raises_naming_minilm(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="minilm"):
        embed_texts(["x"], model="no-such-org/no-such-encoder", cache=False, progress=False)


def test_chunks_are_cached_as_they_finish(monkeypatch):
    """A long run writes each chunk to the cache as soon as it is embedded (an interruption keeps them)."""
    monkeypatch.setattr(embed, "_CHUNK", 2)
    calls = _count_encode(monkeypatch)
    e = embed_texts(TEXTS + ["one more"], progress=False)
    assert [len(c) for c in calls] == [2, 2, 1]
    assert len(list(EmbeddingCache("minilm", 256).dir.glob("*.npz"))) == 3
    np.testing.assert_allclose(e, embed_texts(TEXTS + ["one more"], progress=False, cache=False), atol=1e-5)


def test_length_buckets_equal_one_text_at_a_time(monkeypatch):
    """Token-budget batches of different sizes (1, 2, 3 texts) give what embedding each text alone gives."""
    texts = TEXTS + ["tiny", "a b c d e f g h i j k l m n o p"]
    tok, _ = embed.load_encoder("minilm", "cpu")
    longest = max(len(x) for x in tok(texts, truncation=True, max_length=256)["input_ids"])
    e = embed_texts(texts, cache=False, progress=False, tokens_per_batch=2 * longest)
    single = np.stack([embed_texts([t], cache=False, progress=False)[0] for t in texts])
    np.testing.assert_allclose(e, single, atol=2e-5)


def test_cancel_keeps_what_was_embedded(monkeypatch):
    import threading

    cancel = threading.Event()
    seen = []

    def on_progress(done, total, eta):  # cancel after the first batch
        seen.append((done, total))
        assert eta >= 0
        cancel.set()

    with pytest.raises(embed.EmbeddingCancelled, match="1 of 4"):
        embed_texts(TEXTS, progress=False, batch_size=1, cancel=cancel, on_progress=on_progress)
    assert seen == [(1, 4)]
    calls = _count_encode(monkeypatch)
    e = embed_texts(TEXTS, progress=False)  # embeds only the 3 texts not reached, then returns all 4
    assert len(calls) == 1 and len(calls[0]) == 3
    np.testing.assert_allclose(e, embed_texts(TEXTS, progress=False, cache=False), atol=1e-5)


def test_int8_is_close_but_cached_apart():
    e32 = embed_texts(TEXTS, progress=False)
    e8 = embed_texts(TEXTS, progress=False, quantize="int8")
    cos = (e32 * e8).sum(1)
    assert (cos > 0.9).all() and not np.array_equal(e32, e8), cos  # a different model variant, close to float32
    assert EmbeddingCache("minilm", 256, quantize="int8").dir != EmbeddingCache("minilm", 256).dir
    with pytest.raises(ValueError, match="quantize"):
        embed_texts(TEXTS, progress=False, quantize="int4")


def test_shipped_embeddings_match_the_encoder():
    """The float16 rows shipped in data/embeddings are what the encoder computes (a sample re-embedded)."""
    from labcore.coreset import example_text, load_instruction_set

    shard = embed.SHIPPED_DIR / embed.model_cache_id("minilm", 256) / "instructions-train.npz"
    assert shard.is_file(), "run: labcore embed --ship"
    with np.load(shard) as z:
        keys, emb = z["keys"], z["emb"]
    assert emb.dtype == np.float16 and emb.shape == (len(keys), 384)
    records = [r for r in load_instruction_set(embed.DATA_DIR / "instructions.jsonl.gz") if r["split"] == "train"]
    texts = list(dict.fromkeys(example_text(r) for r in records))
    assert len(texts) == len(keys)
    row_of = {k.tobytes(): i for i, k in enumerate(keys)}
    sample = [texts[i] for i in np.random.default_rng(0).choice(len(texts), 24, replace=False)]
    fresh = embed_texts(sample, cache=False, progress=False)  # (24, 384) float32 from the encoder
    shipped = emb[[row_of[text_key(t)] for t in sample]].astype(np.float32)
    np.testing.assert_allclose(shipped, fresh, atol=1e-3)
    # embed_texts serves them from the shipped file (renormalised), without running the encoder
    served = embed_texts(sample, progress=False)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-6)
    assert (served * fresh).sum(1).min() > 0.99999
    np.testing.assert_allclose(served, shipped / np.linalg.norm(shipped, axis=1, keepdims=True), rtol=1e-6)
