"""`behaviour_ae`: a weight autoencoder anchored in behaviour.

The encoder is the 2021 transformer over neuron tokens with a compression token; its latent (at most 256
numbers) is the whole embedding, every number an output of trained parameters. The decoder rebuilds the
weights, and the rebuilt network is run, in the zoo's own architecture, on query inputs: its logits must
match the original network's. The reconstruction the learner scores is therefore two parts side by side,

    loss = mean((w_hat - w)^2) + beta * mean((f(w_hat; q) - f(w; q))^2),

the structure loss on the weights and the behaviour loss on the logits of K queries ``q`` (the task's
training inputs without their labels, or data-free draws where the zoo has no task). Each network runs as
it was built: where the zoo's activation varies, with its own (the learner passes each row's code). Both parts go through
the learner's one reconstruction loss: `decode` and `reconstruction_target` return the weights and the
logits, each scaled so that the plain mean squared error over the concatenation equals the sum above.
``beta = 0`` is the plain weight autoencoder. Weighing the parts this way keeps the contrastive term (gamma)
and every augmentation of the learner as they are.

With ``balance="units"`` (the default) both parts are in the zoo's own units, so a zoo whose logits spread
wider than its weights gives the behaviour part more weight at the same beta (research/behaviour_loss_scale.py
prints the ratio per zoo). ``balance="spread"`` divides the behaviour part by the variance of the original
logits and multiplies it by the variance of the weights, both measured on the training split once
(`fit_input_scale`), so that at ``beta = 1`` the two parts weigh alike for a decoder that predicts the zoo's
mean, on every zoo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from weightspace.layout import WeightLayout
from weightspace.representation.autoencoder import Autoencoder
from weightspace.representation.encoders.transformer import TransformerAutoencoder, TransformerConfig
from weightspace.representation.function_target import FunctionTarget
from weightspace.representation.registry import EncoderConfig, create_autoencoder, register_encoder

MAX_LATENT = 256  # a compact embedding: the probes read at most this many numbers per checkpoint
BALANCES = ("units", "spread")  # how the behaviour part is weighed beside the structure part
SPREAD_ROWS = 1000  # at most this many training rows are run to measure the logits' spread


@dataclass
class BehaviourAEConfig(EncoderConfig):
    """The behaviour-anchored weight autoencoder."""

    name: str = "behaviour_ae"  # the registered encoder
    d_model: int = 256  # transformer width
    n_heads: int = 4  # attention heads
    n_blocks: int = 2  # encoder blocks (the decoder has as many)
    d_ff: int = 512  # feed-forward width
    latent_dim: int = 128  # the embedding, at most MAX_LATENT
    dropout: float = 0.1  # dropout in the transformer blocks
    beta: float = 1.0  # weight of the behaviour loss (logits of the rebuilt network) beside the structure loss
    queries: str = "task"  # "task": the zoo's training inputs without labels; "uniform" / "normal": data-free
    n_queries: int = 256  # K, query inputs (all of a task's inputs where it has fewer)
    query_seed: int = 0  # draws the queries
    balance: str = "units"  # "units": both parts in the zoo's units; "spread": each divided by its training variance
    architecture: dict | None = None  # the zoo's networks (function_target.zoo_architecture); the pipeline fills it

    @property
    def needs_architecture(self) -> bool:
        """The behaviour loss runs the zoo's networks: `architecture` is filled from the zoo."""
        return True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.latent_dim <= MAX_LATENT:
            raise ValueError(f"BehaviourAEConfig.latent_dim must be in 1 ... {MAX_LATENT}, got {self.latent_dim}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"BehaviourAEConfig.beta must be 0 or more, got {self.beta}")
        if self.queries not in ("task", "uniform", "normal"):
            raise ValueError(f"BehaviourAEConfig.queries must be 'task', 'uniform' or 'normal', got {self.queries!r}")
        if self.n_queries < 1:
            raise ValueError(f"BehaviourAEConfig.n_queries must be positive, got {self.n_queries}")
        if self.balance not in BALANCES:
            raise ValueError(f"BehaviourAEConfig.balance must be one of {', '.join(map(repr, BALANCES))}, "
                             f"got {self.balance!r}")


class BehaviourAutoencoder(Autoencoder):
    """The transformer autoencoder whose reconstruction is the weights and the rebuilt network's logits."""

    reconstruction_kind = "weights and logits"
    spread_ratio: torch.Tensor  # () buffer, only with balance="spread": var(weights) / var(logits), training split

    def __init__(self, inner: TransformerAutoencoder, behaviour: FunctionTarget | None, beta: float,
                 balance: str = "units"):
        super().__init__()
        self.inner = inner
        self.behaviour = behaviour
        self.num_params = inner.num_params
        self.embedding_dim = inner.embedding_dim
        self.beta = float(beta) if behaviour is not None else 0.0
        self.network_variants = behaviour.variants if behaviour is not None and self.beta > 0 else ()
        d, m = self.num_params, behaviour.n_outputs if behaviour is not None else 0
        # the MSE over the concatenation [a * w, b * f(w)] is mean_w + beta * mean_f with these scales
        self.scale_weights = math.sqrt((d + m) / d)
        self.scale_logits = math.sqrt(self.beta * (d + m) / m) if m else 0.0
        self.balance = balance
        if balance == "spread":  # var(w) / var(f) on the training split, saved with the model
            self.register_buffer("spread_ratio", torch.ones(()))

    @torch.no_grad()
    def fit_input_scale(self, weights: torch.Tensor, networks: torch.Tensor | None = None) -> None:
        """``balance="spread"``: measure the weights' variance and the original logits' variance (each the mean
        over entries of the variance across training rows; the logits on at most `SPREAD_ROWS` rows spread evenly
        over the split). Nothing to fit otherwise."""
        if self.balance != "spread" or self.behaviour is None or self.beta == 0:
            return
        w = torch.as_tensor(weights, dtype=torch.float32)
        rows = torch.linspace(0, w.shape[0] - 1, min(SPREAD_ROWS, w.shape[0])).round().long()
        device = self.spread_ratio.device
        logits = torch.cat([self.behaviour(w[part].to(device), None if networks is None else networks[part].to(device))
                            for part in rows.split(100)])
        var_w = w.double().var(dim=0, correction=0).mean()
        var_f = logits.double().var(dim=0, correction=0).mean()
        if not (torch.isfinite(var_f) and var_f > 0):
            raise ValueError(f"balance='spread': the original networks' logits do not vary over the training split "
                             f"(variance {float(var_f):g}); use balance='units'")
        self.spread_ratio.fill_(float(var_w / var_f))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, latent)``: the transformer's compression token."""
        return self.inner.encode(x)

    def rebuild(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent)`` -> ``(B, D)``: the rebuilt weights."""
        return self.inner.decode(z)

    def decode(self, z: torch.Tensor, networks: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, latent)`` -> ``(B, D + K * classes)``: the rebuilt weights and their network's logits, scaled
        (`networks`: each row's code, where the zoo's networks differ in activation)."""
        return self._joined(self.rebuild(z), networks, grad=True)

    def forward(self, x: torch.Tensor, networks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z, networks)

    def reconstruction_target(self, x: torch.Tensor, networks: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, D)`` -> ``(B, D + K * classes)``: the weights and the original network's logits, scaled."""
        return self._joined(x, networks, grad=False)

    def _joined(self, w: torch.Tensor, networks: torch.Tensor | None, *, grad: bool) -> torch.Tensor:
        if self.behaviour is None or self.beta == 0:
            return w
        w = w.float()
        # the rebuilt network runs with gradients; the original's logits are cached, without
        logits = self.behaviour._run(w, networks) if grad else self.behaviour(w, networks)
        scale = self.scale_logits * (self.spread_ratio.sqrt() if self.balance == "spread" else 1.0)
        return torch.cat([w * self.scale_weights, logits * scale], dim=1)


@register_encoder("behaviour_ae", config=BehaviourAEConfig)
def build_behaviour_ae(c: BehaviourAEConfig, layout: WeightLayout,
                       generator: torch.Generator | None) -> BehaviourAutoencoder:
    inner = create_autoencoder(
        TransformerConfig(name="transformer_neuron", d_model=c.d_model, n_heads=c.n_heads, n_blocks=c.n_blocks,
                          d_ff=c.d_ff, latent_dim=c.latent_dim, dropout=c.dropout, compression_token=True),
        layout, generator=generator)
    assert isinstance(inner, TransformerAutoencoder)  # the registry builds the config's own class
    behaviour = None
    if c.beta > 0:
        if c.architecture is None:
            raise ValueError("behaviour_ae with beta > 0 runs the zoo's networks: fill BehaviourAEConfig.architecture "
                             "from the zoo (function_target.with_zoo_architecture), or set beta=0")
        queries = c.queries if c.queries != "task" or c.architecture.get("task") else "uniform"
        behaviour = FunctionTarget(layout, c.architecture, n_queries=c.n_queries, seed=c.query_seed,
                                   queries=queries)
    return BehaviourAutoencoder(inner, behaviour, c.beta, c.balance)

