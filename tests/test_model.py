import itertools
import math

import pytest
import torch

from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer, dag_log_likelihood
from exlm_chem.model import dag_best_path
from exlm_chem.model.dag import TransitionHead
from exlm_chem.model.encoder import (
    apply_rotary,
    attention,
    attention_by_hand,
    dropout,
    rotary_tables,
)
from exlm_chem.model.expansion import choose_mask_positions, expand_states

EXPAND = torch.tensor([1, 2, 3])  # <s>, </s>, <mask>


def random_dag(num_states, target_lens, vocab_paths=None, seed=0, dtype=torch.float64):
    """Random emissions and row-normalised transitions over j > i (ragged batch)."""
    g = torch.Generator().manual_seed(seed)
    B, S, T = len(num_states), max(num_states), max(target_lens)
    emission = torch.randn(B, S, T, generator=g, dtype=dtype).log_softmax(-1)
    scores = torch.randn(B, S, S, generator=g, dtype=dtype)
    allowed = torch.ones(S, S, dtype=torch.bool).triu(1).expand(B, S, S).clone()
    for b, n in enumerate(num_states):
        allowed[b, n:, :] = False
        allowed[b, :, n:] = False
    transition = (
        scores.masked_fill(~allowed, float("-inf")).log_softmax(-1).nan_to_num(nan=float("-inf"))
    )
    transition = transition.masked_fill(~allowed, float("-inf"))
    return emission, transition


def brute_force(emission, transition, num_states, target_lens):
    out = []
    for b, (S, T) in enumerate(zip(num_states, target_lens)):
        scores = []
        if T == 1:
            scores = [emission[b, 0, 0]] if S == 1 else []
        for inner in itertools.combinations(range(1, S - 1), T - 2) if T >= 2 else []:
            path = (0, *inner, S - 1)
            score = sum(emission[b, u, i] for i, u in enumerate(path))
            score = score + sum(transition[b, path[i - 1], path[i]] for i in range(1, T))
            scores.append(score)
        out.append(
            torch.logsumexp(torch.stack(scores), 0)
            if scores
            else torch.tensor(float("-inf"), dtype=emission.dtype)
        )
    return torch.stack(out)


@pytest.mark.parametrize("seed", range(4))
def test_dag_equals_brute_force_on_ragged_batches(seed):
    num_states = [8, 12, 4, 9, 6]
    target_lens = [4, 3, 3, 6, 7]  # the last one has no path: 7 states needed, 6 exist
    emission, transition = random_dag(num_states, target_lens, seed=seed)
    ours = dag_log_likelihood(
        emission, transition, torch.tensor(num_states), torch.tensor(target_lens)
    )
    expected = brute_force(emission, transition, num_states, target_lens)
    assert ours.dtype == torch.float64
    assert torch.isinf(ours[-1]) and ours[-1] < 0
    torch.testing.assert_close(ours[:-1], expected[:-1], rtol=1e-10, atol=1e-10)


def test_dag_gradcheck():
    num_states, target_lens = [6, 8, 5], [3, 5, 4]
    emission, transition = random_dag(num_states, target_lens, seed=7)
    allowed = torch.isfinite(transition)
    emission.requires_grad_(True)
    finite_values = transition[allowed].clone().requires_grad_(True)

    def fn(emission, values):
        full = torch.full_like(transition, float("-inf")).masked_scatter(allowed, values)
        return dag_log_likelihood(
            emission, full, torch.tensor(num_states), torch.tensor(target_lens)
        )

    assert torch.autograd.gradcheck(fn, (emission, finite_values), eps=1e-6, atol=1e-6)


def test_dag_gradient_is_finite_with_impossible_molecules():
    emission, transition = random_dag([5, 4], [3, 6], dtype=torch.float32)
    emission.requires_grad_(True)
    result = dag_log_likelihood(emission, transition, torch.tensor([5, 4]), torch.tensor([3, 6]))
    result[0].backward()
    assert torch.isfinite(emission.grad).all()


