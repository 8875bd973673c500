"""
The toy world's drawing kit: shapes, textures and colours, drawn with vectorised torch onto batches
of frames.

An object is a shape (disk, square, ..., defined by a distance field: negative inside) in its own
coordinates (u, v), where it spans about [-1, 1]; a texture modulates its colour in those same
coordinates, so the texture moves and turns with the object; a marker dot shows which way it faces.
`draw_objects` places one object per clip in every frame from per-frame centre, radius and angle:
one call draws a whole batch of clips. toy/world.py builds the world from these pieces (and the
object images of part 2 will use the same ones).
"""

import hashlib

import numpy as np
import torch

# The first eight are the moving things of the action and Kinetics-like sets; all sixteen are the
# object classes of the ImageNet-like set (toy/images.py) and the things child S sees.
SHAPES = ("disk", "square", "triangle", "cross", "ring", "diamond", "star", "halfdisk",
          "heart", "crescent", "arrow", "ell", "tee", "hourglass", "bar", "frame")
MOVERS = range(8)           # the shapes of the action and Kinetics-like sets
COLOURS = torch.tensor([
    [0.90, 0.15, 0.15], [0.15, 0.70, 0.20], [0.20, 0.35, 0.95], [0.95, 0.85, 0.10],
    [0.85, 0.35, 0.90], [0.10, 0.80, 0.85], [0.95, 0.55, 0.10], [0.55, 0.35, 0.20]])
# The first four are what moving things wear;
# all sixteen are the typical surfaces of the object classes.
TEXTURES = ("plain", "stripes", "checks", "dots",
            "fine stripes", "bands", "fine bands", "diagonal", "fine checks", "rings", "grid",
            "waves", "spots", "halves", "fine diagonal", "chevrons")

# -----------------------------------------------------------------------------
# shapes and textures, in an object's own coordinates (u, v), where the object spans about [-1, 1]


