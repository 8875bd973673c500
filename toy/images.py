"""
The toy world, part 2: object images, and out-of-distribution versions of them in model-vs-human's
layout.

The paper's Result 5 asks whether a video-pretrained model recognises objects more like people do:
by shape rather than by texture, and more robustly under distortions. For that to be a real question
here, the toy objects carry both cues, as real objects do: a class is a shape (SHAPES), and each
class also has a typical surface (a colour and a texture) that its objects wear most of the time.
Shape always gives the class; surface usually does, and is the easier cue. The OOD sets then take
one cue away or put the two in conflict:
  DIR/imagenet/{train,val}/<class>/*.png      upright objects on a wall-and-floor background
                                              (ImageNet layout)
  DIR/ood/<dataset>/dnn/session-1/<trial>_<expt>_dnn_<condition>_<category>_00_<orig>.png
                                              colour, contrast, high-pass, low-pass, uniform-noise,
                                              rotation (greyscale, as model-vs-human's, except
                                              colour's 'cr'), stylized
  DIR/ood/{edge,silhouette}/<category>/<category><k>.png
  DIR/ood/cue-conflict/<shape>/<shape><k>-<texture><m>.png
                                              the shape of one class, the surface of another
  DIR/ood_contact_sheet.png                   one row per dataset, the same objects across
Conditions are model-vs-human's, spelled as its files spell them. Low-pass sizes, given in pixels of
its 224-pixel images, are scaled to our 64 pixels (blur that matters is object-sized); high-pass
sizes are not (what it keeps is edge-sized, and our edges are about a pixel wide, as a photo's are
at 224 pixels). toy/world.py calls write_images(); the drawing kit is toy/shapes.py.
"""

import math
import os

import torch
import torch.nn.functional as F

from toy import FRAME
from toy.shapes import (COLOURS, SHAPES, TEXTURES, backgrounds, chunk_seed, draw_objects, to_uint8,
                        uniform)
from video import write_image

SIZE = FRAME                    # image side, as the headcam frames
CLASSES = sorted(SHAPES)        # class index = position in the sorted names, the loaders' rule
TYPICAL = 0.9                   # how often an object wears its class's own surface
SCALE = SIZE / 224              # model-vs-human's distortions are sized for 224-pixel images
SIZES = (16, 23)
SHEET = 8                       # objects per row of the contact sheet


def typical_texture(label: torch.Tensor) -> torch.Tensor:
    """A class's own texture (an index into TEXTURES): class k wears texture k. Colour is never
    typical: it survives no greyscale distortion, and real classes come in many colours."""
    return label % len(TEXTURES)

# -----------------------------------------------------------------------------
# the objects


def sample_objects(n, g: torch.Generator, typical=None):
    """n random objects, one per image: a dict of per-object tensors from which render() draws them.
    The class runs through all 16 in turn, so every class has the same count."""
    typical = TYPICAL if typical is None else typical
    label = torch.arange(n) % len(CLASSES)
    shape = torch.tensor([SHAPES.index(CLASSES[y]) for y in label])
    other = torch.rand(n, generator=g) >= typical             # the texture of any class instead
    tex = torch.where(other, torch.randint(len(TEXTURES), (n,), generator=g),
                      typical_texture(label))
    colour = (COLOURS[torch.randint(len(COLOURS), (n,), generator=g)]
              * uniform(g, n, 0.8, 1.1)[:, None])
    size = uniform(g, n, *SIZES)                              # radius: 26-42 px across
    # upright, as photographed objects are (so that rotation is a real distortion), resting on or
    # above the floor
    return dict(label=label, shape=shape, colour=colour, tex=tex, size=size,
                angle=uniform(g, n, -0.4, 0.4),
                x=uniform(g, n, 0.3, 0.7) * SIZE, y=uniform(g, n, 0.4, 0.62) * SIZE,
                background=scenery(n, g))


