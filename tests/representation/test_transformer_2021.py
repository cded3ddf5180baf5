"""The 2021 transformer learner (issue 35): it trains on a tiny zoo, and its 2021-faithful stack option."""

from dataclasses import replace

import numpy as np
from torch import nn

from weightspace.data.dataset import ZooDataset
from weightspace.representation import Learner, LearnerConfig, config_from_dict, config_to_dict, embed
from weightspace.representation.encoders.transformer import TransformerConfig
from weightspace.representation.presets import config_2021, cpu_schedule


def test_2021_learner_trains_a_few_steps_without_collapse(make_zoo):
    """The tetris_seed configuration of 2021 (d 256, 2 blocks, latent 50, head 3/50/20, NT-Xent + reconstruction
    at gamma 0.5, permutations and erasing) on the CPU schedule: 24 steps lower the reconstruction loss, and
    the embedding separates the models in every dimension and in many directions."""
    models, epochs = 24, (0, 1, 2)
    train = ZooDataset(make_zoo(models=models, epochs=epochs, init="kaiming_uniform"), "train", fractions=(1, 0, 0))
    config = cpu_schedule(config_2021("tetris_seed")[0], batch_size=24)
    config.train = replace(config.train, device="cpu")
    learner = Learner(config, train.layout)
    before = learner.evaluate({"train": train})["loss_train_recon"]
    for _ in range(8):  # 3 steps an epoch
        row = learner.train_epoch(train)
    assert learner.step == 24 and np.isfinite(row["loss_train"])
    after = learner.evaluate({"train": train})["loss_train_recon"]
    assert after < 0.8 * before

    z = embed(learner.model, train).numpy()
    assert z.shape == (models * len(epochs), 50) and np.isfinite(z).all()
    per_model = np.stack([z[train.properties["model_id"].to_numpy() == m].mean(0) for m in range(models)])
    assert per_model.std(0).min() > 1e-3  # no dimension is constant across models
    singular = np.linalg.svd(per_model - per_model.mean(0), compute_uv=False)
    assert (singular > 1e-3 * singular[0]).sum() >= models // 2  # nor do the models collapse onto a few directions
    distances = np.linalg.norm(per_model[:, None] - per_model[None], axis=-1) + np.eye(models)
    assert distances.min() > 1e-4  # every model has an embedding of its own


def test_final_norm_off_is_the_2021_stack():
    """2021 had no LayerNorm after the last block; `final_norm=False` removes it on both sides and round-trips."""
    config = config_2021("tetris_seed")[0]
    config.encoder = replace(config.encoder, final_norm=False)
    learner = Learner(replace(config, train=replace(config.train, device="cpu")), _layout())
    assert isinstance(learner.model.encoder.norm, nn.Identity) and isinstance(learner.model.decoder.norm, nn.Identity)
    assert not {"encoder.norm.weight", "decoder.norm.weight"} & set(learner.model.state_dict())
    back = config_from_dict(LearnerConfig, config_to_dict(config))
    assert isinstance(back.encoder, TransformerConfig) and back.encoder.final_norm is False
    assert TransformerConfig().final_norm is True  # the default keeps the norm


def _layout():
    from weightspace import WeightLayout, create_zoo_model

    return WeightLayout.from_module(create_zoo_model("tetris_mlp"))
