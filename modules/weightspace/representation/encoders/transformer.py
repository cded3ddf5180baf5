"""Transformer autoencoder over weight tokens: encoders "transformer_neuron" (one token per neuron)
and "transformer_weight" (one token per weight).

Encoder: tokens -> [compression token] + learned positions -> pre-norm blocks
-> [final norm] -> bottleneck (Linear + tanh, or an MLP) -> z ``(B, latent)``.
Decoder: z -> Linear to ``T * d_model`` -> learned positions -> pre-norm blocks
-> [final norm] -> per-group Linear -> gather back to ``(B, D)``.
The 2021 code had no final norm (``final_norm=False``); it is on by default here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from weightspace.layout import WeightLayout
from weightspace.representation.autoencoder import Autoencoder
from weightspace.representation.dropout import dropout
from weightspace.representation.encoders.mlp import mlp_stack, mlp_widths
from weightspace.representation.init import init_parameters
from weightspace.representation.registry import EncoderConfig, register_encoder
from weightspace.representation.tokens import TokenDebedder, TokenEmbedder, neuron_token_groups, weight_token_groups
from weightspace.zoo.activations import ACTIVATIONS

_TOKENS = {"transformer_neuron": neuron_token_groups, "transformer_weight": weight_token_groups}


@dataclass
class TransformerConfig(EncoderConfig):
    """The 2021 transformer autoencoder; ``name`` picks the tokens (neurons or single weights)."""

    name: str = "transformer_neuron"  # "transformer_neuron" or "transformer_weight"
    d_model: int = 256  # token embedding width
    n_heads: int = 4  # attention heads; must divide d_model
    n_blocks: int = 2  # transformer blocks in the encoder, and again in the decoder
    d_ff: int = 512  # hidden width of each block's feed-forward layer
    dropout: float = 0.1  # dropout on the feed-forward hidden layer and both residual branches
    attn_dropout: float = 0.1  # dropout on attention probabilities (as in 2021); 0 lets the fused kernel run
    latent_dim: int = 50  # width of the embedding z
    compression_token: bool = True  # read z from a learned extra token (else from all tokens)
    bottleneck: str = "linear"  # "linear" (Linear + tanh) or "mlp" between tokens and z
    bottleneck_layers: int = 3  # hidden layers of the "mlp" bottleneck
    activation: str = "leakyrelu"  # activation of the mlp bottleneck
    final_norm: bool = True  # LayerNorm after the last block of encoder and decoder (2021 had none)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("d_model", "n_heads", "n_blocks", "d_ff", "latent_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"TransformerConfig.{key} must be >= 1, got {getattr(self, key)}")
        if self.d_model % self.n_heads:
            divisors = [h for h in range(1, min(self.d_model, 64) + 1) if self.d_model % h == 0]
            raise ValueError(f"TransformerConfig.n_heads={self.n_heads} does not divide d_model={self.d_model}; "
                             f"pick n_heads among {divisors}")
        for key in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"TransformerConfig.{key} must lie in [0, 1), got {getattr(self, key)}")
        if self.bottleneck not in ("linear", "mlp"):
            raise ValueError(f"TransformerConfig.bottleneck must be 'linear' or 'mlp', got {self.bottleneck!r}")
        if self.bottleneck_layers < 0:
            raise ValueError(f"TransformerConfig.bottleneck_layers must be >= 0, got {self.bottleneck_layers}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"TransformerConfig.activation {self.activation!r} is unknown; "
                             f"choose one of {sorted(ACTIVATIONS)}")


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + ff(norm(x)).

    `dropout` acts on both residual branches and the feed-forward hidden layer;
    `attn_dropout` on the attention probabilities.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, attn_dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} does not divide d_model={d_model}")
        self.n_heads, self.dropout, self.attn_dropout = n_heads, dropout, attn_dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        p = self.dropout if self.training else 0.0
        # q, k, v: (B, heads, T, d_head), strided views of the (B, T, 3d) projection (their gradients need no copy)
        qkv = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q, k, v = (c.unflatten(-1, (self.n_heads, d // self.n_heads)).transpose(1, 2) for c in qkv)
        a = self._attend(q, k, v).transpose(1, 2).reshape(b, t, d)  # (B, T, d_model)
        x = x + dropout(self.proj(a), p, self.training)
        h = dropout(F.relu(self.ff1(self.norm2(x))), p, self.training)
        return x + dropout(self.ff2(h), p, self.training)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d_head)) v, ``(B, heads, T, d_head)``."""
        p = self.attn_dropout if self.training else 0.0
        if q.device.type != "cpu":
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        if p > 0 and q.shape[2] <= 256:
            # short sequences: explicit probabilities, dropped with the cheap CPU mask
            return dropout((q @ k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5).softmax(dim=-1), p) @ v
        if q.dtype != torch.float32:
            # the CPU kernel's bf16/fp16 backward is many times slower than its fp32 one at these sizes
            with torch.autocast("cpu", enabled=False):
                return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=p).to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # the fused kernel, on strided q, k, v