def scenery(n, g: torch.Generator):
    """(n, SIZE, SIZE, 3): a wall above a floor of another colour, so that images have an up."""
    wall = backgrounds(n, SIZE, SIZE, g)
    floor_line = uniform(g, n, 0.62, 0.8).view(n, 1, 1, 1) * SIZE
    rows = torch.arange(SIZE, dtype=torch.float32).view(1, SIZE, 1, 1) + 0.5
    floor = (0.2 + 0.35 * torch.rand(n, 1, 1, 3, generator=g)) * (0.9 + 0.1 * ((rows // 5) % 2))
    return torch.where(rows > floor_line, floor.expand(n, SIZE, SIZE, 3), wall)


def render(objects, tex=None):
    """Images (n, SIZE, SIZE, 3) in [0, 1] and silhouettes (n, SIZE, SIZE);
    tex overrides the texture."""
    o = objects
    canvas = o["background"].clone()[:, None]                 # (n, 1, H, W, 3): one frame per image
    one = lambda t: t[:, None]
    cover = draw_objects(canvas, one(o["x"]), one(o["y"]), one(o["size"]), one(o["angle"]),
                         o["shape"], o["colour"], o["tex"] if tex is None else tex,
                         sharpness=2.5 * one(o["size"]))      # edges about a pixel wide
    return canvas[:, 0], cover[:, 0]

# -----------------------------------------------------------------------------
# distortions, on batches of images (n, H, W, 3) in [0, 1]


def grey(images):
    luminance = images @ torch.tensor([0.299, 0.587, 0.114])
    return luminance[..., None].expand_as(images).contiguous()


def blur(images, sigma):
    """Gaussian blur of std `sigma` pixels, separable, edges extended (not wrapped)."""
    if sigma <= 0:
        return images
    radius = math.ceil(3 * sigma)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    taps = taps / taps.sum()
    x = images.permute(0, 3, 1, 2).reshape(-1, 1, *images.shape[1:3])     # (n*3, 1, H, W)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1))
    return x.reshape(images.shape[0], 3, *images.shape[1:3]).permute(0, 2, 3, 1)


def contrast(images, level):                   # towards mid-grey: level 1 is the image itself
    return 0.5 + level * (images - 0.5)


def uniform_noise(images, width, g):
    """Geirhos et al.'s noise: greyscale at 30% contrast, plus uniform noise in
    [-width, width], clipped."""
    noise = (torch.rand(images.shape[:3], generator=g) * 2 - 1) * width
    return (contrast(grey(images), 0.3) + noise[..., None]).clamp(0, 1)


def high_pass(images, sigma):
    return (images - blur(images, sigma) + 0.5).clamp(0, 1) if math.isfinite(sigma) else images


def edges(images):
    """Black edges on white, from the greyscale gradient (Sobel), as the edge set's
    line drawings."""
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    x = grey(images)[..., :1].permute(0, 3, 1, 2)                         # (n, 1, H, W)
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(x, sobel.view(1, 1, 3, 3)), F.conv2d(x, sobel.t().reshape(1, 1, 3, 3))
    line = (torch.sqrt(gx ** 2 + gy ** 2) > 0.35).float()[:, 0]
    return (1 - line)[..., None].expand(-1, -1, -1, 3).contiguous()


def stylize(images, cover, g):
    """Keep the shape, replace every surface: the object and the background each get a new texture
    of random colours (wavy bands over blotches: a pattern no training object wears), one lighter
    than the other."""
    n = len(images)
    pixels = torch.arange(SIZE, dtype=torch.float32)
    yy, xx = torch.meshgrid(pixels, pixels, indexing="ij")

    def paint(light):
        a, b = (torch.rand(n, 1, 1, 3, generator=g) * 0.45 + light,
                torch.rand(n, 1, 1, 3, generator=g) * 0.45 + light)
        freq, phase, tilt = uniform(g, n, 0.3, 0.8), uniform(g, n, 0, 6.3), uniform(g, n, -1, 1)
        waves = torch.sin(freq.view(n, 1, 1) * (xx + tilt.view(n, 1, 1) * yy)
                          + 2 * torch.sin(yy / 5 + phase.view(n, 1, 1)))
        blotch = F.interpolate(torch.rand(n, 1, 5, 5, generator=g), size=(SIZE, SIZE),
                               mode="bicubic", align_corners=False)[:, 0]
        mix = (0.5 + 0.3 * waves + 0.6 * (blotch - 0.5)).clamp(0, 1)[..., None]
        return a * mix + b * (1 - mix)

    light_object = (torch.rand(n, generator=g) < 0.5).float().view(n, 1, 1, 1)
    thing = paint(0.5) * light_object + paint(0.05) * (1 - light_object)
    ground = paint(0.05) * light_object + paint(0.5) * (1 - light_object)
    return (cover[..., None] * thing + (1 - cover[..., None]) * ground).clamp(0, 1)


# model-vs-human's parametric datasets that we build: experiment code, and per condition (as its
# files spell it) the distortion. All but colour's 'cr' are greyscale, as theirs.
PARAMETRIC = {
    "colour": ("cl", {"cr": lambda x, g: x, "bw": lambda x, g: grey(x)}),
    "contrast": ("cop", {c: (lambda level: lambda x, g: contrast(grey(x), level))(int(c[1:]) / 100)
                         for c in ("c100", "c50", "c30", "c15", "c10", "c05", "c03", "c01")}),
    "high-pass": ("hp", {c: (lambda s: lambda x, g: high_pass(grey(x), s))(float(c))
                         for c in ("inf", "3", "1.5", "1", "0.7", "0.55", "0.45", "0.4")}),
    "low-pass": ("lp", {c: (lambda s: lambda x, g: blur(grey(x), s * SCALE))(float(c))
                        for c in ("0", "1", "3", "5", "7", "10", "15", "40")}),
    "uniform-noise": ("nse", {c: (lambda w: lambda x, g: uniform_noise(x, w, g))(float(c))
                              for c in ("0.00", "0.03", "0.05", "0.10",
                                        "0.20", "0.35", "0.60", "0.90")}),
    "rotation": ("rot", {
        c: (lambda k: lambda x, g: torch.rot90(grey(x), k, dims=(1, 2)))(int(c) // 90)
        for c in ("0", "90", "180", "270")}),
}

# -----------------------------------------------------------------------------
# writing the files


def save(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_image(path, image)


def write_imagenet_chunk(job):
    """Clean object images of one split, numbered from `first`."""
    out, split, first, count, seed = job
    torch.set_num_threads(1)
    objects = sample_objects(count, torch.Generator().manual_seed(seed))
    images, _ = render(objects)
    for i, (image, label) in enumerate(zip(to_uint8(images), objects["label"].tolist()),
                                       start=first):
        save(os.path.join(out, "imagenet", split, CLASSES[label],
                          f"{CLASSES[label]}_{i:06d}.png"), image)
    return count


def contact_sheet(rows, path):
    """rows: (label, images (k, H, W, 3) uint8): one labelled row per dataset, the same
    objects across."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), k, figsize=(k * 0.9, len(rows) * 0.95), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.imshow(images[c], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ood_versions(objects, g: torch.Generator):
    """Every OOD version of the objects, in the order they are written: yields (dataset,
    condition, images (n, H, W, 3) in [0, 1]). The condition of a cue-conflict set is its texture
    classes (n,)."""
    images, cover = render(objects)
    yield "clean", None, images
    for name, (_, conditions) in PARAMETRIC.items():
        for condition, distort in conditions.items():
            yield name, condition, distort(images, g)
    yield "stylized", "0", stylize(images, cover, g)
    # a black object on white
    yield "silhouette", None, (1 - cover)[..., None].expand(-1, -1, -1, 3)
    yield "edge", None, edges(images)
    # each object twice, in the typical texture of a random class (now and then its own, as in
    # model-vs-human, whose shape-bias analysis leaves those out)
    for _ in range(2):
        texture_class = torch.randint(len(CLASSES), (len(images),), generator=g)
        yield "cue-conflict", texture_class, render(objects, tex=typical_texture(texture_class))[0]


def write_ood_chunk(job):
    """Objects first..first+count of the OOD base set, in every OOD dataset. Object k is the same
    object in every dataset (paired comparisons); its number is its `orig` name, as model-vs-human
    keeps the ImageNet file's name."""
    out, first, count, seed = job
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    objects = sample_objects(count, g)
    category = [CLASSES[y] for y in objects["label"].tolist()]
    ood, sheet, repeat = os.path.join(out, "ood"), [], 0
    for dataset, condition, images in ood_versions(objects, g):
        images = to_uint8(images)
        conditions = list(PARAMETRIC[dataset][1]) if dataset in PARAMETRIC else [condition]
        if dataset not in PARAMETRIC or conditions.index(condition) == len(conditions) // 2:
            sheet.append((dataset + (f"\n{condition}" if dataset in PARAMETRIC else ""),
                          images[:SHEET]))
        for k, cat, image in zip(range(first, first + count), category, images):
            nth = k // len(CLASSES)                           # the object's number in its category
            if dataset == "clean":
                continue
            if dataset in PARAMETRIC:
                code, c = PARAMETRIC[dataset][0], conditions.index(condition)
                name = (f"{dataset}/dnn/session-1/"
                        f"{k * len(conditions) + c + 1:04d}_{code}_dnn_{condition}_{cat}_00_"
                        f"n{CLASSES.index(cat):02d}_{k:05d}.png")
            elif dataset == "stylized":
                name = ("stylized/dnn/session-1/"
                        f"{k + 1:04d}_sty_dnn_0_{cat}_00_{cat}-{k:04d}-toy.png")
            elif dataset == "cue-conflict":
                name = (f"cue-conflict/{cat}/{cat}{nth}-"
                        f"{CLASSES[condition[k - first]]}{2 * nth + repeat}.png")
            else:
                name = f"{dataset}/{cat}/{cat}{nth}.png"
            save(os.path.join(ood, name), image)
        repeat += dataset == "cue-conflict"
    if first == 0:
        rows = [row for row in sheet if not row[0].startswith("cue")]
        # one row of cue conflicts
        rows.append(next(row for row in sheet if row[0] == "cue-conflict"))
        contact_sheet(rows, os.path.join(out, "ood_contact_sheet.png"))
    return count


def image_jobs(out, seed, n, chunk=256):
    """The jobs that write part 2, for toy.world.generate's worker pool; n(count) scales a count.
    ImageNet's own counts a class: 1,300 training images (so that its 2% is the paper's 26 a class)
    and 50 validation images."""
    sizes = {"imagenet": {"train": n(1300) * len(CLASSES), "val": n(50) * len(CLASSES)},
             "ood": n(10) * len(CLASSES)}
    jobs = [(write_imagenet_chunk, (out, split, first, min(chunk, total - first),
                                    chunk_seed(seed, "imagenet", split, first)))
            for split, total in sizes["imagenet"].items() for first in range(0, total, chunk)]
    jobs += [(write_ood_chunk, (out, first, min(chunk, sizes["ood"] - first),
                                chunk_seed(seed, "ood", first)))
             for first in range(0, sizes["ood"], chunk)]
    return jobs, sizes
