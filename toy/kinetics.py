"""
The toy world's Kinetics-like set: eight classes, each a scene and what the objects in it do.

Kinetics' classes differ by where they happen and by what happens. Here one frame shows the scene
(beach, lawn, kitchen, night), and each scene holds two classes told apart by the objects' motion:
thrown and falling with bounces, pushed and rolling to a stop, lying still (motions the toy children
see in their room) or drifting slowly (one they do not). toy/world.py writes the clips in Kinetics'
folder layout.
"""

import math

import torch

from toy import FRAME
from toy.shapes import MOVERS, appearance, draw_objects, uniform


# (scene, what the objects do): each scene and each motion appears in two classes, so the scene in a
# frame tells a class only up to its pair, and what tells the pair apart is how the objects move,
# the motions the toy children see in their room (things thrown that fall and bounce, things pushed
# that roll to a stop, things lying still) and one they do not (a slow drift, as if floating).
# Shapes, colours and textures are drawn alike in every class.
KINETICS_CLASSES = {
    "playing catch at the beach": ("beach", "fall"),
    "sunbathing under an umbrella": ("beach", "still"),
    "bouncing a ball on the lawn": ("lawn", "fall"),
    "rolling a ball on the lawn": ("lawn", "roll"),
    "pushing toys across the kitchen": ("kitchen", "roll"),
    "blowing bubbles in the kitchen": ("kitchen", "drift"),
    "stargazing": ("night", "still"),
    "watching fireflies": ("night", "drift"),
}
SCENES = ("beach", "lawn", "kitchen", "night")
MOTIONS = ("still", "drift", "fall", "roll")


