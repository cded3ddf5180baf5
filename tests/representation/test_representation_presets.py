"""The 2021 representation configurations and the CPU schedule."""

import pytest
import torch

from weightspace.representation.presets import config_2021, cpu_precision, cpu_schedule, list_configs_2021


@pytest.mark.parametrize("name", list_configs_2021())
def test_every_2021_config_is_valid(name):
    config, iterations = config_2021(name)
    assert config.encoder.d_model % config.encoder.n_heads == 0 and iterations > 0
    assert config.train.batch_size == 500 and config.train.lr == 1e-4


def test_reference_values():
    mnist, iterations = config_2021("mnist_seed")
    assert (mnist.encoder.d_model, mnist.encoder.latent_dim, mnist.loss.gamma, iterations) == (800, 700, 0.1, 50)
    assert config_2021("cifar_hyp")[0].loss.contrast == "positive"
    with pytest.raises(ValueError, match="tetris_seed"):
        config_2021("tetris")


def test_cpu_schedule_copies():
    config, _ = config_2021("tetris_seed")
    short = cpu_schedule(config)
    assert (short.train.batch_size, short.train.precision) == (100, cpu_precision())
    assert (config.train.batch_size, config.train.precision) == (500, "fp32")
    assert short.encoder == config.encoder


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_the_cpu_schedule_autocasts_to_bf16_only_where_the_cpu_computes_it(monkeypatch, native, expected):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    config = config_2021("tetris_seed")[0]
    assert cpu_precision() == expected and cpu_schedule(config).train.precision == expected
    assert cpu_schedule(config, precision="bf16").train.precision == "bf16"  # asked for, it is kept