def test_best_path_is_the_highest_scoring_path():
    num_states, target_lens = [7, 9], [4, 5]
    emission, transition = random_dag(num_states, target_lens, seed=3)
    path = dag_best_path(emission, transition, torch.tensor(num_states), torch.tensor(target_lens))
    for b, (S, T) in enumerate(zip(num_states, target_lens)):
        best = max(
            itertools.combinations(range(1, S - 1), T - 2),
            key=lambda inner: (
                sum(emission[b, u, i] for i, u in enumerate((0, *inner, S - 1)))
                + sum(transition[b, a, c] for a, c in zip((0, *inner), (*inner, S - 1)))
            ),
        )
        assert path[b, :T].tolist() == [0, *best, S - 1]


def test_expansion_hand_worked_example():
    # <s> C <mask> O </s>  and a shorter padded molecule  <s> <mask> </s>
    ids = torch.tensor([[1, 5, 3, 6, 2], [1, 3, 2, 0, 0]])
    batch = expand_states(ids, k=2, expand_ids=EXPAND, pad_id=0)
    assert batch.ids.tolist() == [[1, 1, 5, 3, 3, 6, 2, 2], [1, 1, 3, 3, 2, 2, 0, 0]]
    assert batch.p1.tolist() == [[0, 0, 1, 2, 2, 3, 4, 4], [0, 0, 1, 1, 2, 2, 0, 0]]
    assert batch.p2.tolist() == [[1, 2, 0, 1, 2, 0, 1, 2], [1, 2, 1, 2, 1, 2, 0, 0]]
    assert batch.valid.tolist() == [[True] * 8, [True] * 6 + [False] * 2]
    assert batch.expanded.tolist() == [
        [True, True, False, True, True, False, True, True],
        [True] * 6 + [False] * 2,
    ]
    # n real tokens and M masks give n + 2 + (M + 2)(k - 1) states.
    k = 4
    batch = expand_states(ids, k=k, expand_ids=EXPAND, pad_id=0)
    assert batch.valid.sum(1).tolist() == [3 + 2 + 3 * (k - 1), 1 + 2 + 3 * (k - 1)]
    assert batch.expanded.sum(1).tolist() == [k * 3, k * 3]


def test_expansion_with_k1_has_zero_p2():
    ids = torch.tensor([[1, 5, 3, 2]])
    batch = expand_states(ids, k=1, expand_ids=EXPAND, pad_id=0)
    assert (
        torch.equal(batch.ids, ids)
        and batch.p2.abs().sum() == 0
        and batch.p1.tolist() == [[0, 1, 2, 3]]
    )


def test_masks_cover_each_real_token_at_the_mask_rate():
    # Molecules of 1 to 60 real tokens between <s> and </s>, padded.
    lengths = torch.arange(1, 61)
    L = int(lengths.max()) + 2
    ids = torch.zeros(len(lengths), L, dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):
        ids[row, : n + 2] = torch.tensor([1] + [5] * n + [2])
    special = torch.tensor([0, 1, 2, 3])
    rate, draws = 0.15, 400
    g = torch.Generator().manual_seed(0)
    hits = torch.zeros(ids.shape)
    for _ in range(draws):
        masks = choose_mask_positions(ids, rate, special, g)
        assert not (masks & torch.isin(ids, special)).any()  # only real tokens
        count = masks.sum(1)
        # floor(rate * n + u) masks, at least one.
        assert (
            (count == (rate * lengths).floor().clamp(min=1))
            | (count == (rate * lengths).floor() + 1)
        ).all()
        hits += masks
    # Every real token of a molecule longer than 1 / rate is masked with probability ``rate``.
    long = lengths >= 10
    frequency = hits[long] / draws
    real = ids[long] == 5
    assert abs(frequency[real].mean().item() - rate) < 0.005
    assert frequency[real].std().item() < 0.05


@pytest.mark.parametrize("half", [0, 1])
def test_rope_scores_depend_only_on_position_differences(half):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 16, generator=g)  # one head each
    p = torch.tensor([3, 7]), torch.tensor([1, 2])

    def score(p1, p2):
        cos, sin = rotary_tables(p1, p2, 16, 10_000.0)  # (2 states, 1, 16)
        return apply_rotary(q, cos[0], sin[0])[0] @ apply_rotary(k, cos[1], sin[1])[0]

    base = score(*p)
    for shift in (1, 5, 40):
        shifted = (p[0] + shift, p[1]) if half == 0 else (p[0], p[1] + shift)
        torch.testing.assert_close(score(*shifted), base, rtol=1e-5, atol=1e-5)
    # ... and they do depend on the difference.
    changed = (torch.tensor([0, 5]), p[1]) if half == 0 else (p[0], torch.tensor([0, 5]))
    assert not torch.isclose(score(*changed), base)


