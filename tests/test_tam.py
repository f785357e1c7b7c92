import numpy as np
import torch
from reweight_data import sentiment_texts

from sungen_ray.tam import Ragged, TamConfig, accuracy, build_encoder, build_model, train
from sungen_ray.tam.bow import bag_mean_backward
from sungen_ray.tam.hashing import hash_ngrams
from sungen_ray.tam.row_optim import RowAdam


def test_hashing_is_stable_and_per_text():
    tokens, offsets = hash_ngrams(["Hello world!", "", "hello  WORLD again"], 1 << 16)
    assert offsets.tolist() == [0, 5, 5, 10]  # 3 tokens + 2 bigrams, nothing, 3 + 2
    assert tokens[0] == tokens[5] and tokens[1] == tokens[6]  # case-insensitive, same ids across texts
    again, _ = hash_ngrams(["hello world!"], 1 << 16)
    assert again.tolist() == tokens[:5].tolist()
    chunked, chunk_offsets = hash_ngrams(["a b", "c d e", "f"], 1 << 10, chunk=1)
    whole, whole_offsets = hash_ngrams(["a b", "c d e", "f"], 1 << 10)
    assert chunked.tolist() == whole.tolist() and chunk_offsets.tolist() == whole_offsets.tolist()


def test_ragged_batch_and_subset():
    data = Ragged(torch.arange(10, dtype=torch.int32), torch.tensor([0, 3, 3, 7, 10]))
    tokens, bags = data.batch(torch.tensor([3, 0, 1]))
    assert tokens.tolist() == [7, 8, 9, 0, 1, 2] and bags.tolist() == [0, 3, 6]
    sub = data.subset(torch.tensor([2]))
    assert sub.tokens.tolist() == [3, 4, 5, 6] and sub.offsets.tolist() == [0, 4]


def test_each_tam_learns_a_separable_task():
    texts, labels = sentiment_texts(400)
    y = torch.from_numpy(labels)
    for name, kw in [("bow", {"batch_size": 32, "buckets": 1 << 12}), ("lstm", {"max_len": 16, "vocab_size": 500})]:
        cfg = TamConfig(name=name, **kw)
        enc = build_encoder(cfg, texts)
        x = enc.encode(texts)
        torch.manual_seed(0)
        model = build_model(cfg, enc, x, 2)
        train(model, x, y, cfg=cfg, epochs=3)
        assert accuracy(model, x, y) > 0.95, name


def test_weighted_training_ignores_zero_weight_rows():
    texts, labels = sentiment_texts(400)
    cfg = TamConfig(name="bow", batch_size=32, buckets=1 << 12)
    enc = build_encoder(cfg)
    x = enc.encode(texts)
    wrong = torch.from_numpy(np.where(np.arange(400) < 200, labels, 1 - labels))
    w = torch.tensor([1.0] * 200 + [0.0] * 200)
    torch.manual_seed(0)
    model = build_model(cfg, enc, x, 2)
    train(model, x, wrong, w, cfg=cfg, epochs=3)
    assert accuracy(model, x, torch.from_numpy(labels)) > 0.95


def _bow_after_training(sparse: bool, optimizer: str):
    texts, labels = sentiment_texts(300)
    cfg = TamConfig(name="bow", buckets=1 << 14, batch_size=16, optimizer=optimizer, lr=0.05, sparse=sparse)
    enc = build_encoder(cfg)
    x = enc.encode(texts)
    torch.manual_seed(0)
    model = build_model(cfg, enc, x, 2)
    before = model.embed.weight.detach().clone()
    train(model, x, torch.from_numpy(labels), cfg=cfg, epochs=2, ids=torch.arange(300))
    return before, model, x