def shape_distance(name: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance-like field of a shape: negative inside.
    The shape spans about [-1, 1] in u and v."""
    r = torch.sqrt(u * u + v * v)
    if name == "disk":
        return r - 1.0
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) - 0.82
    if name == "triangle":
        return torch.maximum(torch.maximum(v - 0.75, 1.6 * u.abs() + 0.8 * v - 0.95), -v - 0.75)
    if name == "cross":
        return torch.minimum(torch.maximum(u.abs() - 0.32, v.abs() - 1.0),
                             torch.maximum(v.abs() - 0.32, u.abs() - 1.0))
    if name == "ring":
        return (r - 0.8).abs() - 0.22
    if name == "diamond":
        return u.abs() + v.abs() - 1.05
    if name == "star":
        return r - (0.62 + 0.38 * torch.cos(5 * torch.atan2(v, u)))
    if name == "halfdisk":
        return torch.maximum(r - 1.0, v - 0.25)
    if name == "heart":                                 # two lobes over a downward point
        lobes = torch.minimum(torch.sqrt((u + 0.45) ** 2 + (v + 0.25) ** 2),
                              torch.sqrt((u - 0.45) ** 2 + (v + 0.25) ** 2))
        return torch.minimum(lobes - 0.55, torch.maximum(1.3 * u.abs() + v - 1.0, -v - 0.2))
    if name == "crescent":                              # a disk with an offset disk cut out
        return torch.maximum(r - 1.0, 0.8 - torch.sqrt((u - 0.5) ** 2 + v * v))
    if name == "arrow":                                 # a shaft and a head pointing along u
        shaft = torch.maximum(v.abs() - 0.22, torch.maximum(-1.0 - u, u - 0.2))
        return torch.minimum(shaft, torch.maximum(v.abs() - 0.75 * (1.0 - u), -u))
    if name == "ell":
        return torch.minimum(torch.maximum((u + 0.55).abs() - 0.35, v.abs() - 1.0),
                             torch.maximum(u.abs() - 1.0, (v - 0.65).abs() - 0.35))
    if name == "tee":
        return torch.minimum(torch.maximum(u.abs() - 1.0, (v + 0.65).abs() - 0.35),
                             torch.maximum(u.abs() - 0.33, v.abs() - 1.0))
    if name == "hourglass":
        return torch.maximum(0.75 * (u.abs() - 0.15 - 0.8 * v.abs()), v.abs() - 0.95)
    if name == "bar":
        return torch.maximum(u.abs() - 1.0, v.abs() - 0.38)
    return (torch.maximum(u.abs(), v.abs()) - 0.72).abs() - 0.2          # frame: a hollow square


def texture(name: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Brightness factor: 1 for plain, alternating light (1.1) and dark (0.4) for the
    patterned ones."""
    if name == "plain":
        return torch.ones_like(u)
    pattern = {"stripes": lambda: torch.sin(7 * u),
               "checks": lambda: torch.sin(6 * u) * torch.sin(6 * v),
               "dots": lambda: torch.sin(7 * u).abs() * torch.sin(7 * v).abs() - 0.5,
               "fine stripes": lambda: torch.sin(16 * u), "bands": lambda: torch.sin(7 * v),
               "fine bands": lambda: torch.sin(16 * v), "diagonal": lambda: torch.sin(6 * (u + v)),
               "fine checks": lambda: torch.sin(13 * u) * torch.sin(13 * v),
               "rings": lambda: torch.sin(9 * torch.sqrt(u * u + v * v)),
               "grid": lambda: 0.8 - torch.maximum(torch.cos(6 * u).abs(), torch.cos(6 * v).abs()),
               "waves": lambda: torch.sin(8 * u + 2 * torch.sin(5 * v)),
               "spots": lambda: torch.cos(5 * u) * torch.cos(5 * v) - 0.6, "halves": lambda: u,
               "fine diagonal": lambda: torch.sin(14 * (u - v)),
               "chevrons": lambda: torch.sin(10 * v + 6 * u.abs())}[name]()
    return 0.75 + 0.35 * torch.sign(pattern)


def per_object(fn, names, index: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Apply fn(names[i], u, v) to the objects whose index is i:
    each object computes only its own field."""
    out = torch.empty_like(u)
    for i in index.unique().tolist():
        rows = index == i
        out[rows] = fn(names[i], u[rows], v[rows])
    return out


def draw_objects(canvas, x, y, size, angle, shape, colour, tex,
                 alpha=None, marker=True, sharpness=12.0):
    """Paint objects onto canvas (N, F, H, W, 3) in place. Per object and frame: centre x, y and
    radius `size` in pixels, `angle` in radians, each (N, F); shape, tex (N,) indices and colour
    (N, 3). A small marker dot sits at the object's right edge, so the rotation of a symmetric shape
    is visible. sharpness: the edge's steepness per object radius (a number, or (N, F) per object
    and frame). Returns the object's coverage (N, F, H, W) in [0, 1], its silhouette."""
    N, F, H, W, _ = canvas.shape
    py = torch.arange(H, dtype=torch.float32).view(1, 1, H, 1) + 0.5
    px = torch.arange(W, dtype=torch.float32).view(1, 1, 1, W) + 0.5
    dx = (px - x[..., None, None]) / size[..., None, None]       # (N, F, H, W) in object radii
    dy = (py - y[..., None, None]) / size[..., None, None]
    c, s = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy                     # rotate into the object's frame
    if torch.is_tensor(sharpness):
        sharpness = sharpness[..., None, None]
    cover = torch.sigmoid(-per_object(shape_distance, SHAPES, shape, u, v) * sharpness)
    if alpha is not None:
        cover = cover * alpha[..., None, None]
    shade = per_object(texture, TEXTURES, tex, u, v)[..., None] * colour.view(N, 1, 1, 1, 3)
    if marker:
        dot = (torch.sigmoid(-(torch.sqrt((u - 0.5) ** 2 + v ** 2) - 0.32) * 12)[..., None]
               * (cover[..., None] > 0.5))
        shade = (shade * (1 - dot)
                 + dot * (1 - colour.view(N, 1, 1, 1, 3).mean(-1, keepdim=True).round()))
    canvas.mul_(1 - cover[..., None]).add_(cover[..., None] * shade.clamp(0, 1))
    return cover


def chunk_seed(seed, *keys) -> int:
    """A seed for one chunk of one part: the world does not depend on how many workers drew it."""
    return int.from_bytes(hashlib.sha256(repr((seed, *keys)).encode()).digest()[:8], "little")


def uniform(g, n, low, high):
    return low + (high - low) * torch.rand(n, generator=g)


def backgrounds(n, H, W, g: torch.Generator, dim=0.0):
    """(n, H, W, 3) plain-enough backgrounds: a muted colour, a gentle gradient and
    low-contrast blotches."""
    base = 0.35 + 0.3 * torch.rand(n, 1, 1, 3, generator=g)
    ramp = (torch.linspace(-1, 1, H).view(1, H, 1, 1)
            * (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.3)
    blotch = torch.nn.functional.interpolate(
        torch.rand(n, 3, 4, 4, generator=g), size=(H, W), mode="bicubic", align_corners=False
    ).permute(0, 2, 3, 1)
    return (base + ramp + 0.12 * (blotch - 0.5)).clamp(0, 1) * (1 - dim)


def appearance(n, g: torch.Generator, shapes=None, colours=None, textures=range(4)):
    """Random shape, colour and texture indices; shapes/colours/textures restrict the vocabulary
    (the moving things of the action sets, other children's mixes)."""
    shapes = torch.tensor(shapes if shapes is not None else range(len(SHAPES)))
    colours = torch.tensor(colours if colours is not None else range(len(COLOURS)))
    shape = shapes[torch.randint(len(shapes), (n,), generator=g)]
    colour = COLOURS[colours[torch.randint(len(colours), (n,), generator=g)]]
    textures = torch.tensor(textures)
    tex = textures[torch.randint(len(textures), (n,), generator=g)]
    return shape, colour, tex


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
