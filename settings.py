"""
Bundles of defaults. Every script's argparse defaults are the paper's settings; `--setting NAME`
swaps in another bundle (the toy world on a CPU, HVM-1's 448 pixels, the image-MAE baseline), and a
flag given on the command line still wins. Each script keeps its own SETTINGS dict beside its flags;
this file holds the parsing they share and the two facts of the toy world that every `--setting toy`
bundle uses (the toy world itself, under toy/, reads them here).
"""

import argparse
import sys

from training import ArgumentParser

TOY_WORLD = "toyworld"      # where the toy world is written, and where --setting toy looks for it
# the toy world's frames are 64x64: the canvas and the clip size, seen whole (no crop)
TOY_FRAME = 64


def parse_with_settings(p: argparse.ArgumentParser, settings: dict, argv=None,
                        related=None) -> argparse.Namespace:
    """Parse argv with bundles of defaults: `--setting toy` (or `toy,image`, applied left to right)
    replaces some of the parser's defaults, which stay the paper's; a flag given on the command line
    still wins. `related` maps a flag to those it overrides ({"epochs": ["steps"]}): `--setting toy
    --epochs 1` must not run the setting's --steps, so a related flag that only a setting gave goes
    back to the paper's default."""
    argv = sys.argv[1:] if argv is None else argv
    early = ArgumentParser(add_help=False)
    early.add_argument("--setting", default="paper")
    p.add_argument("--setting", default="paper",
                   help=f"bundles of defaults, comma-separated: {', '.join(settings)}")
    paper = {a.dest: a.default for a in p._actions}
    for name in early.parse_known_args(argv)[0].setting.split(","):
        if name not in settings:
            p.error(f"--setting {name!r}: choose from {', '.join(settings)}")
        p.set_defaults(**settings[name])
    args = p.parse_args(argv)
    given = explicit_flags(p, argv)
    for flag, overridden in (related or {}).items():
        for other in overridden:
            if flag in given and other not in given:
                setattr(args, other, paper[other])
    return args


def explicit_flags(p: argparse.ArgumentParser, argv) -> set:
    """The flags (their dest names) given on the command line, whatever their value: parsed again
    with every default replaced by a marker that no command line can produce."""
    marker, defaults = object(), {a.dest: a.default for a in p._actions}
    p.set_defaults(**{dest: marker for dest in defaults})
    try:
        parsed = vars(p.parse_known_args(argv)[0])
    finally:
        p.set_defaults(**defaults)
    return {dest for dest, value in parsed.items() if value is not marker}
