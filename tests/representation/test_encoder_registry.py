"""The encoder registry and contract: leaf modules, and an encoder registered from outside trains like any other
(import cycles of the whole package: test_layers)."""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from weightspace import WeightLayout, create_zoo_model
from weightspace.representation import (
    Autoencoder,
    EncoderConfig,
    HeadConfig,
    Learner,
    LearnerConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    create_autoencoder,
    list_encoders,
    registry,
)

REPRESENTATION = Path(__file__).resolve().parents[2] / "modules" / "weightspace" / "representation"


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute, at any depth (type-checking imports too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


@pytest.mark.parametrize("module", ["registry.py", "autoencoder.py"])
def test_the_registry_and_the_contract_import_nothing_from_representation(module):
    imported = _imports(REPRESENTATION / module)
    inside = sorted(n for n in imported if n.startswith(("weightspace.representation", ".")))
    assert not inside, f"{module} must stay a leaf of weightspace.representation, but imports {inside}"


@dataclass
class ToyConfig(EncoderConfig):
    name: str = "toy"  # the registered encoder
    width: int = 4  # embedding width


class ToyAutoencoder(Autoencoder):
    """A linear autoencoder that relies on every default of the contract."""

    def __init__(self, num_params: int, width: int):
        super().__init__()
        self.num_params, self.embedding_dim = num_params, width
        self.down, self.up = nn.Linear(num_params, width), nn.Linear(width, num_params)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(z)


@pytest.fixture
def toy_registered(monkeypatch):
    """"toy" in the registry for this test only."""
    monkeypatch.setattr(registry, "_ENCODERS", dict(registry._ENCODERS))

    @registry.register_encoder("toy", config=ToyConfig)
    def build(config: ToyConfig, layout: WeightLayout, generator: torch.Generator | None) -> ToyAutoencoder:
        model = ToyAutoencoder(layout.num_params, config.width)
        if generator is not None:
            for p in model.parameters():
                p.data.normal_(0, 0.1, generator=generator)
        return model

    yield


def test_a_registered_toy_encoder_is_built_and_trained_like_any_other(toy_registered):
    layout = WeightLayout.from_module(create_zoo_model("tetris_mlp"))
    assert "toy" in list_encoders()
    model = create_autoencoder(ToyConfig(width=3), layout, generator=torch.Generator().manual_seed(0))
    assert isinstance(model, ToyAutoencoder) and model.trained_dim == model.embedding_dim == 3
    assert model.reconstruction_kind == "weights"
    with pytest.raises(ValueError, match="already registered"):
        registry.register_encoder("toy", config=ToyConfig)

    config = LearnerConfig(encoder=ToyConfig(), head=HeadConfig(layers=1, hidden=8, out_dim=4),
                           train=TrainConfig(batch_size=4, device="cpu", lr=1e-2))
    assert config_from_dict(LearnerConfig, config_to_dict(config)) == config  # the ray boundary
    learner = Learner(config, layout)
    assert learner.head.net[0].in_features == 4
    before = [p.detach().clone() for p in learner.model.parameters()]
    row = learner.train_step(torch.randn(4, layout.num_params, generator=torch.Generator().manual_seed(1)))
    assert all(torch.isfinite(torch.tensor(v)) for v in row.values())
    assert all(not torch.equal(p, q) for p, q in zip(before, learner.model.parameters()))
    x = torch.randn(6, layout.num_params)
    assert learner.evaluate({"val": _Weights(x)}).keys() == {"loss_val", "loss_val_contrast", "loss_val_recon",
                                                             "rsq_val"}


class _Weights:
    """The part of a ZooDataset that `Learner.evaluate` reads."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights

    def __len__(self) -> int:
        return len(self.weights)