def scene_backgrounds(scene: torch.Tensor, H, W, g):
    """(n, H, W, 3) backgrounds of the given scene indices, with random tints and horizons."""
    n = len(scene)
    rows = torch.arange(H, dtype=torch.float32).view(1, H, 1, 1)
    cols = torch.arange(W, dtype=torch.float32).view(1, 1, W, 1)
    horizon = uniform(g, n, 0.35 * H, 0.6 * H).view(n, 1, 1, 1)
    tint = 0.08 * (torch.rand(n, 1, 1, 3, generator=g) - 0.5)
    below = rows > horizon
    sky = torch.tensor([0.55, 0.75, 0.95]) - 0.002 * rows
    beach = torch.where(below, torch.tensor([0.90, 0.80, 0.50]), sky)
    lawn = torch.where(below,
                       torch.tensor([0.25, 0.60, 0.25]) + 0.05 * torch.sin(cols * 2.1 + rows), sky)
    tile = ((rows // 8 + cols // 8) % 2).float()
    kitchen = (torch.tensor([0.85, 0.85, 0.80]) - 0.15 * tile
               - 0.3 * ((rows % 8 == 0) | (cols % 8 == 0)).float())
    stars = (torch.rand(n, H, W, 1, generator=g) > 0.985).float()
    night = torch.tensor([0.05, 0.07, 0.20]) + 0.8 * stars
    # (4, n, H, W, 3)
    options = torch.stack([x.expand(n, H, W, 3) for x in (beach, lawn, kitchen, night)])
    return (options[scene, torch.arange(n)] + tint).clamp(0, 1)


def reflect(p, low, high):
    """Positions p folded into [low, high], as if bouncing off both ends."""
    period = 2 * (high - low)
    q = (p - low) % period
    return low + torch.minimum(q, period - q)


def object_paths(motion, n, frames, g, H, W):
    """Centre x, y and angle (n, frames) of one object per clip doing `motion` (n,) (indices into
    MOTIONS), and its radius (n, 1). Every clip draws the parameters of all four motions (the same
    random draws whatever the class)."""
    r = uniform(g, n, 8, 12)[:, None]                           # (n, 1)
    t = torch.arange(frames, dtype=torch.float32).view(1, frames)
    x0, y0 = uniform(g, n, 12, W - 12)[:, None], uniform(g, n, 12, H - 12)[:, None]
    spin = uniform(g, n, 0, 6.3)[:, None]
    # centre height of an object on the ground
    ground = H - 4 - r
    # still: it lies where it is
    still = (x0.expand(n, frames), y0.expand(n, frames), spin.expand(n, frames))
    # drift: a slow straight float at 0.8-1.5 px a frame, bouncing off the edges, turning slowly
    heading, speed = uniform(g, n, 0, 2 * math.pi)[:, None], uniform(g, n, 0.8, 1.5)[:, None]
    drift_x = reflect(x0 + speed * torch.cos(heading) * t, 8, W - 8)
    drift_y = reflect(y0 + speed * torch.sin(heading) * t, 8, H - 8)
    drift = (drift_x, drift_y, spin + uniform(g, n, -0.1, 0.1)[:, None] * t)
    # fall: let go (or tossed up) somewhere high, it falls and bounces, losing energy, as things do
    # in the room;
    # roll: pushed along the ground, it slows to a stop. Both are stepped frame by frame.
    fall_y = uniform(g, n, 8, H / 2)[:, None]
    fall_vy = uniform(g, n, -4, 1)[:, None]
    fall_vx = uniform(g, n, -0.8, 0.8)[:, None]
    roll_x = x0.clone()
    roll_vx = (uniform(g, n, 2.5, 4.5)[:, None]
               * torch.where(torch.rand(n, 1, generator=g) < 0.5, -1.0, 1.0))
    fall_ys, roll_xs = [], []
    for _ in range(frames):
        fall_ys.append(fall_y)
        roll_xs.append(roll_x)
        fall_vy = fall_vy + 0.9                                 # gravity, px per frame per frame
        fall_y = fall_y + fall_vy
        landed = fall_y >= ground
        fall_y = torch.where(landed, ground, fall_y)
        fall_vy = torch.where(landed, -0.6 * fall_vy, fall_vy)  # a bounce keeps 60% of the speed
        roll_x = roll_x + roll_vx
        roll_vx = 0.88 * roll_vx                                # friction
    fall = (reflect(x0 + fall_vx * t, 8, W - 8), torch.cat(fall_ys, 1), spin + 0.05 * fall_vx * t)
    rolled = reflect(torch.cat(roll_xs, 1), r, W - r)
    # turning by arc length over radius
    roll = (rolled, ground.expand(n, frames), spin + (rolled - x0) / r)
    paths = dict(still=still, drift=drift, fall=fall, roll=roll)
    x, y, angle = (torch.stack([paths[m][i] for m in MOTIONS])[motion, torch.arange(n)]
                   for i in range(3))
    return x, y, angle, r                                       # (n, frames) each, and (n, 1)


def kinetics_clips(n, g, frames=20, H=FRAME, W=FRAME):
    """n labelled clips (n, frames, H, W, 3) and (n,) indices into sorted(KINETICS_CLASSES)."""
    classes = sorted(KINETICS_CLASSES)
    labels = torch.randperm(n, generator=g) % len(classes)
    scene = torch.tensor([SCENES.index(KINETICS_CLASSES[classes[y]][0]) for y in labels])
    motion = torch.tensor([MOTIONS.index(KINETICS_CLASSES[classes[y]][1]) for y in labels])
    canvas = scene_backgrounds(scene, H, W, g)[:, None].repeat(1, frames, 1, 1, 1)
    count = torch.randint(1, 4, (n,), generator=g)                       # one to three objects
    for k in range(3):
        shape, colour, tex = appearance(n, g, MOVERS)
        x, y, angle, r = object_paths(motion, n, frames, g, H, W)
        present = (k < count).float()[:, None].expand(n, frames)
        draw_objects(canvas, x, y, r.expand(n, frames), angle, shape, colour, tex, alpha=present)
    return canvas, labels
