"""Population training equals one-at-a-time training, model for model."""

import numpy as np
import pytest
import torch

from weightspace.zoo.loop import train_single
from weightspace.zoo.population import Member, Population, PopulationConfig, epoch_order, train_population


def toy_data(n=96, seed=0, size=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g)
    y = (x.flatten(1)[:, :4].argmax(1)).long()
    return x, y


def members(n=8):
    return [Member(model_id=i, seed=10 + i, lr=1e-2 * (1 + i % 3), weight_decay=1e-3 * (i % 2), init="xavier_uniform")
            for i in range(n)]


MLP = ("mlp", {"in_dim": 16, "hidden": (6,), "out_dim": 4, "activation": "tanh"}, 4)
CNN = ("cnn_s", {"activation": "tanh"}, 28)

# Equivalence of training is checked in float64 (the `float64` fixture), so that rounding can neither fail a
# correct program nor hide a wrong one. Two programs that compute the same sums in other orders or kernels
# (another population size, layout, thread count or CPU) agree to K * eps64 of the summed magnitudes, K the
# longest sum (Higham, "Accuracy and Stability of Numerical Algorithms", sec. 3.1): here a cnn_s conv1 weight
# gradient, summed over 16 images x 24 x 24 positions. In float32 the same bound is 1e-3, and Adam's
# g / (sqrt(v) + 1e-8) turns the rounding of a gradient near zero into a step of up to lr: no float32 tolerance
# both passes on every machine and catches a bug.
EPS32, EPS64 = torch.finfo(torch.float32).eps, torch.finfo(torch.float64).eps
LONGEST_SUM = 16 * 24 * 24


def rounding_tolerance(t: torch.Tensor) -> float:
    """Largest difference rounding can make to one pass's result `t` (a forward or a gradient)."""
    return LONGEST_SUM * EPS64 * float(t.detach().abs().max())


def training_tolerance(steps: int, lr: float) -> float:
    """Largest drift of a weight that rounding can cause in `steps` optimizer steps at learning rate `lr`.

    Each step moves a weight by about lr (Adam, RMSprop) or lr times a gradient below 1 over (1 - momentum)
    (SGD), rounded to LONGEST_SUM * eps64 of that; the drift adds up over the steps. The factor 1e3 covers
    curvature feeding a drift back into later gradients and Adam's and RMSprop's division by sqrt(v) + 1e-8,
    which magnifies the rounding of a gradient near zero. A wrong data order, rate or step count moves weights
    by about lr per step, some nine orders above this bound (about 1e-9 here; 1e-14 measured).
    """
    return 1e3 * steps * lr * LONGEST_SUM * EPS64


@pytest.mark.float_equivalence
@pytest.mark.parametrize("layout", ["grouped", "vmap"])
@pytest.mark.parametrize("arch, optimizer", [(MLP, "adam"), (MLP, "sgd"), (MLP, "rmsprop"), (CNN, "adam"), (CNN, "sgd"),
                                             (CNN, "rmsprop")])
def test_population_matches_lone_training(arch, optimizer, layout, float64):
    name, kwargs, size = arch
    x, y = toy_data(size=size)
    cfg = PopulationConfig(name, kwargs, optimizer=optimizer, batch_size=16,
                           momentum=0.9 if optimizer == "sgd" else 0.5, layout=layout)
    ms = members()
    pop = Population(cfg, ms)
    lone_model = 5
    lone_grads = []
    alone = train_single(cfg, ms[lone_model], x, y, epochs=3,
                         on_step=lambda e, s, g: lone_grads.append(g) if e == 0 else None)
    steps = []
    for epoch in range(3):
        order = torch.stack([epoch_order(m.seed, len(x), 1.0, 3)[epoch] for m in ms])
        pop.train_epoch(x, y, order, on_step=(lambda s, losses, g: steps.append({k: v[lone_model] for k, v in g.items()}))
                        if epoch == 0 else None)
    assert len(steps) == len(lone_grads) == 6
    assert pop.params["fc1.weight" if name == "mlp" else "conv1.weight"].dtype == torch.float64
    for step, (pop_g, lone_g) in enumerate(zip(steps, lone_grads)):
        for k in lone_g:  # after the first step the weights carry the rounding of the earlier steps too
            tol = rounding_tolerance(lone_g[k]) + training_tolerance(step, ms[lone_model].lr)
            torch.testing.assert_close(pop_g[k], lone_g[k], atol=tol, rtol=0)
    for k, p in alone.named_parameters():
        torch.testing.assert_close(pop.params[k][lone_model].detach(), p.detach(), rtol=0,
                                   atol=training_tolerance(3 * 6, ms[lone_model].lr))


def test_each_model_draws_its_own_dropout_masks():
    cfg = PopulationConfig("mlp", {"in_dim": 16, "hidden": (64,), "out_dim": 4, "dropout": 0.5}, batch_size=8)
    same = [Member(model_id=i, seed=7) for i in range(4)]  # identical weights and data
    pop = Population(cfg, same)
    x = torch.rand(1, 8, 1, 4, 4).expand(4, -1, -1, -1, -1)
    logits = pop._train_logits(pop.params, x)
    assert not torch.allclose(logits[0], logits[1])
    assert not torch.allclose(logits[2], logits[3])
    pop.template.eval()
    logits = pop._train_logits(pop.params, x)
    torch.testing.assert_close(logits[0], logits[1])