class Stack(nn.Module):
    """`n_blocks` blocks and a final LayerNorm (the identity with ``final_norm=False``, as in 2021)."""

    def __init__(self, n_blocks: int, d_model: int, n_heads: int, d_ff: int, dropout: float, attn_dropout: float = 0.0,
                 final_norm: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout, attn_dropout) for _ in range(n_blocks))
        self.norm = nn.LayerNorm(d_model) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class TransformerAutoencoder(Autoencoder):
    """Transformer encoder/decoder over a tokenization of the flat weight vector.

    Args:
        groups: token index groups (see `tokens.py`); they must cover the vector exactly once.
        num_params: D.
        d_model, n_heads, n_blocks, d_ff, dropout: transformer sizes (n_blocks each side).
        attn_dropout: dropout on attention probabilities (0.1 in 2021; with 0 the fused kernel runs).
        latent_dim: width of z.
        compression_token: prepend a learned token and read z from its output;
            otherwise z is read from all token outputs, flattened.
        bottleneck: "linear" (Linear + tanh) or "mlp" (`bottleneck_layers` hidden layers, tanh out).
        final_norm: a LayerNorm after the last block of encoder and decoder (the 2021 code had none).
        generator: draws the initial parameters; None keeps PyTorch's default init.
    """

    def __init__(self, groups: Sequence[torch.Tensor], num_params: int, *, d_model: int = 256, n_heads: int = 4,
                 n_blocks: int = 2, d_ff: int = 512, dropout: float = 0.1, attn_dropout: float = 0.1, latent_dim: int = 50,
                 compression_token: bool = True, bottleneck: str = "linear", bottleneck_layers: int = 3,
                 activation: str = "leakyrelu", final_norm: bool = True, generator: torch.Generator | None = None):
        super().__init__()
        if bottleneck not in ("linear", "mlp"):
            raise ValueError(f"bottleneck must be 'linear' or 'mlp', got {bottleneck!r}")
        self.num_params, self.embedding_dim, self.d_model = num_params, latent_dim, d_model
        self.tokenizer = TokenEmbedder(groups, num_params, d_model)
        t = self.num_tokens = self.tokenizer.num_tokens
        self.compression = nn.Parameter(torch.zeros(1, 1, d_model)) if compression_token else None
        self.enc_pos = nn.Parameter(torch.zeros(1, t + int(compression_token), d_model))
        self.encoder = Stack(n_blocks, d_model, n_heads, d_ff, dropout, attn_dropout, final_norm)
        read = d_model if compression_token else t * d_model
        if bottleneck == "linear":
            self.to_latent: nn.Module = nn.Sequential(nn.Linear(read, latent_dim), nn.Tanh())
            self.from_latent: nn.Module = nn.Linear(latent_dim, t * d_model)
        else:
            widths = mlp_widths(read, latent_dim, bottleneck_layers)
            self.to_latent = mlp_stack(widths, activation, dropout, tanh_out=True)
            self.from_latent = mlp_stack([latent_dim, *widths[-2:0:-1], t * d_model], activation, dropout)
        self.dec_pos = nn.Parameter(torch.zeros(1, t, d_model))
        self.decoder = Stack(n_blocks, d_model, n_heads, d_ff, dropout, attn_dropout, final_norm)
        self.detokenizer = TokenDebedder(groups, num_params, d_model)
        if generator is not None:
            self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Draw every parameter from `generator`: Linear/LayerNorm defaults, N(0, 1) token and positions."""
        init_parameters(self, generator)
        with torch.no_grad():
            for p in (self.compression, self.enc_pos, self.dec_pos):
                if p is not None:
                    p.normal_(0.0, 1.0, generator=generator)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, latent)``."""
        h = self.tokenizer(x)  # (B, T, d_model)
        if self.compression is not None:
            h = torch.cat([self.compression.expand(h.shape[0], -1, -1), h], dim=1)  # (B, 1 + T, d_model)
        h = self.encoder(h + self.enc_pos)
        h = h[:, 0] if self.compression is not None else h.flatten(1)
        return self.to_latent(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent)`` -> ``(B, D)``."""
        h = self.from_latent(z).view(z.shape[0], self.num_tokens, self.d_model)  # (B, T, d_model)
        return self.detokenizer(self.decoder(h + self.dec_pos))


@register_encoder("transformer_neuron", config=TransformerConfig)
@register_encoder("transformer_weight", config=TransformerConfig)
def build_transformer(c: TransformerConfig, layout: WeightLayout,
                      generator: torch.Generator | None) -> TransformerAutoencoder:
    return TransformerAutoencoder(
        _TOKENS[c.name](layout), layout.num_params, d_model=c.d_model, n_heads=c.n_heads, n_blocks=c.n_blocks,
        d_ff=c.d_ff, dropout=c.dropout, attn_dropout=c.attn_dropout, latent_dim=c.latent_dim,
        compression_token=c.compression_token, bottleneck=c.bottleneck, bottleneck_layers=c.bottleneck_layers,
        activation=c.activation, final_norm=c.final_norm, generator=generator)
