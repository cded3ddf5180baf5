"""The permutation-invariant encoder "neuron_set": a per-neuron MLP pooled over each hidden layer's neurons.

Hidden neuron k of layer l is one token: its incoming weights, its bias and its outgoing
weights (the next layer's column k). Axes that another hidden permutation reorders (the
incoming axis of a layer fed by a hidden layer, the outgoing axis of a layer that feeds a
hidden layer) are summarised by their mean, max and min, so that every token, and every
pooled feature, is exactly invariant to all function-preserving permutations. Optionally each
token also carries per-neuron summaries (largest |w|, extremes, mean square of its incoming and
outgoing weights), because training progress lives in such order statistics.

A per-layer MLP ``phi`` maps each token to ``width`` features, which are pooled over the layer's
neurons by mean, max and min (DeepSets; Zaheer et al. 2017) — a readout that can express a
layer's maximum, which a linear readout of neuron tokens cannot. The embedding is the pooled
features of every hidden layer, the output layer's bias, and (``skip``) the same pooling applied
to the standardised tokens themselves. Token entries are standardised per layer and position
with a shift and scale fitted on training weights (`fit_input_scale`), as SANE does.

The decoder does not rebuild the weights (an invariant code cannot say which permutation to
rebuild); it predicts `invariant_targets` of the input: per-layer quantiles of the weights and of
|w|, and the pooled per-neuron summaries — a reconstruction loss that keeps the tails. Its
reconstruction R² therefore scores these statistics (``reconstruction_kind``), not the weights.
With ``target="outputs"`` it predicts instead what the network computes: its logits on K fixed
data-free queries (`weightspace.representation.function_target`), standardised per entry, and with
``"both"`` the two concatenated, the outputs weighing ``output_weight`` of the loss. Both targets are
invariant to the permutations, so the encoder can learn them; the fixed code stays the statistics'.

The embedding that probes read (`encode`) also carries a fixed, untrained code (``code``): the
standardised `invariant_targets` and a piecewise-linear code of them and of the pooled standardised
tokens, ``relu(v - knot)`` at ``code_knots`` knots per entry placed at quantiles of the training
rows (fitted with the input scale, from weights alone). Training progress and accuracy are
monotone but curved functions of such statistics (a layer's largest |w| grows fast, then slowly);
the code lets a linear readout bend them. Training (`forward`: the projection head and the
decoder) sees only the learned features, so the code changes nothing the objective optimises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from weightspace.layout import LayerSpec, WeightLayout
from weightspace.representation.autoencoder import Autoencoder
from weightspace.representation.encoders.mlp import mlp_stack
from weightspace.representation.function_target import FunctionTarget
from weightspace.representation.init import init_parameters
from weightspace.representation.registry import EncoderConfig, register_encoder
from weightspace.zoo.activations import ACTIVATIONS, make_activation

POOLS = ("mean", "max", "min")
TARGETS = ("statistics", "outputs", "both")  # what the decoder predicts
QUERIES = ("uniform", "normal", "task")  # what the outputs target runs the networks on
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


def _pool(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean, max and min over `dim`, concatenated on the last axis."""
    return torch.cat([x.mean(dim), x.amax(dim), x.amin(dim)], dim=-1)


