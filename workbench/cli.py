"""`roofline-workbench`: the workbench headless.

    roofline-workbench ceilings [--full] [--refresh]
    roofline-workbench profile  [--model M] [--batch N] [--threads T] [--pointwise-pixels P] ... [--fuse-blocks]
    roofline-workbench report   [--model M] --out DIR

Bad flags or values print one line and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "mobilenet_v2.onnx"


class _UsageError(Exception):
    """A bad flag or value: one line on stderr and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _tile_flags(parser: argparse.ArgumentParser) -> None:
    import engine

    defaults = engine.Tiles()
    for name, value in defaults.as_dict().items():
        low, high, step = engine.Tiles.field_range(name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=value, dest=name,
                            help=f"Tiles.{name} ({low}..{high}{f', multiple of {step}' if step > 1 else ''}; "
                                 f"default {value})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="roofline-workbench", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ceilings = commands.add_parser("ceilings", help="measure, print and cache this machine's roofs")
    ceilings.add_argument("--full", action="store_true", help="full (slower, steadier) measurement")
    ceilings.add_argument("--refresh", action="store_true", help="re-measure even if cached")

    for name, text in (("profile", "profile one configuration, layers sorted by time"),
                       ("report", "write an HTML report and the records (CSV, Parquet)")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX file")
        sub.add_argument("--batch", type=_positive_int, default=1)
        sub.add_argument("--threads", type=_positive_int, default=None, help="default: all cores")
        sub.add_argument("--repeats", type=_positive_int, default=5)
        sub.add_argument("--fuse-blocks", action="store_true")
        _tile_flags(sub)
        if name == "report":
            sub.add_argument("--out", type=Path, required=True, help="output folder")
        else:
            sub.add_argument("--top", type=_positive_int, default=20, help="rows to print")
    return parser


def _tiles_from(args):
    import engine

    return engine.Tiles(**{name: getattr(args, name) for name in engine.Tiles().as_dict()})


def _profile(args):
    import engine
    from workbench.profile import profile

    if not args.model.is_file():
        if args.model == DEFAULT_MODEL:
            from engine.models import write_default_model
            write_default_model(args.model)
        else:
            raise _UsageError(f"model file not found: {args.model}")
    threads = args.threads or engine.available_cores()
    model = engine.load(args.model)
    return profile(model, batch=args.batch, threads=threads, tiles=_tiles_from(args),
                   fuse_blocks=args.fuse_blocks, repeats=args.repeats)


def format_layers(frame, top: int | None = None) -> str:
    """Layers sorted by time: time, share, GFLOP/s, AI at each level, bound."""
    shown = frame.sort_values("seconds", ascending=False)
    if top:
        shown = shown.head(top)
    lines = [f"{'layer':<48} {'op':<10} {'ms':>7} {'share':>6} {'GFLOP/s':>8} "
             f"{'AI L2':>7} {'AI DRAM':>8} {'roof%':>6}  bound"]
    for row in shown.itertuples():
        bound = row.bound if row.bound != "memory" else f"memory ({row.bound_level})"
        lines.append(f"{row.layer[-48:]:<48} {row.op:<10} {row.seconds * 1e3:>7.3f} {row.share_of_time:>6.1%} "
                     f"{row.gflops:>8.1f} {row.ai_L2:>7.2f} {row.ai_DRAM:>8.2f} {row.roof_fraction:>6.0%}  {bound}")
    total = frame["seconds"].sum()
    lines.append(f"total {total * 1e3:.2f} ms over {len(frame)} steps, "
                 f"{frame['flops'].sum() / total / 1e9:.1f} GFLOP/s; batch {frame['batch'].iloc[0]}, "
                 f"threads {frame['threads'].iloc[0]}")
    return "\n".join(lines)


def _run(args) -> int:
    if args.command == "ceilings":
        from workbench.ceilings import measure_ceilings

        ceilings = measure_ceilings(quick=not args.full, refresh=args.refresh)
        table = ceilings.table.pivot(index="threads", columns="resource", values="value")
        print(f"{ceilings.machine['cpu_model']}, {ceilings.machine['cores']} cores "
              "(fp32_fma in GFLOP/s, memory levels in GB/s, triad)")
        print(table.round(1).to_string())
        return 0
    if args.command == "profile":
        frame = _profile(args)
        print(format_layers(frame, args.top))
        return 0
    if args.command == "report":
        from workbench.report import write_report

        frame = _profile(args)
        paths = write_report(frame, args.out, model_name=args.model.name)
        for path in paths:
            print(path)
        return 0
    raise _UsageError(f"unknown command {args.command!r}")


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        return _run(args)
    except _UsageError as error:
        print(str(error).splitlines()[0], file=sys.stderr)
        return 2
    except ValueError as error:      # bad tile values and the like
        print(f"roofline-workbench: {error}", file=sys.stderr)
        return 2
    except Exception as error:       # ModelError and anything the user can act on
        from engine import ModelError

        if isinstance(error, ModelError):
            print(f"roofline-workbench: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
