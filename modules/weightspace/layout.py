"""WeightLayout: the schema of one architecture's flat weight vector.

A zoo stores every network as one flat float vector. The layout says where each
layer lives in it: per layer the weight (torch layout, C order), then its bias,
layer after layer in forward order. That order is the 2021 ``index_dict.json``
order, so a layout can be written to and read from that file.

Layers are found by parameter name (``conv1.weight``), never by position in a
module list, so inserting dropout or activation modules never moves them.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

from weightspace.errors import InputError
from weightspace.io.atomic import write_json
from weightspace.io.json_files import read_json
from weightspace.layout_check import check_permutations, refuse_normalization

KINDS = ("linear", "conv2d")
_INDEX_DICT_KIND = {"linear": "fc", "conv2d": "conv2d"}


@dataclass(frozen=True)
class LayerSpec:
    """One Linear or Conv2d layer inside the flat vector."""

    name: str  # module name; parameters are ``<name>.weight`` / ``<name>.bias``
    kind: str  # "linear" or "conv2d"
    weight_shape: tuple[int, ...]  # torch shape: (out, in) or (out, in, kh, kw)
    has_bias: bool
    offset: int  # start of this layer's block in the flat vector
    # Linear layers fed by a flattened conv map see each previous channel as a
    # contiguous block of `in_block` inputs (torch flattens channel-major).
    in_block: int = 1
    legacy_index: int | None = None  # module index in the 2021 `module_list`, if known

    def __post_init__(self) -> None:
        # layouts are read from zoo files: every field is checked, so that a damaged file fails here, with a message
        count = lambda v, least: isinstance(v, int) and not isinstance(v, bool) and v >= least  # noqa: E731
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"a layer name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise InputError(f"layer {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        want = 2 if self.kind == "linear" else 4
        if not isinstance(self.weight_shape, tuple) or not all(count(n, 1) for n in self.weight_shape):
            raise InputError(f"layer {self.name!r}: weight_shape must hold positive integers, got {self.weight_shape!r}")
        if len(self.weight_shape) != want:
            raise InputError(
                f"layer {self.name!r}: a {self.kind} weight has {want} dims, got shape {self.weight_shape}"
            )
        if not isinstance(self.has_bias, bool):
            raise InputError(f"layer {self.name!r}: has_bias must be true or false, got {self.has_bias!r}")
        if not count(self.offset, 0):
            raise InputError(f"layer {self.name!r}: offset must be a non-negative integer, got {self.offset!r}")
        if not count(self.in_block, 1):
            raise InputError(f"layer {self.name!r}: in_block must be a positive integer, got {self.in_block!r}")
        if self.legacy_index is not None and not count(self.legacy_index, 0):
            raise InputError(f"layer {self.name!r}: legacy_index must be a non-negative integer or null, "
                             f"got {self.legacy_index!r}")
        if self.weight_shape[1] % self.in_block:
            raise InputError(f"layer {self.name!r}: {self.weight_shape[1]} inputs do not split into blocks of {self.in_block}")

    @property
    def n_out(self) -> int:
        """Output neurons or channels: the number of neuron tokens of this layer."""
        return self.weight_shape[0]

    @property
    def fan_in(self) -> int:
        """Incoming weights per output neuron."""
        return math.prod(self.weight_shape[1:])

    @property
    def n_weights(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def size(self) -> int:
        """Entries of this layer's block: weights plus biases."""
        return self.n_weights + (self.n_out if self.has_bias else 0)

    @property
    def token_size(self) -> int:
        """Length of one neuron token: incoming weights plus the bias."""
        return self.fan_in + int(self.has_bias)

    @property
    def weight_slice(self) -> slice:
        return slice(self.offset, self.offset + self.n_weights)

    @property
    def bias_slice(self) -> slice | None:
        if not self.has_bias:
            return None
        start = self.offset + self.n_weights
        return slice(start, start + self.n_out)

    @property
    def n_in(self) -> int:
        """Input channels (conv) or input units grouped by `in_block` (linear)."""
        return self.weight_shape[1] // self.in_block


