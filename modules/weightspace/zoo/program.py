"""A zoo's own network, stored as a `torch.export` program so that reading the zoo never imports user code.

A converted zoo whose network is no registered architecture keeps it as ``network.pt2``: the user's
``nn.Module`` exported at conversion (`export_program`, eval mode, one input ``(1, C, H, W)``) and
saved with ``torch.export.save``. Reading it runs the program with any weights of the zoo
(`StoredNetwork`: ``functional_call`` swaps them in, ``vmap`` runs many models and inputs at once).

``torch.export.load`` is not a safe reader on its own: it unpickles any payload the archive marks as
pickled (``torch.load(weights_only=False)``, ``pickle.loads``), retries sample inputs without
``weights_only``, loads AOTInductor libraries, parses shape expressions with ``sympy.sympify`` (an
``eval``) and ``exec``'s guard code when the module is built. So before it is called, `check_program`
admits only what `export_program` writes for a network of plain tensors: the archive's known members,
tensors stored raw (no pickled entry, no custom object, no compiled code), sample inputs that load with
``weights_only=True``, no guard code, no symbolic shapes, no source lines, and every node an ATen
operator. Together with the SHA-256 that ``zoo.json`` records (checked first, `weightspace.zoo.store`), a
tampered or replaced file is refused, naming it, before anything in it is loaded.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any, Mapping

import torch
from torch import nn
from torch.func import functional_call, vmap

from weightspace.errors import InputError
from weightspace.layout import WeightLayout

PROGRAM_FILE = "network.pt2"
MAX_BYTES = 2**30  # a program larger than this is no small network's
# the archive members torch.export.save writes for one program of plain tensors (its root folder first)
_MEMBER = re.compile(r"[^/]+/(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|"
                     r"models/model\.json|data/sample_inputs/model\.pt|data/weights/model_weights_config\.json|"
                     r"data/weights/weight_\d+|data/constants/model_constants_config\.json|data/constants/tensor_\d+)")
_TARGET = re.compile(r"torch\.ops\.aten\.\w+\.\w+|_operator\.getitem")  # node targets: ATen operators only
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")  # line breaks and other control characters
_SYMBOLIC = {"as_expr", "expr_str"}  # keys of symbolic shapes, which the loader parses with sympy


class ProgramError(InputError):
    """A stored program that is not what `export_program` writes; the message names the file."""


def export_program(module: nn.Module, example: torch.Tensor) -> bytes:
    """The bytes of a ``torch.export`` program of `module` in eval mode, for one input shaped like ``example[0]``.

    The program is exported on zeros ``(1, C, H, W)`` (no input is kept in it), without the source lines of
    the user's code, and read back through `load_program` before it is returned.

    Raises:
        InputError: torch.export cannot export `module` (data-dependent control flow, unsupported operators),
            or the program is not one `check_program` admits.
    """
    module.eval()
    try:
        program = torch.export.export(module, (torch.zeros_like(example[:1]),), strict=False)
    except Exception as err:  # torch.export raises many types
        raise InputError(f"torch.export cannot export the network ({type(err).__name__}: {_first_line(err)}); "
                         "it must run without data-dependent Python control flow") from None
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)  # lines of the user's source: not kept, and never read back as code
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    data = buffer.getvalue()
    load_program(data, "the exported network")
    return data


def check_program(data: bytes, where: str) -> None:
    """Refuse an archive that holds anything but a program of plain tensors and ATen operators (see the module).

    Raises:
        ProgramError: naming `where` and what was found.
    """
    def refuse(what: str) -> ProgramError:
        return ProgramError(f"{where} is not a network program weightspace wrote: {what}; nothing in it was "
                            "loaded. Convert the zoo again with --model")

    if len(data) > MAX_BYTES:
        raise refuse(f"it holds {len(data):,} bytes")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        odd = [n for n in names if not _MEMBER.fullmatch(n)]
        roots = {n.split("/", 1)[0] for n in names}
        if odd or len(roots) != 1 or len(set(names)) != len(names):
            raise refuse(f"it holds the members {odd[:3] or sorted(roots)[:3]}")
        root = roots.pop()
        files = {n.removeprefix(root + "/"): n for n in names}
        model = _json_member(archive, files, "models/model.json", refuse)
        for config, kind in (("data/weights/model_weights_config.json", "weight_"),
                             ("data/constants/model_constants_config.json", "tensor_")):
            entries = _json_member(archive, files, config, refuse).get("config")
            if not isinstance(entries, dict):
                raise refuse(f"{config} lists no tensors")
            for name, entry in entries.items():
                path = entry.get("path_name") if isinstance(entry, dict) else None
                if entry.get("use_pickle") is not False or not isinstance(path, str) or not re.fullmatch(
                        kind + r"\d+", path):
                    raise refuse(f"{config} stores {name!r} as {str(entry)[:80]}, not as raw tensor data")
        try:
            torch.load(io.BytesIO(archive.read(files["data/sample_inputs/model.pt"])), weights_only=True)
        except Exception as err:  # a pickle that weights_only refuses: torch.export.load would run it
            raise refuse(f"its sample inputs are not plain tensors ({_first_line(err)})") from None
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, AttributeError) as err:
        if isinstance(err, ProgramError):
            raise
        raise refuse(f"it is not a readable program archive ({type(err).__name__}: {_first_line(err)})") from None
    if model.get("guards_code") or model.get("range_constraints"):
        raise refuse("it holds guard code or symbolic shapes")
    graph = (model.get("graph_module") or {}).get("graph") or {}
    targets = [node.get("target") for node in graph.get("nodes", [])]
    bad = [t for t in targets if not (isinstance(t, str) and _TARGET.fullmatch(t))]
    if bad or not targets:
        raise refuse(f"it calls {bad[:3]}, not ATen operators" if bad else "it holds no operations")
    found = _odd_entry(model)
    if found:
        raise refuse(found)


def _json_member(archive: zipfile.ZipFile, files: dict[str, str], name: str, refuse) -> dict:
    if name not in files:
        raise refuse(f"it has no {name}")
    value = json.loads(archive.read(files[name]))
    if not isinstance(value, dict):
        raise refuse(f"{name} is not a JSON object")
    return value


def _odd_entry(value: Any) -> str | None:
    """What in model.json the loader would evaluate: a symbolic shape, or text with line breaks."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            symbolic = _SYMBOLIC & set(item)
            if symbolic:
                return f"it holds the symbolic shape entry {sorted(symbolic)[0]!r}"
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and _CONTROL.search(item):
            return f"it holds text with line breaks or control characters ({item[:40]!r})"
    return None


