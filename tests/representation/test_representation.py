"""Representation learner: losses, tokenizers, autoencoders, training loop, checkpoints, ray.tune resume."""

import dataclasses
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from weightspace import WeightLayout, create_zoo_model, list_zoo_models
from weightspace.data.dataset import DataConfig, ZooDataset
from weightspace.downstream.probing import embedding_scores, probe_scores
from weightspace.representation import (
    AugmentConfig,
    EncoderConfig,
    GammaLoss,
    HeadConfig,
    Learner,
    LearnerConfig,
    LossConfig,
    MLPConfig,
    NeuronSetConfig,
    NTXentLoss,
    PositiveContrastLoss,
    ReconstructionLoss,
    TrainConfig,
    TransformerConfig,
    config_from_dict,
    config_to_dict,
    create_autoencoder,
    embed,
    encoder_config,
    fit,
    list_encoders,
    reconstruction_r2,
)
from weightspace.representation.encoders.behaviour_ae import BehaviourAEConfig
from weightspace.representation.tokens import TokenDebedder, TokenEmbedder, neuron_token_groups
from weightspace.zoo.architectures import DEFAULT_INPUT_SHAPES

NETS = {"init": "xavier_normal"}  # conftest.make_zoo of initialised networks, not standard normal weights


def small_encoder(name: str) -> EncoderConfig:
    """A tiny config of encoder `name` whose training part is 8 wide (the defaults for an encoder not listed)."""
    if name.startswith("transformer"):
        return TransformerConfig(name=name, d_model=16, n_heads=2, n_blocks=1, d_ff=32, latent_dim=8, dropout=0.1,
                                 attn_dropout=0.1)
    small = {"mlp": MLPConfig(latent_dim=8, hidden_layers=2),
             "neuron_set": NeuronSetConfig(width=16, project_dim=8, activation="leakyrelu"),
             "behaviour_ae": BehaviourAEConfig(d_model=16, n_heads=2, n_blocks=1, d_ff=32, latent_dim=8,
                                               queries="uniform", n_queries=3)}
    return small.get(name) or encoder_config(name)(name=name)


def small_config(name: str = "transformer_neuron", **train) -> LearnerConfig:
    return LearnerConfig(
        encoder=small_encoder(name),
        head=HeadConfig(layers=1, hidden=16, out_dim=8),
        train=TrainConfig(**{"batch_size": 4, "device": "cpu", "lr": 1e-3} | train))