def test_rotary_in_bfloat16_matches_float32():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 2, 4, 32, generator=g)
    cos, sin = rotary_tables(torch.arange(50), torch.arange(50) % 4, 32, 10_000.0)
    expected = apply_rotary(x, cos[:, None], sin[:, None])
    # The rotation keeps each pair's norm: a check of the float32 path on its own.
    pairs = expected.unflatten(-1, (2, 2, -1))
    x_pairs = x.unflatten(-1, (2, 2, -1))
    torch.testing.assert_close(pairs.square().sum(-2), x_pairs.square().sum(-2))
    rotated = apply_rotary(x.bfloat16(), cos[:, None], sin[:, None])
    assert rotated.dtype == torch.bfloat16
    torch.testing.assert_close(rotated.float(), expected, rtol=0.02, atol=0.02)


def test_attention_by_hand_matches_the_fused_kernel_with_its_gradients():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 7, 8, generator=g) for _ in range(3))
    mask = (torch.arange(7) < torch.tensor([[7], [4], [1]]))[:, None, None, :]
    upstream = torch.randn(3, 2, 7, 8, generator=g)

    def output_and_grads(function, dtype):
        inputs = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        out = function(*inputs, mask)
        (out.float() * upstream).sum().backward()
        return [out.float()] + [t.grad.float() for t in inputs]

    fused = output_and_grads(torch.nn.functional.scaled_dot_product_attention, torch.float32)
    for got, expected in zip(output_and_grads(attention_by_hand, torch.float32), fused):
        torch.testing.assert_close(got, expected)
    # Training in bfloat16 on a CPU takes the hand-written way: close to float32 all the same.
    for got, expected in zip(output_and_grads(attention, torch.bfloat16), fused):
        torch.testing.assert_close(got, expected, rtol=0.03, atol=0.03)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_drops_each_element_at_the_rate_and_keeps_the_mean(dtype):
    torch.manual_seed(0)
    x = torch.ones(1000, 400, dtype=dtype, requires_grad=True)
    y = dropout(x, 0.1)
    dropped = (y == 0).float()
    # Four elements share a 64-bit draw: each of the four places drops at the rate (the
    # standard error over 100,000 elements is 0.001).
    for rate in dropped.view(-1, 4).mean(0):
        assert abs(rate.item() - 0.1) < 0.005
    assert abs(y.float().mean().item() - 1.0) < 0.01
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # the gradient goes through the same mask
    assert torch.equal(dropout(x, 0.1, training=False), x)
    torch.manual_seed(0)
    assert torch.equal(dropout(x, 0.1), y)  # reproducible from the seed


def test_transition_rows_sum_to_one_over_allowed_successors():
    torch.manual_seed(0)
    head = TransitionHead(hidden_size=16, num_heads=4, max_states=64)
    hidden = torch.randn(2, 6, 16)
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    probs = head(hidden, torch.arange(6).expand(2, 6), valid)
    for b, n in enumerate([6, 4]):
        torch.testing.assert_close(probs[b, : n - 1, :n].sum(-1), torch.ones(n - 1))
        assert probs[b].tril().sum() == 0  # no mass on j <= i
        assert (
            probs[b, :, n:].sum() == 0 and probs[b, n - 1 :].sum() == 0
        )  # padding and the last state


@pytest.fixture(scope="module")
def tokenizer():
    smiles = ["CCO", "c1ccccc1Br", "CC(=O)Nc1ccc(O)cc1", "CN1CCC[C@H]1c1cccnc1", "OC(=O)CCl", "C#N"]
    return SmilesTokenizer.from_corpus(smiles), smiles


def seeded_tiny_model(tok, objective):
    """A `tiny` model in eval mode, with the same weights on every call."""
    torch.manual_seed(0)
    return ExLMModel(
        ExLMConfig.from_preset("tiny", vocab_size=tok.vocab_size, objective=objective)
    ).eval()