def load_program(data: bytes, where: str) -> "StoredNetwork":
    """The network in a program's bytes, checked by `check_program` before ``torch.export.load`` reads them.

    Raises:
        ProgramError: the archive is refused, or torch cannot load it.
    """
    check_program(data, where)
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as err:  # torch raises many types for archives of another version
        raise ProgramError(f"{where} cannot be loaded by torch {torch.__version__} ({type(err).__name__}: "
                           f"{_first_line(err)}); convert the zoo again with --model") from None
    ops = [n.target for n in program.graph.nodes if n.op == "call_function"]
    odd = [str(t) for t in ops if getattr(t, "namespace", None) != "aten" and str(t) != "<built-in function getitem>"]
    if odd or any(n.op not in ("placeholder", "call_function", "output") for n in program.graph.nodes):
        raise ProgramError(f"{where} calls {odd[:3]}, not ATen operators; convert the zoo again with --model")
    inputs = [n for n in program.graph.nodes if n.op == "placeholder"][-1].meta.get("val")
    floats = sum(int(n.meta["val"].numel()) for n in program.graph.nodes
                 if n.op == "call_function" and isinstance(n.meta.get("val"), torch.Tensor))
    return StoredNetwork(program.module(), tuple(inputs.shape[1:]) if inputs is not None else (), floats, data, where)


