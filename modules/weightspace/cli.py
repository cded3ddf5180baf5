"""The `weightspace` command line.

Each command group is added by one small ``_add_<group>`` function; handlers
import their modules lazily so that `weightspace --help` stays fast and never
imports ray.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_zoo(sub: argparse._SubParsersAction) -> None:
    zoo = sub.add_parser("zoo", help="generate, inspect, convert and export model zoos")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True)

    info = zsub.add_parser("info", help="print a zoo's models, epochs, parameters and accuracy per epoch")
    info.add_argument("path", type=Path)
    info.set_defaults(func=_zoo_info)

    gen = zsub.add_parser("generate", help="train a zoo from a preset (resumable)")
    gen.add_argument("--preset", required=True, help="preset name; see `weightspace zoo presets`")
    gen.add_argument("--out", required=True, type=Path, help="zoo directory to write")
    gen.add_argument("--smoke", action="store_true", help="shrink the preset to a run of seconds")
    gen.add_argument("--overwrite", action="store_true", help="replace a different zoo found at --out")
    gen.add_argument("--workers", type=int, default=0, help="run shards as N ray tasks (0: in-process)")
    gen.add_argument("--ray-address", default=None, help="address of a running ray cluster")
    gen.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    gen.add_argument("--data-root", type=Path, default=Path("datasets"), help="where task data lives")
    gen.add_argument("--download", action="store_true", help="download task data (MNIST etc.) if missing")
    gen.set_defaults(func=_zoo_generate)

    presets = zsub.add_parser("presets", help="list the zoo presets")
    presets.set_defaults(func=_zoo_presets)


def _zoo_info(args: argparse.Namespace) -> int:
    from weightspace.zoo.store import Zoo

    print(Zoo.load(args.path).summary())
    return 0


def _zoo_generate(args: argparse.Namespace) -> int:
    from weightspace.zoo.generate import generate
    from weightspace.zoo.presets import get_preset

    spec = get_preset(args.preset, smoke=args.smoke)
    zoo = generate(spec, args.out, overwrite=args.overwrite, workers=args.workers,
                   ray_address=args.ray_address, device=args.device, data_root=args.data_root,
                   download=args.download)
    print(zoo.summary())
    return 0


def _zoo_presets(args: argparse.Namespace) -> int:
    from weightspace.zoo.presets import describe_presets

    print(describe_presets())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weightspace", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_zoo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as err:
        print(f"weightspace: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("weightspace: interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