def test_sparse_bow_step_is_the_dense_step_on_touched_rows():
    """SGD: the row-wise step is exactly the dense step (untouched rows have zero gradient); Adam:
    rows no batch touched stay as initialised (lazy Adam), touched rows move."""
    _, dense, _ = _bow_after_training(False, "sgd")
    _, sparse, _ = _bow_after_training(True, "sgd")
    for a, b in zip(dense.parameters(), sparse.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    before, model, x = _bow_after_training(True, "adam")
    touched = torch.zeros(len(before), dtype=torch.bool)
    touched[x.tokens.long()] = True
    moved = (model.embed.weight.detach() != before).any(1)
    assert torch.equal(moved, touched)


def test_bag_mean_backward_is_embedding_bags_gradient():
    """The CSR bag backward equals autograd through F.embedding_bag(mode="mean"), empty bags included."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50, (400,), generator=gen)
    offsets = torch.tensor([0, 0, 7, 7, 120, 121, 300])
    table = torch.randn(50, 8, generator=gen, requires_grad=True)
    grad_out = torch.randn(len(offsets), 8, generator=gen)
    torch.nn.functional.embedding_bag(tokens, table, offsets, mode="mean").backward(grad_out)
    torch.testing.assert_close(bag_mean_backward(tokens, offsets, grad_out, 50), table.grad)


def test_row_adam_is_adam_on_the_rows_it_steps():
    """Stepping every row (a zero-gradient row included) is torch's Adam; rows left out stay put."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(40, 4, generator=gen)
    reference = torch.nn.Parameter(table.clone())
    adam = torch.optim.Adam([reference], lr=0.01)
    rows_opt = RowAdam(table, 0.01)
    every = torch.arange(40)
    for step in range(4):
        grad = torch.randn(40, 4, generator=gen)
        grad[3] = 0.0
        reference.grad = grad.clone()
        adam.step()
        rows_opt.step(every, grad, table.index_select(0, every) if step % 2 else None)
    torch.testing.assert_close(table, reference.detach())
    before = table.clone()
    rows_opt.step(torch.tensor([5, 9]), torch.randn(2, 4, generator=gen))
    moved = (table != before).any(1)
    assert moved.nonzero().squeeze(1).tolist() == [5, 9]


def test_row_adam_on_an_owned_range_steps_like_the_whole_table():
    """A worker's optimizer holds moments for its own rows only and steps them as the whole-table one."""
    gen = torch.Generator().manual_seed(1)
    whole = torch.randn(40, 4, generator=gen)
    part = whole.clone()
    full_opt, part_opt = RowAdam(whole, 0.01), RowAdam(part, 0.01, owned=(10, 30))
    for rows in ([12, 20], [10, 29], [20]):
        grad = torch.randn(len(rows), 4, generator=gen)
        full_opt.step(torch.tensor(rows), grad)
        part_opt.step(torch.tensor(rows), grad)
    assert part_opt.m.shape == (20, 4)
    torch.testing.assert_close(part, whole, rtol=0, atol=0)


def test_fine_tuned_minilm_learns_saves_and_is_refused_as_the_inner_tam(tmp_path):
    # The whole encoder trains (not only a head): its weights move, the model separates a sentiment
    # task it starts at chance on, and a saved model predicts exactly what the trained one did.
    import pytest

    from sungen_ray.errors import SungenError
    from sungen_ray.reweight.config import ReweightConfig
    from sungen_ray.tam import final as final_model

    texts, labels = sentiment_texts(64)
    cfg = final_model.FinalConfig(tam=TamConfig(name="minilm-ft", max_len=16, lr=2e-4, batch_size=16), epochs=4)
    before = build_model(cfg.tam, None, None, 2).hf.bert.embeddings.word_embeddings.weight.detach().clone()
    trained = final_model.fit(texts, labels, ["negative", "positive"], cfg)
    after = trained.model.hf.bert.embeddings.word_embeddings.weight.detach()
    assert not torch.equal(before, after), "the encoder itself must be fine-tuned"
    probs = trained.predict(texts)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == labels).mean() > 0.9
    final_model.save(tmp_path / "model", trained)
    again = final_model.load(tmp_path / "model")
    assert np.allclose(again.predict(texts), probs, atol=1e-5)
    with pytest.raises(SungenError, match="minilm-ft.*final-model TAM"):
        ReweightConfig(tam=TamConfig(name="minilm-ft")).validate()
