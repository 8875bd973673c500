"""
The toy world and the paper in miniature: everything here runs on a laptop CPU, beside the paper's chapters at the root.

    python -m toy.world --out toyworld       # world.py: the toy child's headcam video and the toy benchmarks, on disk
    python -m toy.miniature                  # miniature.py: all five results of the paper on it; report.py writes it up

shapes.py is the drawing kit, kinetics.py the Kinetics-like set, images.py the object images and their OOD
versions. The two facts below are shared by the world and by every chapter's `--setting toy` bundle.
"""

WORLD = "toyworld"          # where the toy world is written, and where --setting toy looks for it
FRAME = 64                  # the toy world's frames are 64x64: the canvas and the clip size, seen whole (no crop)