@pytest.mark.parametrize("objective", ["exlm", "mlm"])
def test_batch_loss_is_mean_of_molecule_losses(tokenizer, objective):
    tok, smiles = tokenizer
    model = seeded_tiny_model(tok, objective)
    ids = tok.encode_batch(smiles)
    masks = model.choose_masks(ids, torch.Generator().manual_seed(1))
    whole = model(ids, masks).loss
    alone, alone_padded = [], []
    for i in range(len(smiles)):
        length = int((ids[i] != 0).sum())
        alone.append(model(ids[i : i + 1, :length], masks[i : i + 1, :length]).loss)
        alone_padded.append(
            model(ids[i : i + 1], masks[i : i + 1]).loss
        )  # trailing padding columns
    torch.testing.assert_close(whole, torch.stack(alone).mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.stack(alone_padded), torch.stack(alone), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("objective", ["exlm", "mlm"])
def test_a_model_on_the_gpu_takes_cpu_masks_and_matches_the_cpu_loss(tokenizer, objective):
    # Pretraining draws the masks on the CPU (seeded CPU generator) for a model on any device.
    tok, smiles = tokenizer
    model = seeded_tiny_model(tok, objective)
    ids = tok.encode_batch(smiles)
    masks = model.choose_masks(ids, torch.Generator().manual_seed(1))
    expected = model(ids, masks, with_predictions=True)
    model.cuda()
    gpu_masks = model.choose_masks(ids, torch.Generator().manual_seed(1))
    assert torch.equal(gpu_masks, masks)
    got = model(ids.cuda(), masks.cuda(), with_predictions=True)
    torch.testing.assert_close(got.loss.cpu(), expected.loss, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.predictions.cpu(), expected.predictions)


@pytest.mark.parametrize("objective", ["exlm", "mlm"])
def test_embeddings_do_not_depend_on_the_batch(tokenizer, objective):
    tok, smiles = tokenizer
    model = seeded_tiny_model(tok, objective)
    ids = tok.encode_batch(smiles)
    together = model.embed_states(ids).pooled
    for i, s in enumerate(smiles):
        alone = model.embed_states(tok.encode_batch([s])).pooled[0]
        torch.testing.assert_close(together[i], alone, rtol=1e-5, atol=1e-5)
        cls_alone = model.embed_states(tok.encode_batch([s]), pooling="cls").pooled[0]
        torch.testing.assert_close(
            model.embed_states(ids, pooling="cls").pooled[i], cls_alone, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("objective", ["exlm", "mlm"])
def test_layers_read_out_averages_every_layers_token_mean(tokenizer, objective):
    tok, smiles = tokenizer
    model = seeded_tiny_model(tok, objective)
    ids = tok.encode_batch(smiles)
    # Every layer's output as the modules return it, caught by hooks.
    caught = []
    modules = [model.encoder.embed_tokens, *model.encoder.blocks]
    hooks = [m.register_forward_hook(lambda m, i, out: caught.append(out)) for m in modules]
    output = model.embed_states(ids, pooling="mean+cls+layers")
    for hook in hooks:
        hook.remove()
    assert len(caught) == model.config.num_layers + 1
    weights = output.token_states.float()[..., None]
    per_layer = []
    for flat in caught:  # (real states, d), or (B * N, d) when the batch is kept padded
        normed = model.encoder.final_norm(flat)
        if len(flat) == output.valid.numel():
            states = normed.reshape(*output.valid.shape, -1)
        else:
            states = normed.new_zeros(*output.valid.shape, normed.shape[-1])
            states[output.valid] = normed
        per_layer.append((states * weights).sum(1) / weights.sum(1))
    expected_layers = torch.stack(per_layer).mean(0)
    d = model.config.hidden_size
    mean, cls, layers = output.pooled.split(d, dim=1)
    torch.testing.assert_close(layers, expected_layers, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, per_layer[-1], rtol=1e-5, atol=1e-5)  # the last layer
    torch.testing.assert_close(cls, model.embed_states(ids, pooling="cls").pooled)
    assert not torch.allclose(layers, mean, atol=1e-3)
    for i, s in enumerate(smiles):  # and the padding of a batch changes nothing
        alone = model.embed_states(tok.encode_batch([s]), pooling="layers").pooled[0]
        torch.testing.assert_close(layers[i], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("objective", ["exlm", "mlm"])
def test_tiny_model_overfits_a_handful_of_molecules(tokenizer, objective):
    tok, smiles = tokenizer
    torch.manual_seed(0)
    config = ExLMConfig.from_preset(
        "tiny", vocab_size=tok.vocab_size, objective=objective, dropout=0.0
    )
    model = ExLMModel(config)
    ids = tok.encode_batch(smiles)
    masks = model.choose_masks(ids, torch.Generator().manual_seed(2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        optimizer.zero_grad()
        loss = model(ids, masks).loss
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(ids, masks, with_predictions=True)
    assert out.loss.item() < 0.05
    valid = out.target_valid
    assert torch.equal(out.predictions[valid], out.targets[valid])


def test_save_and_load_round_trip(tokenizer, tmp_path):
    from exlm_chem.model import load_model_directory, save_model

    tok, smiles = tokenizer
    model = ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=tok.vocab_size), tok).eval()
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    loaded = load_model_directory(tmp_path / "m")
    ids = tok.encode_batch(smiles)
    torch.testing.assert_close(loaded.embed_states(ids).pooled, model.embed_states(ids).pooled)
    assert loaded.tokenizer.id_to_token == tok.id_to_token


def test_load_rejects_broken_model_directories(tokenizer, tmp_path):
    from exlm_chem import InputError
    from exlm_chem.model import load_model_directory, save_model

    tok, _ = tokenizer
    model = ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=tok.vocab_size), tok)
    with pytest.raises(InputError, match="no such folder"):
        load_model_directory(tmp_path / "none")
    save_model(model, tmp_path / "missing")
    (tmp_path / "missing" / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="tokenizer.json is missing"):
        load_model_directory(tmp_path / "missing")
    save_model(model, tmp_path / "truncated")
    weights = tmp_path / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputError, match="unreadable or truncated"):
        load_model_directory(tmp_path / "truncated")
    save_model(
        ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=tok.vocab_size, num_layers=3), tok),
        tmp_path / "mismatch",
    )
    other = tmp_path / "mismatch" / "config.json"
    other.write_text(other.read_text().replace('"num_layers": 3', '"num_layers": 2'))
    with pytest.raises(InputError, match="do not match the config"):
        load_model_directory(tmp_path / "mismatch")
    pickle_dir = tmp_path / "pickled"
    save_model(model, pickle_dir)
    torch.save(model.state_dict(), pickle_dir / "model.safetensors")
    with pytest.raises(InputError, match="unreadable or truncated"):
        load_model_directory(pickle_dir)