def test_train_population_records_checkpoints_and_metrics():
    x, y = toy_data()
    cfg = PopulationConfig("tetris_mlp", {"activation": "tanh"}, batch_size=16)
    res = train_population(cfg, members(3), x, y, x[:32], y[:32], epochs=3, checkpoint_epochs=[0, 2, 3])
    assert res.weights.shape == (9, 100)
    assert [(r["model_id"], r["epoch"]) for r in res.rows] == [(m, e) for m in range(3) for e in (0, 2, 3)]
    assert all(0 <= r["test_acc"] <= 1 and r["diverged"] is False for r in res.rows)
    # epoch 0 is the initialisation: the same weights a fresh model gets
    from weightspace import WeightLayout
    from weightspace.zoo.population import init_member
    net = init_member(cfg, members(3)[1])
    init = WeightLayout.from_module(net).vectorize(dict(net.named_parameters())).detach().numpy()
    assert (res.weights[3] == init).all()
    # the run is deterministic and leaves the global RNG alone
    state = torch.get_rng_state()
    again = train_population(cfg, members(3), x, y, x[:32], y[:32], epochs=3, checkpoint_epochs=[0, 2, 3])
    assert (again.weights == res.weights).all()
    assert torch.equal(state, torch.get_rng_state())


def test_divergence_is_flagged_not_fatal():
    x, y = toy_data()
    cfg = PopulationConfig("tetris_mlp", {"activation": "relu"}, optimizer="sgd", batch_size=16, momentum=0.0)
    ms = [Member(0, 1, lr=1e-9), Member(1, 2, lr=1e30, init="normal")]  # inputs x 1e6: a sane step is tiny
    res = train_population(cfg, ms, x * 1e6, y, x[:32], y[:32], epochs=2)
    flags = {(r["model_id"], r["epoch"]): r["diverged"] for r in res.rows}
    assert flags[(1, 2)] and not flags[(0, 2)]


def test_config_errors():
    with pytest.raises(ValueError, match="adam"):
        PopulationConfig("cnn_s", optimizer="lbfgs")
    with pytest.raises(ValueError, match="train_fraction"):
        PopulationConfig("cnn_s", train_fraction=0.0)


@pytest.mark.float_equivalence
@pytest.mark.parametrize("arch", ["cnn_s", "cnn_unterthiner", "tetris_mlp"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_grouped_layout_matches_vmap(arch, dropout, float64):
    g = torch.Generator().manual_seed(0)
    size = {"cnn_s": 28, "cnn_unterthiner": 32, "tetris_mlp": 4}[arch]
    x = torch.rand(3, 4, 1, size, size, generator=g)
    ms = members(3)
    results = {}
    for layout in ("vmap", "grouped"):
        pop = Population(PopulationConfig(arch, {"activation": "relu", "dropout": dropout}, layout=layout), ms)
        assert pop.layout_name == layout
        pop.template.eval()  # dropout off: both layouts must give the same numbers
        logits = pop._train_logits(pop.params, x)
        shared = pop._eval_logits(pop.params, x[0])
        logits.sum().backward()
        results[layout] = logits, shared, {k: v.grad for k, v in pop.params.items()}
    vmapped, grouped = results["vmap"], results["grouped"]
    assert vmapped[0].dtype == torch.float64
    for a, b in [(vmapped[0], grouped[0]), (vmapped[1], grouped[1]), *((vmapped[2][k], grouped[2][k]) for k in vmapped[2])]:
        torch.testing.assert_close(b, a, atol=rounding_tolerance(a), rtol=0)


def test_layout_choice():
    assert Population(PopulationConfig("cnn_s"), members(2)).layout_name == "grouped"
    with pytest.raises(ValueError, match="layout"):
        PopulationConfig("cnn_s", layout="patches")


@pytest.mark.float_equivalence
def test_evaluation_chunks_fit_the_memory_budget(float64):
    x, y = toy_data(n=50, size=28)
    pop = Population(PopulationConfig("cnn_s", {"activation": "tanh"}), members(4))
    per_image = pop.activation_floats((1, 28, 28))
    assert per_image == 8 * 24 * 24 + 8 * 12 * 12 * 2 + 6 * 8 * 8 + 6 * 4 * 4 * 2 + 4 * 3 * 3 * 3 + 20 * 2 + 10
    whole = pop.evaluate(x, y, chunk=len(x))
    small = pop.evaluate(x, y, budget_floats=4 * per_image * 7)  # 7 images per pass
    for a, b in zip(whole, small):  # losses: the same per-image terms, summed in another order
        torch.testing.assert_close(b, a, atol=rounding_tolerance(a), rtol=0)


@pytest.mark.float_equivalence
def test_training_in_smaller_populations_gives_the_same_models(float64):
    x, y = toy_data(n=48, size=28)
    cfg = PopulationConfig("cnn_s", {"activation": "tanh"}, batch_size=16)
    whole = train_population(cfg, members(5), x, y, x[:16], y[:16], epochs=2)
    parts = train_population(cfg, members(5), x, y, x[:16], y[:16], epochs=2, population_size=2)
    # float64 training, stored as float32: weights equal to the bound may round to neighbouring float32 values
    np.testing.assert_allclose(parts.weights, whole.weights, rtol=EPS32,
                               atol=training_tolerance(2 * 3, max(m.lr for m in members(5))))
    assert [(r["model_id"], r["epoch"]) for r in parts.rows] == [(r["model_id"], r["epoch"]) for r in whole.rows]


def test_cpu_population_size_follows_the_measured_cache_budget():
    from weightspace.zoo.population import CPU_STEP_FLOATS, cpu_population_size
    cnn = cpu_population_size(PopulationConfig("cnn_s", batch_size=10), (1, 28, 28))
    assert 32 <= cnn <= 128 and cnn == CPU_STEP_FLOATS // (10 * 7646)
    assert cpu_population_size(PopulationConfig("cnn_s", batch_size=64), (1, 28, 28)) < cnn
    assert cpu_population_size(PopulationConfig("tetris_mlp", batch_size=32), (1, 4, 4)) >= 1000