# ------------------------------------------------------------------ losses
def nt_xent_reference(z_i: torch.Tensor, z_j: torch.Tensor, tau: float) -> float:
    """SimCLR (Chen et al. 2020), Algorithm 1, with loops: z_{2k-1}, z_{2k} are the two views of sample k."""
    z = [v for pair in zip(z_i.tolist(), z_j.tolist()) for v in pair]
    n2 = len(z)

    def sim(a, b):
        return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))

    def loss(i, j):
        denom = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(n2) if k != i)
        return -math.log(math.exp(sim(z[i], z[j]) / tau) / denom)

    return sum(loss(2 * k, 2 * k + 1) + loss(2 * k + 1, 2 * k) for k in range(n2 // 2)) / n2


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_nt_xent_equals_the_simclr_pseudocode(tau, batch):
    gen = torch.Generator().manual_seed(batch)
    z_i, z_j = torch.randn(batch, 5, generator=gen), torch.randn(batch, 5, generator=gen)
    assert NTXentLoss(tau)(z_i, z_j).item() == pytest.approx(nt_xent_reference(z_i, z_j, tau), rel=1e-5, abs=1e-6)


def test_positive_contrast_pulls_pairs_together():
    z_i, z_j = torch.randn(16, 4), torch.randn(16, 4)
    for kind in ("cosine", "distance"):
        loss = PositiveContrastLoss(kind)
        assert loss(z_i, z_i).item() == pytest.approx(0.0, abs=1e-6)
        assert loss(z_i, z_j) > loss(z_i, z_i + 0.01 * z_j)
    # orthogonal pairs are not a minimum (the 2021 loss drove pairs to orthogonality, bug B1)
    e = torch.eye(2)
    assert PositiveContrastLoss("cosine")(e[:1], e[1:]).item() == pytest.approx(1.0)


def test_reconstruction_loss_per_layer_normalisation():
    layout = WeightLayout.from_module(create_zoo_model("cnn_s"))
    target, pred = torch.randn(6, layout.num_params), torch.randn(6, layout.num_params)
    assert ReconstructionLoss()(pred, target).item() == pytest.approx(((pred - target) ** 2).mean().item(), rel=1e-6)
    loss = ReconstructionLoss(layout, per_layer_normalize=True)
    scale = torch.ones(layout.num_params)
    big = layout.layers[1]
    scale[big.offset:big.offset + big.size] = 100.0  # a layer of large magnitude does not dominate
    assert loss(pred * scale, target * scale).item() == pytest.approx(loss(pred, target).item(), rel=1e-4)
    with pytest.raises(ValueError, match="WeightLayout"):
        ReconstructionLoss(per_layer_normalize=True)  # needs the layout


def test_gamma_loss_returns_total_and_parts():
    z, y, t = torch.randn(4, 3), torch.randn(4, 10), torch.randn(4, 10)
    parts = GammaLoss(1.0, NTXentLoss(0.1), ReconstructionLoss())(z, z + 0.1, y, t)
    assert parts.recon.item() > 0  # reported even when gamma = 1 (2021 reported 0, bug B10)
    assert parts.total.item() == pytest.approx(parts.contrast.item())
    mixed = GammaLoss(0.3, NTXentLoss(0.1), ReconstructionLoss())(z, z + 0.1, y, t)
    assert mixed.total.item() == pytest.approx(0.3 * mixed.contrast.item() + 0.7 * mixed.recon.item(), rel=1e-6)


# ------------------------------------------------------------- tokenizers
def test_neuron_tokens_gather_each_neuron_and_scatter_back():
    layout = WeightLayout.from_module(create_zoo_model("cnn_s"))
    groups = neuron_token_groups(layout)
    embedder = TokenEmbedder(groups, layout.num_params, 4)
    assert embedder.num_tokens == layout.num_tokens == 48
    x = torch.randn(2, layout.num_params)
    conv2 = layout.layer("conv2")
    sd = layout.devectorize(x)
    token = torch.cat([sd["conv2.weight"][1, 3].reshape(-1), sd["conv2.bias"][1, 3:4]])  # neuron 3's weights, bias
    torch.testing.assert_close(embedder(x)[1, 8 + 3], embedder.embed[1](token))
    assert conv2.token_size == token.numel()
    debedder = TokenDebedder(groups, layout.num_params, 4)
    tokens = torch.randn(2, 48, 4)
    out = debedder(tokens)
    for g, (lin, idx) in enumerate(zip(debedder.debed, groups)):
        start = sum(t.shape[0] for t in groups[:g])
        torch.testing.assert_close(out[:, idx], lin(tokens[:, start:start + idx.shape[0]]))


def test_token_slices_must_cover_the_vector():
    layout = WeightLayout.from_module(create_zoo_model("tetris_mlp"))
    groups = neuron_token_groups(layout)
    with pytest.raises(ValueError, match="cover the 100 entries.*20 are missed"):
        TokenEmbedder(groups[:1], layout.num_params, 8)
    with pytest.raises(ValueError, match="repeated"):
        TokenDebedder([groups[0], groups[0], groups[1]], layout.num_params, 8)


# ------------------------------------------------------------ autoencoders
@pytest.mark.parametrize("arch", list_zoo_models())
@pytest.mark.parametrize("name", list_encoders())
def test_every_autoencoder_runs_on_every_architecture(arch, name):
    layout = WeightLayout.from_module(create_zoo_model(arch))
    config = small_config(name).encoder
    if getattr(config, "needs_architecture", False):  # a target that runs the networks: the zoo's would be filled in
        config = dataclasses.replace(config, architecture={"name": arch, "kwargs": {},
                                                           "input_shape": list(DEFAULT_INPUT_SHAPES[arch])})
    model = create_autoencoder(config, layout, generator=torch.Generator().manual_seed(0))
    model.eval()  # weight tokens of the larger nets would materialise (T x T) dropout masks in training mode
    for batch in (1, 3):  # a batch of one keeps its batch dim (2021 squeezed it, bug B10)
        x = torch.randn(batch, layout.num_params)
        z, y = model(x)
        assert z.shape == (batch, 8) and z.dtype == y.dtype == torch.float32
        assert y.shape == model.reconstruction_target(x).shape  # the weights, or an invariant target of them
        assert torch.isfinite(y).all() and torch.isfinite(z).all()
        if model.reconstruction_kind == "weights":
            assert y.shape == (batch, layout.num_params) and (z.abs() <= 1).all()  # tanh bottleneck
    # the embedding: the trained part z, plus (neuron_set) a fixed code of the weights' statistics
    assert model.encode(torch.randn(2, layout.num_params)).shape == (2, model.embedding_dim)
    assert model.trained_dim == 8 and model.embedding_dim == 8 + getattr(model, "code_dim", 0)


def test_explicit_attention_path_matches_the_fused_kernel():
    from weightspace.representation.encoders.transformer import Block

    block = Block(d_model=16, n_heads=4, d_ff=8, dropout=0.0, attn_dropout=1e-9)  # keeps every probability
    x = torch.randn(3, 7, 16)
    explicit = block.train()(x)  # explicit softmax path, taken when attention dropout is on
    torch.testing.assert_close(explicit, block.eval()(x), atol=1e-5, rtol=1e-5)  # scaled_dot_product_attention


def test_autoencoder_init_is_seeded_and_leaves_the_global_rng_alone():
    layout = WeightLayout.from_module(create_zoo_model("tetris_mlp"))
    state = torch.random.get_rng_state()
    a = create_autoencoder("transformer_neuron", layout, generator=torch.Generator().manual_seed(1))
    b = create_autoencoder("transformer_neuron", layout, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="transformer_neuron"):
        create_autoencoder("resnet", layout)


# ------------------------------------------------------------- validation
@pytest.mark.parametrize("build, message", [
    (lambda: LossConfig(gamma=1.5), "gamma"),
    (lambda: LossConfig(temperature=0.0), "temperature"),
    (lambda: LossConfig(contrast="triplet"), "contrast"),
    (lambda: TransformerConfig(d_model=30, n_heads=4), "n_heads=4 does not divide d_model=30"),
    (lambda: EncoderConfig(name="lstm"), "unknown encoder 'lstm'; choose one of .*neuron_set"),
    (lambda: TransformerConfig(name="mlp"), "configured by MLPConfig"),
    (lambda: TransformerConfig(dropout=1.0), "dropout"),
    (lambda: MLPConfig(hidden_layers=-1), "hidden_layers"),
    (lambda: NeuronSetConfig(activation="swish"), "activation 'swish' is unknown"),
    (lambda: TrainConfig(precision="fp8"), "precision"),
    (lambda: TrainConfig(batch_size=1), "batch_size"),
    (lambda: TrainConfig(lr=1e-4, stop_lr=1e-4), r"stop_lr must lie in \[0, lr"),
    (lambda: DataConfig(fractions=(0.5, 0.2, 0.2)), "fractions"),
    (lambda: NTXentLoss(-1.0), "temperature"),
])
def test_config_errors_say_what_to_change(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_config_dict_round_trip_rejects_unknown_keys():
    config = small_config()
    data = config_to_dict(config)
    assert data["encoder"]["d_model"] == 16 and not any("::" in k for k in data)
    assert config_from_dict(LearnerConfig, data) == config
    with pytest.raises(ValueError, match="no field.*d_modle"):
        config_from_dict(LearnerConfig, {"encoder": {"d_modle": 3}})


@pytest.mark.parametrize("name", list_encoders())
def test_config_dicts_rebuild_the_class_their_encoder_name_picks(name):
    config = small_config(name)
    data = config_to_dict(config)
    assert data["encoder"]["name"] == name  # the encoder's name and its own fields, nothing else
    back = config_from_dict(LearnerConfig, data)
    assert back == config and type(back.encoder) is type(config.encoder)
    assert config_from_dict(LearnerConfig, {"encoder": {"name": name}}).encoder == encoder_config(name)(name=name)
    with pytest.raises(ValueError, match="unknown encoder 'lstm'"):
        config_from_dict(LearnerConfig, {"encoder": {"name": "lstm"}})
    other = "mlp" if name != "mlp" else "neuron_set"
    foreign = next(k for k in config_to_dict(small_encoder(other)) if k not in data["encoder"])
    with pytest.raises(ValueError, match=f"no field.*{foreign}"):  # another encoder's field
        config_from_dict(LearnerConfig, {"encoder": {"name": name, foreign: 1}})


@pytest.mark.slow  # a fresh interpreter
def test_learner_does_not_import_ray():
    code = "import sys, weightspace, weightspace.representation.learner; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ data
def test_zoo_dataset_splits_by_model_and_filters(make_zoo):
    zoo = make_zoo(models=20, epochs=(0, 1, 2), **NETS)
    zoo.samples.loc[zoo.samples["model_id"] == 3, "diverged"] = True
    parts = {s: ZooDataset(zoo, s, fractions=(0.6, 0.2, 0.2), seed=1) for s in ("train", "val", "test")}
    ids = [set(d.properties["model_id"]) for d in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert 3 not in set().union(*ids) and sum(len(d) for d in parts.values()) == 57
    train = parts["train"]
    assert train.weights.dtype == torch.float32 and train.weights.shape == (len(train.properties), 100)
    np.testing.assert_array_equal(train.weights.numpy(), zoo.weights[train.properties["row"]])
    last = ZooDataset(zoo, "train", fractions=(0.6, 0.2, 0.2), seed=1, epochs=2)
    assert set(last.properties["epoch"]) == {2} and set(last.properties["model_id"]) == ids[0]
    with pytest.raises(ValueError, match="no checkpoints at epochs"):
        ZooDataset(zoo, "train", epochs=[7])


# ---------------------------------------------------------------- learner
def test_tiny_autoencoder_overfits_a_handful_of_samples(make_zoo):
    train = ZooDataset(make_zoo(models=8, epochs=(0,), **NETS), "train", fractions=(1, 0, 0))
    config = LearnerConfig(
        encoder=TransformerConfig(d_model=32, n_heads=2, n_blocks=1, d_ff=64, latent_dim=16, dropout=0.0,
                                  attn_dropout=0.0),
        head=HeadConfig(1, 16, 8), loss=LossConfig(gamma=0.05), augment=AugmentConfig(permute=False, erase_p=0.0),
        train=TrainConfig(batch_size=8, lr=3e-3, scheduler="none", device="cpu"))
    learner = fit(config, train, epochs=200, evaluate_every=0, progress=False)
    assert reconstruction_r2(learner.model, train.weights) > 0.95


def test_fit_evaluates_embeds_and_writes_its_config(make_zoo, tmp_path):
    zoo = make_zoo(models=12, **NETS)
    train, val = (ZooDataset(zoo, s, fractions=(0.7, 0.3, 0.0)) for s in ("train", "val"))
    state = torch.random.get_rng_state()
    learner = fit(small_config(), train, val=val, epochs=2, out_dir=tmp_path, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)  # dropout ran in a forked, seeded RNG
    row = learner.history[-1]
    assert {"loss_train", "loss_train_contrast", "loss_train_recon", "loss_val", "loss_val_contrast",
            "loss_val_recon", "rsq_train", "rsq_val"} <= set(row)
    assert (tmp_path / "config.json").exists() and (tmp_path / "checkpoint.pt").exists()
    learner.model.train()
    z = embed(learner.model, val)
    assert z.shape == (len(val), 8) and torch.equal(z, embed(learner.model, val.weights.numpy()))
    assert learner.model.training  # mode restored
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit(small_config(batch_size=64), train, epochs=1, progress=False)


def test_probe_scores_plug_into_fit(make_zoo):
    zoo = make_zoo(models=20, **NETS)
    splits = {s: ZooDataset(zoo, s) for s in ("train", "val", "test")}
    learner = fit(small_config(), splits["train"], val=splits["val"], test=splits["test"], epochs=1, progress=False,
                  evaluate_fn=probe_scores(targets=["test_acc"]))
    row = learner.history[-1]
    assert {"test_acc_train", "test_acc_val", "test_acc_test", "test_acc_kendall_tau_test"} <= set(row)


def test_scores_of_a_made_embedding_equal_those_of_the_model(make_zoo):
    zoo = make_zoo(models=20, **NETS)
    splits = {s: ZooDataset(zoo, s) for s in ("train", "val", "test")}
    learner = fit(small_config(), splits["train"], epochs=1, evaluate_every=0, progress=False)
    z = embed(learner.model, torch.cat([d.weights for d in splits.values()])).numpy()
    scores = embedding_scores(z, splits, ["test_acc", "ggap"])
    assert scores == probe_scores(["test_acc", "ggap"])(learner.model, splits) and "probe_mean_val" in scores
    with pytest.raises(ValueError, match="rows for"):
        embedding_scores(z[1:], splits)


def test_same_seed_same_training(make_zoo):
    train = ZooDataset(make_zoo(models=10, **NETS), "train", fractions=(1, 0, 0))
    runs = [fit(small_config(), train, epochs=2, evaluate_every=0, progress=False).history for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(make_zoo, precision):
    train = ZooDataset(make_zoo(models=10, **NETS), "train", fractions=(1, 0, 0))
    learner = fit(small_config(precision=precision, grad_clip=1.0), train, epochs=2, evaluate_every=0, progress=False)
    assert learner.stop_reason is None and all(np.isfinite(r["loss_train"]) for r in learner.history)


def test_checkpoint_restore_gives_identical_next_step_losses(make_zoo, tmp_path):
    train = ZooDataset(make_zoo(models=10, **NETS), "train", fractions=(1, 0, 0))
    config = small_config(scheduler="plateau", plateau_patience=0)
    learner = fit(config, train, epochs=2, evaluate_every=0, progress=False)
    learner.save(tmp_path / "ckpt.pt")
    expected = [learner.train_epoch(train) for _ in range(2)]
    restored = Learner(config, train.layout).load(tmp_path / "ckpt.pt")
    assert [restored.train_epoch(train) for _ in range(2)] == expected


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(make_zoo, tmp_path):
    train = ZooDataset(make_zoo(models=10, **NETS), "train", fractions=(1, 0, 0))  # 20 samples: 5 steps per epoch
    learner = Learner(small_config(), train.layout)
    compute = learner.compute_loss

    def poisoned(x, generator, **kw):
        parts = compute(x, generator, **kw)
        return parts._replace(total=parts.total * float("nan")) if learner.step == 7 else parts

    learner.compute_loss = poisoned
    with pytest.warns(RuntimeWarning, match="at step 8"):
        fit(learner.config, train, epochs=3, learner=learner, out_dir=tmp_path, evaluate_every=0, progress=False)
    assert learner.step == 7 and learner.epoch == 1 and "step 8" in learner.stop_reason
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 5  # the end of the last complete epoch
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())


def test_training_ends_at_the_epoch_whose_learning_rate_reaches_stop_lr(make_zoo):
    train = ZooDataset(make_zoo(models=10, **NETS), "train", fractions=(1, 0, 0))
    lr, epochs, stop = 1e-3, 10, 1e-4
    cosine = [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(1, epochs + 1)]  # after each epoch
    expected = next(e for e, rate in enumerate(cosine, 1) if rate <= stop)  # 8: inside the run, not its end
    learner = fit(small_config(lr=lr, scheduler="cosine", epochs=epochs, stop_lr=stop), train, evaluate_every=0,
                  progress=False)
    assert 1 < expected < epochs and learner.epoch == len(learner.history) == expected
    assert learner.finished and f"epoch {expected}" in learner.stop_reason
    unstopped = fit(small_config(lr=lr, scheduler="cosine", epochs=epochs), train, evaluate_every=0, progress=False)
    assert unstopped.epoch == epochs and not unstopped.finished and unstopped.stop_reason is None


def test_stop_lr_1e_8_is_the_floor_of_the_2021_plateau_schedule(make_zoo):
    """torch's ReduceLROnPlateau skips a reduction smaller than its eps (1e-8): from 1e-4 at factor 0.3 the
    rate stops at 1e-4 * 0.3**8 = 6.6e-9, the first rate at or below 1e-8 (the 2021 learner's stop_lr option)."""
    layout = make_zoo(models=4, **NETS).layout
    learner = Learner(small_config(lr=1e-4, scheduler="plateau", plateau_factor=0.3, plateau_patience=10,
                                   stop_lr=1e-8), layout)
    rates = []
    for _ in range(300):  # a loss that never improves: one reduction every 11 epochs until the floor
        learner.scheduler.step(1.0)
        rates.append(learner.optimizer.param_groups[0]["lr"])
    assert rates[-1] == pytest.approx(1e-4 * 0.3 ** 8, rel=1e-9) and rates[-1] == min(rates)
    assert learner.finished and sum(rate > 1e-8 for rate in rates) == 8 * 11


# ------------------------------------------------------------------- tune
@pytest.mark.slow
def test_tune_run_killed_after_first_checkpoint_resumes_and_finishes(make_zoo, tmp_path):
    ray = pytest.importorskip("ray")
    from weightspace.io.local_ray import start_local_ray
    from weightspace.pipeline.tune import WeightspaceTrainable, merge_search_space, run_tuner

    make_zoo(models=12, **NETS).save(tmp_path / "zoo")
    config = small_config(epochs_per_step=1)
    config.data = DataConfig(path=str(tmp_path / "zoo"))
    with pytest.raises(ValueError, match="not a config field"):
        merge_search_space(config_to_dict(config), {"loss": {"gama": 0.1}})
    marker = tmp_path / "failed_once"

    class FailsOnce(WeightspaceTrainable):
        def step(self):
            if self.iteration == 1 and not marker.exists():
                marker.touch()  # dies after the checkpoint of iteration 1, once
                raise RuntimeError("injected failure")
            return super().step()

    start_local_ray(2, include_dashboard=False, log_to_driver=False)  # workers at the test's priority
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kwargs = dict(name="exp", storage_path=tmp_path / "runs", iterations=3, trainable=FailsOnce, verbose=0)
            first = run_tuner(config, **kwargs)
            assert first[0].error is not None and first[0].metrics["training_iteration"] == 1
            second = run_tuner(config, **kwargs)  # finds the interrupted run and restores it
            # a trial whose learning rate reaches stop_lr ends there (cosine over 4 epochs: 0.5 lr after the 2nd)
            ending = dataclasses.replace(config, train=dataclasses.replace(
                config.train, scheduler="cosine", epochs=4, stop_lr=0.6 * config.train.lr))
            stopped = run_tuner(ending, **(kwargs | {"name": "stopped", "iterations": 5}))
    finally:
        ray.shutdown()
    assert stopped[0].error is None and stopped[0].metrics["training_iteration"] == 2 and stopped[0].metrics["done"]
    result = second[0]
    assert result.error is None and result.metrics["training_iteration"] == 3
    history = result.metrics_dataframe
    assert list(history["training_iteration"]) == [1, 2, 3]
    steps = list(history["step"])  # optimizer steps continue across the restore, none lost or repeated
    assert steps == [steps[0], 2 * steps[0], 3 * steps[0]]
    assert {"rsq_train", "rsq_val", "rsq_test", "loss_val_recon"} <= set(history.columns)
    assert {"test_acc_train", "test_acc_val", "test_acc_test"} <= set(history.columns)  # default linear probes