def test_presets():
    tiny = ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=40))
    assert tiny.num_parameters() < 1_000_000
    small = ExLMConfig.from_preset("small", vocab_size=40)
    assert (small.num_layers, small.hidden_size, small.k) == (4, 256, 4)
    base = ExLMConfig.from_preset("base", vocab_size=40, objective="mlm")
    assert (base.num_layers, base.hidden_size, base.num_heads, base.k) == (12, 768, 12, 1)
    assert math.isclose(base.mask_rate, 0.15)


def test_dense_and_packed_layouts_agree(tokenizer, monkeypatch):
    from exlm_chem.model import encoder

    tok, smiles = tokenizer
    torch.manual_seed(0)
    model = ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=tok.vocab_size)).eval()
    ids = tok.encode_batch(smiles)  # ragged: plenty of padding
    results = {}
    original = encoder.PackedLayout
    for dense_below in (0.0, 1.0):

        class Layout(original):
            def __init__(self, valid, threshold=dense_below):  # bound now, not at call time
                super().__init__(valid, dense_below=threshold)

        monkeypatch.setattr(encoder, "PackedLayout", Layout)
        out = model.embed_states(ids)
        results[dense_below] = (out.hidden, out.pooled)
    torch.testing.assert_close(results[0.0][1], results[1.0][1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[0.0][0], results[1.0][0], rtol=1e-5, atol=1e-5)
    assert (results[1.0][0][~out.valid] == 0).all()