@dataclass(frozen=True)
class WeightLayout:
    """Ordered layers of a flat weight vector; built by `from_module` or read from JSON."""

    layers: tuple[LayerSpec, ...]
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise InputError("a WeightLayout needs at least one Linear or Conv2d layer")
        offset = 0
        names = set()
        for layer in self.layers:
            if layer.offset != offset:
                raise InputError(
                    f"layer {layer.name!r} starts at {layer.offset}, but the layers before it end at {offset}; "
                    "layers must tile the vector without gaps or overlaps"
                )
            if layer.name in names:
                raise InputError(f"layer name {layer.name!r} appears twice")
            names.add(layer.name)
            offset += layer.size

    # ------------------------------------------------------------------ build
    @classmethod
    def from_module(cls, module: nn.Module, *, input_shape: Sequence[int] | None = None) -> "WeightLayout":
        """Derive the layout of a network built from Linear / Conv2d layers, and check it.

        Layers are taken in registration order, which must be forward order
        (true for `nn.Sequential` and the zoo architectures). Parameter-free
        modules (activations, pooling, flatten, dropout) are skipped. The
        network is then run once on a small random batch, with random weights
        and biases, plainly and with its hidden neurons permuted: the outputs
        must agree (see `weightspace.layout_check`).

        Args:
            input_shape: one example's shape for that check, e.g. ``(1, 28, 28)``; by default
                found from the first layer (the smallest square image a conv network accepts).

        Raises:
            InputError (a ValueError): the network holds parameters outside Linear/Conv2d
                layers or a normalization layer, a linear layer's inputs do not group into
                the previous layer's outputs, or a permutation changes its outputs (skip
                connections, channels-last flatten, layers out of registration order).
        """
        legacy = getattr(module, "legacy_module_index", {}) or {}
        layers: list[LayerSpec] = []
        offset = 0
        prev_out: int | None = None
        covered: set[str] = set()
        for name, sub in module.named_modules():
            refuse_normalization(name, sub)
            if isinstance(sub, nn.Conv2d):
                if sub.groups != 1:
                    raise InputError(f"layer {name!r}: grouped convolutions are not supported")
                kind, in_block = "conv2d", 1
            elif isinstance(sub, nn.Linear):
                kind = "linear"
                in_block = 1
                if prev_out is not None:
                    if sub.in_features % prev_out:
                        raise InputError(
                            f"layer {name!r} takes {sub.in_features} inputs, which is not a multiple of the "
                            f"{prev_out} outputs of the layer before it; cannot map neurons between them"
                        )
                    in_block = sub.in_features // prev_out
            else:
                continue
            spec = LayerSpec(
                name=name,
                kind=kind,
                weight_shape=tuple(sub.weight.shape),
                has_bias=sub.bias is not None,
                offset=offset,
                in_block=in_block,
                legacy_index=legacy.get(name),
            )
            layers.append(spec)
            covered.update({f"{name}.weight", f"{name}.bias"})
            offset += spec.size
            prev_out = spec.n_out
        stray = [n for n, _ in module.named_parameters() if n not in covered]
        if stray:
            raise InputError(
                f"parameters outside Linear/Conv2d layers are not supported by WeightLayout: {stray}"
            )
        layout = cls(tuple(layers))
        check_permutations(module, layout, input_shape)
        return layout

    # ------------------------------------------------------------- properties
    @property
    def num_params(self) -> int:
        """D: the length of the flat vector."""
        last = self.layers[-1]
        return last.offset + last.size

    def __len__(self) -> int:
        return len(self.layers)

    def layer(self, name: str) -> LayerSpec:
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise KeyError(f"no layer {name!r}; layers are {[s.name for s in self.layers]}")

    @property
    def hidden_layers(self) -> tuple[LayerSpec, ...]:
        """Layers whose output neurons can be permuted (all but the last)."""
        return self.layers[:-1]

    @property
    def num_tokens(self) -> int:
        """Neuron tokens: one per output neuron or channel of every layer."""
        return sum(s.n_out for s in self.layers)

    # ---------------------------------------------------------- vectorization
    def vectorize(self, state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """State dict -> flat vector.

        Tensors may carry one leading batch dim (``(B, *weight_shape)``), then the
        result is ``(B, D)``; otherwise ``(D,)``.

        Raises:
            KeyError: a parameter of the layout is missing from the state dict.
            ValueError: a tensor has the wrong shape.
        """
        parts = []
        batch: tuple[int, ...] | None = None
        for spec in self.layers:
            entries = [(f"{spec.name}.weight", spec.weight_shape)]
            if spec.has_bias:
                entries.append((f"{spec.name}.bias", (spec.n_out,)))
            for key, shape in entries:
                if key not in state_dict:
                    raise KeyError(f"state dict has no {key!r}; it has {sorted(state_dict)[:12]}")
                t = state_dict[key]
                lead = tuple(t.shape[: t.dim() - len(shape)])
                if tuple(t.shape[len(lead):]) != shape or len(lead) > 1:
                    raise ValueError(f"{key}: expected shape {shape} (optionally batched), got {tuple(t.shape)}")
                if batch is None:
                    batch = lead
                elif lead != batch:
                    raise ValueError(f"{key}: batch dims {lead} differ from {batch} of earlier tensors")
                parts.append(t.reshape(*lead, -1))
        return torch.cat(parts, dim=-1)

    def devectorize(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat vector ``(D,)`` or ``(B, D)`` -> state dict (views into `vector`)."""
        if vector.shape[-1] != self.num_params or vector.dim() not in (1, 2):
            raise ValueError(f"expected a vector of shape (D,) or (B, D) with D={self.num_params}, got {tuple(vector.shape)}")
        lead = tuple(vector.shape[:-1])
        out: dict[str, torch.Tensor] = {}
        for spec in self.layers:
            out[f"{spec.name}.weight"] = vector[..., spec.weight_slice].reshape(*lead, *spec.weight_shape)
            if spec.has_bias:
                out[f"{spec.name}.bias"] = vector[..., spec.bias_slice]
        return out

    # ------------------------------------------------------------------ tokens
    def token_index(self, layer: LayerSpec | str) -> torch.Tensor:
        """Gather index ``(n_out, token_size)``: row k holds neuron k's incoming weights then its bias."""
        spec = self.layer(layer) if isinstance(layer, str) else layer
        k = torch.arange(spec.n_out).unsqueeze(1)
        idx = spec.offset + k * spec.fan_in + torch.arange(spec.fan_in).unsqueeze(0)
        if spec.has_bias:
            idx = torch.cat([idx, spec.offset + spec.n_weights + k], dim=1)  # the bias follows the weights
        return idx

    def token_indices(self) -> list[torch.Tensor]:
        """`token_index` of every layer, in order."""
        return [self.token_index(spec) for spec in self.layers]

    # ------------------------------------------------------------ permutation
    def permutation_index(self, perms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Gather index ``(D,)`` that permutes hidden neurons without changing the function.

        ``perms[name]`` is a permutation of layer `name`'s outputs: output i of
        the permuted network is output ``perms[name][i]`` of the original. The
        layer's rows (and bias) are reordered, and so are the inputs of the next
        layer: channels for a conv, neurons or contiguous flatten blocks for a
        linear layer. ``permuted = vector[..., index]``.

        Raises:
            ValueError: unknown or last layer, or not a permutation.
        """
        index = torch.arange(self.num_params)
        positions = {spec.name: i for i, spec in enumerate(self.layers)}
        for name, perm in perms.items():
            if name not in positions:
                raise ValueError(f"cannot permute unknown layer {name!r}; layers are {list(positions)}")
            i = positions[name]
            if i == len(self.layers) - 1:
                raise ValueError(f"layer {name!r} is the output layer; permuting it changes the function")
            spec, nxt = self.layers[i], self.layers[i + 1]
            perm = torch.as_tensor(perm, dtype=torch.long)
            if perm.shape != (spec.n_out,) or not torch.equal(perm.sort().values, torch.arange(spec.n_out)):
                raise ValueError(f"perms[{name!r}] must be a permutation of range({spec.n_out}), got {perm.tolist()}")
            # rows (and bias) of this layer
            rows = index[spec.weight_slice].view(spec.n_out, spec.fan_in)
            index[spec.weight_slice] = rows[perm].reshape(-1)
            if spec.has_bias:
                index[spec.bias_slice] = index[spec.bias_slice][perm]
            # inputs of the next layer: (out, n_in, block) with block = kh*kw or the flatten block
            cols = index[nxt.weight_slice].view(nxt.n_out, spec.n_out, -1)
            index[nxt.weight_slice] = cols[:, perm].reshape(-1)
        return index

    # ------------------------------------------------------------- json / 2021
    def to_dict(self) -> dict:
        return {"layers": [dict(asdict(s), weight_shape=list(s.weight_shape)) for s in self.layers], "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict) -> "WeightLayout":
        try:
            layers = tuple(LayerSpec(**dict(d, weight_shape=tuple(d["weight_shape"]))) for d in data["layers"])
            meta = dict(data.get("meta", {}))
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, InputError):
                raise
            raise InputError(f"not a weightspace layout ({type(err).__name__}: {err}); expected "
                             "{'layers': [...]} as written by WeightLayout.save") from err
        return cls(layers, meta)

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WeightLayout":
        return cls.from_dict(read_json(path))

    def to_index_dict(self) -> dict[str, list]:
        """The 2021 ``index_dict.json`` content (per layer: weights then biases)."""
        out: dict[str, list] = {k: [] for k in ("layer", "idx_start", "idx_length", "kernel_no", "kernel_size", "channels_in")}
        for i, spec in enumerate(self.layers):
            ks = spec.weight_shape[2] * spec.weight_shape[3] if spec.kind == "conv2d" else spec.in_block
            out["layer"].append([spec.legacy_index if spec.legacy_index is not None else i, _INDEX_DICT_KIND[spec.kind]])
            out["idx_start"].append(spec.offset)
            out["idx_length"].append(spec.size)
            out["kernel_no"].append(spec.n_out)
            out["kernel_size"].append(ks)
            out["channels_in"].append(spec.n_in)
        return out

    @classmethod
    def from_index_dict(cls, index_dict: Mapping[str, list], *, kernel_shapes: Mapping[int, tuple[int, int]] | None = None) -> "WeightLayout":
        """Read a 2021 ``index_dict``. Layer names become ``module_list.<idx>``.

        Conv kernels are taken as square (``kernel_size`` = k*k) unless
        `kernel_shapes` maps the layer index to (kh, kw). Biases are present when
        ``idx_length`` leaves room for one per kernel.

        Raises:
            InputError (a ValueError): fields missing, of unequal length or out of range, or blocks
                that do not tile.
        """
        fields = ("layer", "idx_start", "idx_length", "kernel_no", "kernel_size", "channels_in")
        missing = [k for k in fields if k not in index_dict]
        if missing:
            raise InputError(f"index_dict lacks {missing}; a 2021 index_dict has {list(fields)}")
        n = len(index_dict["layer"])
        if any(len(index_dict[k]) != n for k in fields):
            raise InputError(f"index_dict fields differ in length: { {k: len(index_dict[k]) for k in fields} }")
        layers = []
        for i in range(n):
            try:
                (idx, kind), start, length, no, ks, ci = (index_dict[k][i] for k in fields)
            except (TypeError, ValueError) as err:
                raise InputError(f"index_dict layer {i}: 'layer' must be a pair [index, kind], got "
                                 f"{index_dict['layer'][i]!r}") from err
            sizes = {"idx_length": length, "kernel_no": no, "kernel_size": ks, "channels_in": ci}
            bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1}
            if bad:
                raise InputError(f"index_dict layer {i}: {bad} must be positive integers")
            weights = no * ks * ci
            if length == weights:
                has_bias = False
            elif length == weights + no:
                has_bias = True
            else:
                raise InputError(
                    f"index_dict layer {i}: idx_length {length} is neither kernel_no*kernel_size*channels_in "
                    f"= {weights} nor that plus kernel_no biases"
                )
            if kind == "conv2d":
                kh, kw = (kernel_shapes or {}).get(idx) or (math.isqrt(ks), math.isqrt(ks))
                if kh * kw != ks:
                    raise InputError(f"index_dict layer {i}: kernel_size {ks} is not square; pass kernel_shapes")
                spec = LayerSpec(f"module_list.{idx}", "conv2d", (no, ci, kh, kw), has_bias, start, 1, idx)
            elif kind == "fc":
                spec = LayerSpec(f"module_list.{idx}", "linear", (no, ci * ks), has_bias, start, ks, idx)
            else:
                raise InputError(f"index_dict layer {i}: unknown kind {kind!r} (expected 'conv2d' or 'fc')")
            layers.append(spec)
        return cls(tuple(layers))

    def save_index_dict(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_index_dict())

    @classmethod
    def load_index_dict(cls, path: str | os.PathLike) -> "WeightLayout":
        return cls.from_index_dict(read_json(path))

    def same_structure(self, other: "WeightLayout") -> bool:
        """True when both describe the same vector (shapes, offsets, biases), names aside."""
        key = lambda s: (s.kind, s.weight_shape, s.has_bias, s.offset, s.in_block)  # noqa: E731
        return [key(s) for s in self.layers] == [key(s) for s in other.layers]