class StoredNetwork(nn.Module):
    """A stored program as a network: ``(B, C, H, W) -> (B, classes)``, one input at a time under ``vmap``.

    The program was exported for one input, so a batch is mapped over it; under an outer ``vmap`` over
    stacked parameters (``functional_call`` on ``net.<name>``) every model and input runs at once. It
    always runs as exported, in eval mode (dropout off); `train` only sets the flag. It is never changed in
    place (weights are swapped in per call), so a copy is the network itself, and a pickle holds the program's
    bytes, loaded again (and checked again) where it is unpickled.
    """

    def __init__(self, net: nn.Module, input_shape: tuple[int, ...], floats_per_input: int, data: bytes, where: str):
        super().__init__()
        self.net = net  # the program's module; its parameters are the weights it was exported with
        self.input_shape = input_shape  # (C, H, W) of one input
        self.floats_per_input = max(1, floats_per_input)  # activation floats of one input (all layers)
        self._program = (data, where)  # the archive's bytes and where they came from, for pickling

    def __deepcopy__(self, memo: dict) -> "StoredNetwork":
        return self

    def __reduce__(self):
        meta = any(p.is_meta for p in self.parameters())
        return _reload, (*self._program, meta)

    def parameters_to_meta(self) -> "StoredNetwork":
        """Its parameters on the meta device (each call swaps the zoo's weights in), its buffers kept."""
        for module in self.modules():
            for name, p in list(module._parameters.items()):
                if p is not None:
                    module._parameters[name] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the program's constants (non-persistent buffers) are never swapped: they run on the inputs' device
        buffers = {name: b.to(x.device) for name, b in self.net.named_buffers()}
        return vmap(lambda one: functional_call(self.net, buffers, (one.unsqueeze(0),))[0])(x)  # (B, classes)

    def train(self, mode: bool = True) -> "StoredNetwork":
        self.training = mode  # the program's own module refuses train()/eval(): it is fixed in eval mode
        return self


def _reload(data: bytes, where: str, meta: bool) -> StoredNetwork:
    network = load_program(data, where)
    return network.parameters_to_meta() if meta else network


def program_template(layout: WeightLayout, data: bytes, where: str) -> tuple[StoredNetwork, dict[str, str]]:
    """The stored network on the meta device and layout key -> its parameter name (``net.<name>``).

    Parameters are matched by name, else in order by shape (as `functional.build_template`).

    Raises:
        ProgramError: see `load_program`; or parameters that differ from `layout`.
    """
    network = load_program(data, where).parameters_to_meta()
    theirs = [(name, tuple(p.shape)) for name, p in network.named_parameters()]
    ours = [(key, tuple(p.shape)) for key, p in layout.devectorize(torch.empty(layout.num_params, device="meta")).items()]
    by_name = {name.removeprefix("net."): (name, shape) for name, shape in theirs}
    if all(by_name.get(key, (None, None))[1] == shape for key, shape in ours) and len(ours) == len(theirs):
        return network, {key: by_name[key][0] for key, _ in ours}
    if [s for _, s in theirs] != [s for _, s in ours]:
        raise ProgramError(f"{where} has parameters {[s for _, s in theirs]}, but the zoo's layout describes "
                           f"{[s for _, s in ours]}; convert the zoo again with --model")
    return network, {key: name for (key, _), (name, _) in zip(ours, theirs)}


def program_entry(info: Mapping) -> Mapping | None:
    """zoo.json's record of a stored program (``architecture.program``), or None."""
    arch = info.get("architecture")
    entry = arch.get("program") if isinstance(arch, Mapping) else None
    return entry if isinstance(entry, Mapping) else None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]