def _hinges(v: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """``(B, F)`` and knots ``(k, F)`` -> ``(B, k * F)``: relu(v - knot), knot by knot."""
    return torch.relu(v.unsqueeze(1) - knots).flatten(1)


def _neuron_summary(values: torch.Tensor) -> torch.Tensor:
    """``(B, n, m)`` -> ``(B, n, 4)``: largest |w|, max, min and mean square of each neuron's m values."""
    return torch.stack([values.abs().amax(-1), values.amax(-1), values.amin(-1), values.square().mean(-1)], dim=-1)


class _HiddenLayerTokens(nn.Module):
    """Gathers the invariant tokens ``(B, n, token_dim)`` of one hidden layer from flat weights ``(B, D)``."""

    # buffers: positions in the flat vector of the incoming weights, the outgoing weights and the biases
    w_in: torch.Tensor  # (n, in units, block)
    w_out: torch.Tensor  # (n, next layer's units, block)
    bias: torch.Tensor  # (n,), or (0,) without biases

    def __init__(self, spec: LayerSpec, nxt: LayerSpec, *, prev_hidden: bool, next_hidden: bool, neuron_stats: bool):
        super().__init__()
        n = spec.n_out
        w_in = spec.offset + torch.arange(spec.n_weights).view(n, spec.n_in, -1)  # (n, in units, block)
        w_out = nxt.offset + torch.arange(nxt.n_weights).view(nxt.n_out, n, -1).transpose(0, 1)  # (n, next, block)
        self.register_buffer("w_in", w_in.contiguous(), persistent=False)
        self.register_buffer("w_out", w_out.contiguous(), persistent=False)
        bias_slice = spec.bias_slice
        bias = torch.arange(bias_slice.start, bias_slice.stop) if bias_slice is not None else torch.zeros(0, dtype=torch.long)
        self.register_buffer("bias", bias, persistent=False)
        self.prev_hidden, self.next_hidden, self.neuron_stats = prev_hidden, next_hidden, neuron_stats
        block_in, block_out = w_in.shape[2], w_out.shape[2]
        d_in = 3 * block_in if prev_hidden else w_in.shape[1] * block_in
        d_out = 3 * block_out if next_hidden else w_out.shape[1] * block_out
        self.token_dim = d_in + int(spec.has_bias) + d_out + (8 if neuron_stats else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[0], self.w_in.shape[0]
        w_in, w_out = x[:, self.w_in], x[:, self.w_out]  # (B, n, units, block)
        parts = [_pool(w_in.transpose(2, 3), -1).reshape(b, n, -1) if self.prev_hidden else w_in.reshape(b, n, -1)]
        if self.bias.numel():
            parts.append(x[:, self.bias].unsqueeze(-1))
        parts.append(_pool(w_out.transpose(2, 3), -1).reshape(b, n, -1) if self.next_hidden else w_out.reshape(b, n, -1))
        if self.neuron_stats:
            parts += [_neuron_summary(w_in.reshape(b, n, -1)), _neuron_summary(w_out.reshape(b, n, -1))]
        return torch.cat(parts, dim=-1)  # (B, n, token_dim)


@dataclass
class NeuronSetConfig(EncoderConfig):
    """The neuron_set encoder: per-neuron MLPs pooled over hidden layers, plus a fixed code of the statistics."""

    name: str = "neuron_set"  # the registered encoder
    width: int = 512  # features per neuron of each hidden layer's per-neuron MLP
    phi_layers: int = 1  # Linear layers of the per-neuron MLP
    activation: str = "tanh"  # activation after each of them
    neuron_stats: bool = True  # tokens carry per-neuron summaries (largest |w|, extremes)
    skip: bool = True  # the embedding also holds the pooled standardised tokens
    project_dim: int = 0  # a Linear maps the learned features to this width; 0 keeps the pooled features
    code: bool = False  # the embedding also holds the fixed code (an untrained baseline: InvariantCode)
    code_knots: int = 5  # hinge knots per entry of the code (0: the statistics alone)
    decoder_hidden: int = 256  # hidden width of the decoder; 0: a linear decoder (the target linear in the features)
    target: str = "statistics"  # the decoder predicts "statistics", "outputs" (logits on queries) or "both"
    output_weight: float = 0.5  # "both": the outputs' share of the reconstruction loss, in (0, 1)
    n_queries: int = 64  # K, query inputs of the outputs target
    query_seed: int = 0  # draws the queries
    queries: str = "uniform"  # "uniform" or "normal" (data-free), or "task": the zoo's task inputs, no labels
    target_activation: str = "zoo"  # "zoo": each network its own (the zoo's, or each row's); or one name for all
    architecture: dict | None = None  # the zoo's networks (function_target.zoo_architecture); the pipeline fills it

    @property
    def needs_architecture(self) -> bool:
        """Whether the target runs the zoo's networks, so that `architecture` must be filled from the zoo."""
        return self.target != "statistics"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in TARGETS:
            raise ValueError(f"NeuronSetConfig.target must be one of {TARGETS}, got {self.target!r}")
        if not 0.0 < self.output_weight < 1.0:
            raise ValueError(f"NeuronSetConfig.output_weight must lie in (0, 1), got {self.output_weight}; "
                             "use target='statistics' or 'outputs' for the ends")
        if self.n_queries < 1:
            raise ValueError(f"NeuronSetConfig.n_queries must be >= 1, got {self.n_queries}")
        if self.queries not in QUERIES:
            raise ValueError(f"NeuronSetConfig.queries must be one of {QUERIES}, got {self.queries!r}")
        if self.target_activation != "zoo" and self.target_activation not in ACTIVATIONS:
            raise ValueError(f"NeuronSetConfig.target_activation {self.target_activation!r} is unknown; choose 'zoo' "
                             f"or one of {sorted(ACTIVATIONS)}")
        for key in ("width", "phi_layers"):
            if getattr(self, key) < 1:
                raise ValueError(f"NeuronSetConfig.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("project_dim", "code_knots", "decoder_hidden"):
            if getattr(self, key) < 0:
                raise ValueError(f"NeuronSetConfig.{key} must be >= 0, got {getattr(self, key)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"NeuronSetConfig.activation {self.activation!r} is unknown; "
                             f"choose one of {sorted(ACTIVATIONS)}")


class NeuronSetEncoder(Autoencoder):
    """``(B, D)`` -> ``(B, embedding_dim)``, invariant to every function-preserving permutation of hidden neurons.

    Args:
        layout: the weight layout; it needs at least one hidden layer (two Linear/Conv layers).
        width: features per neuron of each layer's ``phi``.
        phi_layers: Linear layers in ``phi`` (each followed by `activation`).
        neuron_stats: add per-neuron summaries (largest |w|, max, min, mean square) to the tokens.
        skip: add the pooled standardised tokens themselves to the embedding.
        project_dim: 0 keeps the pooled features as the learned features; otherwise a Linear maps them to this width.
        code: append the fixed code (standardised invariant statistics and their hinges) to the embedding.
        code_knots: knots per entry of the code's piecewise-linear part (0: the statistics alone).
        decoder_hidden: hidden width of the decoder; 0: one Linear layer.
        target: what the decoder predicts: "statistics" (`invariant_targets`), "outputs" (`function`'s logits
            on its queries) or "both" (concatenated, the outputs weighing `output_weight` of the loss).
        function: the networks' outputs on fixed queries; needed unless `target` is "statistics".
        output_weight: with "both", the outputs' share of the reconstruction MSE.
        generator: draws the initial parameters.
    """

    # buffers (besides shift_<i> / scale_<i>, the token standardisation of hidden layer i)
    scale_fitted: torch.Tensor  # () bool: whether `fit_input_scale` ran
    out_bias: torch.Tensor  # positions of the output layer's biases
    target_shift: torch.Tensor  # (num_targets,)
    target_scale: torch.Tensor  # (num_targets,)
    knots: torch.Tensor  # (code_knots, hinged entries)
    output_shift: torch.Tensor  # (num_outputs,), only with `function`
    output_scale: torch.Tensor  # (num_outputs,), only with `function`

    def __init__(self, layout: WeightLayout, *, width: int = 512, phi_layers: int = 1, activation: str = "tanh",
                 neuron_stats: bool = True, skip: bool = True, project_dim: int = 0, code: bool = False,
                 code_knots: int = 5, decoder_hidden: int = 256, target: str = "statistics",
                 function: FunctionTarget | None = None, output_weight: float = 0.5,
                 generator: torch.Generator | None = None):
        super().__init__()
        layers = layout.layers
        if len(layers) < 2:
            raise ValueError(f"the neuron_set encoder pools over hidden neurons, but layout has only {len(layers)} "
                             "layer(s); use the transformer_neuron or mlp autoencoder for a network without hidden layers")
        self.num_params = layout.num_params
        self.tokens = nn.ModuleList(
            _HiddenLayerTokens(spec, layers[i + 1], prev_hidden=i > 0, next_hidden=i + 1 < len(layers) - 1,
                               neuron_stats=neuron_stats)
            for i, spec in enumerate(layers[:-1]))
        self.phi = nn.ModuleList()
        for t in self._layers:
            stack = [nn.Linear(t.token_dim, width), make_activation(activation)]
            for _ in range(phi_layers - 1):
                stack += [nn.Linear(width, width), make_activation(activation)]
            self.phi.append(nn.Sequential(*stack))
        for i, t in enumerate(self._layers):  # standardisation of token entries, shared by a layer's neurons
            self.register_buffer(f"shift_{i}", torch.zeros(t.token_dim))
            self.register_buffer(f"scale_{i}", torch.ones(t.token_dim))
        self.register_buffer("scale_fitted", torch.zeros((), dtype=torch.bool))
        last_bias = layers[-1].bias_slice
        out_bias = torch.arange(last_bias.start, last_bias.stop) if last_bias is not None else torch.zeros(0, dtype=torch.long)
        self.register_buffer("out_bias", out_bias, persistent=False)
        self.skip = skip
        pooled = sum(3 * width + (3 * t.token_dim if skip else 0) for t in self._layers) + out_bias.numel()
        self.project = nn.Linear(pooled, project_dim) if project_dim else nn.Identity()
        self.learned_dim = project_dim or pooled  # the learned features: what the head and the decoder read
        self.layer_index = [torch.arange(s.offset, s.offset + s.size) for s in layers]
        self.num_targets = len(self.invariant_targets(torch.zeros(1, self.num_params))[0])
        self.register_buffer("target_shift", torch.zeros(self.num_targets))
        self.register_buffer("target_scale", torch.ones(self.num_targets))
        self.code, self.code_knots = code, code_knots if code else 0
        hinged = self.num_targets + sum(3 * t.token_dim for t in self._layers)  # statistics, pooled tokens
        self.register_buffer("knots", torch.zeros(self.code_knots, hinged))
        self.code_dim = (self.num_targets + self.code_knots * hinged) if code else 0
        self.embedding_dim = self.learned_dim + self.code_dim  # the embedding `encode` returns
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if (target == "statistics") != (function is None):
            raise ValueError(f"target {target!r} " + ("needs the networks' outputs (function); fill "
                             "NeuronSetConfig.architecture from the zoo (function_target.zoo_architecture)"
                             if function is None else "predicts no outputs; pass function=None"))
        self.target = target
        self.function: FunctionTarget | None = function
        self.network_variants = function.variants if function is not None and target != "statistics" else ()
        recon_dim = self.num_targets
        if function is not None:
            self.num_outputs = function.n_outputs
            self.register_buffer("output_shift", torch.zeros(self.num_outputs))
            self.register_buffer("output_scale", torch.ones(self.num_outputs))
            recon_dim = self.num_outputs + (self.num_targets if target == "both" else 0)
            # "both": scaled parts make the MSE over the concatenation (1 - w) * MSE(stats) + w * MSE(outputs)
            self.part_weights = (((1 - output_weight) * recon_dim / self.num_targets) ** 0.5,
                                 (output_weight * recon_dim / self.num_outputs) ** 0.5)
            self.reconstruction_kind = {"outputs": "outputs on queries",
                                        "both": "invariant statistics and outputs on queries"}[target]
        self.decoder = mlp_stack([self.learned_dim, *([decoder_hidden] if decoder_hidden else []), recon_dim],
                                 "leakyrelu")
        if generator is not None:
            init_parameters(self, generator)

    reconstruction_kind = "invariant statistics"

    @property
    def trained_dim(self) -> int:
        """The learned features' width: the embedding without the fixed code."""
        return self.learned_dim

    @property
    def _layers(self) -> list[_HiddenLayerTokens]:
        """`tokens`, typed: the ModuleList holds one `_HiddenLayerTokens` per hidden layer."""
        return [cast(_HiddenLayerTokens, t) for t in self.tokens]

    # ------------------------------------------------------------ inputs
    @torch.no_grad()
    def fit_input_scale(self, weights: torch.Tensor, networks: torch.Tensor | None = None,
                        batch_size: int = 1000) -> None:
        """Fit the per-layer, per-position shift and scale of the tokens, the statistics' standardisation
        and the code's knots on `weights` ``(S, D)`` (training rows; no property of any model is used;
        `networks`: each row's code, where the outputs' networks differ in activation)."""
        sums = [torch.zeros(3, t.token_dim, dtype=torch.float64) for t in self._layers]
        sums.append(torch.zeros(3, self.num_targets, dtype=torch.float64))
        if self.function is not None:
            sums.append(torch.zeros(3, self.num_outputs, dtype=torch.float64))
        device = self.target_shift.device  # where every buffer lives
        for start in range(0, weights.shape[0], batch_size):
            x = torch.as_tensor(weights[start:start + batch_size], dtype=torch.float32).to(device)
            rows = [t(x).reshape(-1, t.token_dim) for t in self._layers] + [self.invariant_targets(x)]
            if self.function is not None:
                codes = None if networks is None else networks[start:start + batch_size]
                rows.append(self.function(x, None if codes is None else codes.to(device)))
            for s, r in zip(sums, rows):
                r = r.double().cpu()
                s += torch.stack([torch.full_like(r[0], r.shape[0]), r.sum(0), r.square().sum(0)])
        shifts = [f"shift_{i}" for i in range(len(self.tokens))] + ["target_shift", "output_shift"]
        scales = [f"scale_{i}" for i in range(len(self.tokens))] + ["target_scale", "output_scale"]
        for (count, total, total_sq), shift, scale in zip(sums, shifts, scales):
            mean = total / count
            std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
            getattr(self, shift).copy_(mean.float())
            getattr(self, scale).copy_(torch.where(std > 1e-8, std, torch.ones_like(std)).float())
        if self.code_knots:  # knots at the quantiles 1/(k+1) .. k/(k+1) of each hinged entry
            rows = []
            for start in range(0, weights.shape[0], batch_size):
                x = torch.as_tensor(weights[start:start + batch_size], dtype=torch.float32).to(device)
                rows.append(self._code_inputs(x, self._standard_tokens(x)).cpu())
            levels = np.arange(1, self.code_knots + 1) / (self.code_knots + 1)
            self.knots.copy_(torch.from_numpy(np.quantile(torch.cat(rows).double().numpy(), levels, axis=0)).float())
        self.scale_fitted.fill_(True)

    def invariant_targets(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, n_targets)``: per layer, quantiles of w and of |w|; per hidden layer, the
        mean / max / min over neurons of each neuron's summaries. All invariant to hidden permutations."""
        q = torch.tensor(QUANTILES, dtype=x.dtype, device=x.device)
        parts = []
        for idx in self.layer_index:
            w = x[:, idx.to(x.device)].float()
            parts += [torch.quantile(w, q.float(), dim=1).T, torch.quantile(w.abs(), q.float(), dim=1).T]
        for t in self._layers:
            b, n = x.shape[0], t.w_in.shape[0]
            summary = torch.cat([_neuron_summary(x[:, t.w_in].reshape(b, n, -1)),
                                 _neuron_summary(x[:, t.w_out].reshape(b, n, -1))], dim=-1).float()
            parts.append(_pool(summary, 1))
        return torch.cat(parts, dim=1)

    def _standard_tokens(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each hidden layer's tokens ``(B, n, token_dim)``, standardised."""
        return [(t(x) - getattr(self, f"shift_{i}")) / getattr(self, f"scale_{i}") for i, t in enumerate(self._layers)]

    def _code_inputs(self, x: torch.Tensor, tokens: list[torch.Tensor]) -> torch.Tensor:
        """``(B, num_targets + pooled tokens)``: the entries the code hinges, the standardised statistics
        (`standard_statistics`) and then each hidden layer's pooled standardised tokens."""
        return torch.cat([self.standard_statistics(x)] + [_pool(tok, 1) for tok in tokens], dim=1)

    # ------------------------------------------------------------ model
    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.num_params:
            raise ValueError(f"expected weights of shape (B, {self.num_params}), got {tuple(x.shape)}")

    def _learned(self, x: torch.Tensor, tokens: list[torch.Tensor]) -> torch.Tensor:
        feats = []
        for tok, phi in zip(tokens, self.phi):
            feats.append(_pool(phi(tok), 1))  # (B, 3 * width)
            if self.skip:
                feats.append(_pool(tok, 1))
        feats.append(x[:, self.out_bias])
        return self.project(torch.cat(feats, dim=1))

    def learned(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, trained_dim)``: the trained part of the embedding."""
        self._check(x)
        return self._learned(x, self._standard_tokens(x))

    def _fixed_code(self, x: torch.Tensor, tokens: list[torch.Tensor]) -> torch.Tensor:
        """``(B, code_dim)``: the untrained end of the embedding, the standardised statistics and the hinges
        of `_code_inputs`."""
        inputs = self._code_inputs(x, tokens)
        return torch.cat([inputs[:, :self.num_targets], _hinges(inputs, self.knots)], dim=1)

    def fixed_code(self, x: torch.Tensor, *, hinged: bool = True) -> torch.Tensor:
        """``(B, D)`` -> ``(B, code_dim)``: the fixed code alone (the `InvariantCode` baseline of
        `weightspace.downstream.features`); empty when ``code`` is off. ``hinged=False``: the entries the code
        hinges instead (the standardised statistics, then each hidden layer's pooled standardised tokens),
        which say the same to a tree, whose splits are indifferent to a hinge."""
        self._check(x)
        if not self.code:
            return x.new_zeros(x.shape[0], 0)
        tokens = self._standard_tokens(x)
        return self._fixed_code(x, tokens) if hinged else self._code_inputs(x, tokens)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, embedding_dim)``: the learned features, then (``code``) the fixed code."""
        self._check(x)
        tokens = self._standard_tokens(x)
        z = self._learned(x, tokens)
        return torch.cat([z, self._fixed_code(x, tokens)], dim=1) if self.code else z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, trained_dim)`` (or the whole embedding, whose learned part is read) -> the predicted
        `reconstruction_target`."""
        return self.decoder(z[:, :self.trained_dim])

    def standard_statistics(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, n_targets)``: `invariant_targets`, standardised."""
        return (self.invariant_targets(x) - self.target_shift) / self.target_scale

    def standard_outputs(self, x: torch.Tensor, networks: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, D)`` -> ``(B, K * classes)``: the networks' logits on the queries, standardised per entry.

        Raises:
            ValueError: the encoder predicts statistics only, and holds no outputs (``function``).
        """
        if self.function is None:
            raise ValueError("this neuron_set encoder predicts statistics only (target 'statistics'); it holds no "
                             "networks' outputs to standardise")
        return (self.function(x, networks) - self.output_shift) / self.output_scale

    def reconstruction_target(self, x: torch.Tensor, networks: torch.Tensor | None = None) -> torch.Tensor:
        """What `decode` reconstructs for the weights `x`: the standardised statistics, the standardised
        outputs, or both (each part scaled by its share of the loss)."""
        if self.target == "statistics":
            return self.standard_statistics(x)
        if self.target == "outputs":
            return self.standard_outputs(x, networks)
        stats, outs = self.part_weights
        return torch.cat([stats * self.standard_statistics(x), outs * self.standard_outputs(x, networks)], dim=1)

    def forward(self, x: torch.Tensor, networks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: the learned features ``(B, trained_dim)`` and the decoded statistics."""
        z = self.learned(x)
        return z, self.decode(z)


@register_encoder("neuron_set", config=NeuronSetConfig)
def build_neuron_set(c: NeuronSetConfig, layout: WeightLayout, generator: torch.Generator | None) -> NeuronSetEncoder:
    function = None
    if c.needs_architecture:
        if c.architecture is None:
            raise ValueError(f"NeuronSetConfig(target={c.target!r}) runs the zoo's networks, but its architecture "
                             "is not filled in; set it from the zoo: with_zoo_architecture(config, zoo) (the "
                             "experiment pipeline and `weightspace quality` do this)")
        function = FunctionTarget(layout, c.architecture, n_queries=c.n_queries, seed=c.query_seed,
                                  activation=None if c.target_activation == "zoo" else c.target_activation,
                                  queries=c.queries)
    return NeuronSetEncoder(layout, width=c.width, phi_layers=c.phi_layers, activation=c.activation,
                            neuron_stats=c.neuron_stats, skip=c.skip, project_dim=c.project_dim, code=c.code,
                            code_knots=c.code_knots, decoder_hidden=c.decoder_hidden, target=c.target,
                            function=function,
                            output_weight=c.output_weight, generator=generator)
