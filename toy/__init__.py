"""
The toy world and the paper in miniature: everything here runs on a laptop CPU, beside the paper's
chapters at the root.

    # world.py: the toy child's headcam video and the toy benchmarks, on disk
    python -m toy.world --out toyworld
    # miniature.py: all five results of the paper on it; report.py writes it up
    python -m toy.miniature

shapes.py is the drawing kit, kinetics.py the Kinetics-like set, images.py the object images and
their OOD versions. The world's folder and frame size are the `--setting toy` bundles' own, read
from settings.py.
"""

# the --setting toy bundles' own values
from settings import TOY_FRAME as FRAME, TOY_WORLD as WORLD

__all__ = ["FRAME", "WORLD"]
