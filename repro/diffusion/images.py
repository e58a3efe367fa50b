"""Images in and out: image-caption folders (metadata.jsonl or a .txt per
image; UTF-8, so Chinese captions work), the built-in procedural landscapes,
the model's input scaling, PNG files and grids."""
import json
import os

import numpy as np

from repro.errors import ReproError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _fit(img, size, center_crop):
    """Resize the shorter side to size (bicubic) and crop the centre (or the top-left) to size x size."""
    from PIL import Image
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = ((w - size) // 2, (h - size) // 2) if center_crop else (0, 0)
    return np.asarray(img.crop((left, top, left + size, top + size)), np.uint8)


def read_image_folder(path, size, caption_column="text", center_crop=True):
    """(images uint8 [N, size, size, 3], captions [N], file names [N]) sorted by file name.

    Captions come from metadata.jsonl (one {"file_name": ..., caption_column: ...}
    per line) if present, else from <image stem>.txt beside each image."""
    if not os.path.isdir(path):
        raise ReproError(f"image folder not found: {path}")
    meta = os.path.join(path, "metadata.jsonl")
    pairs = []
    if os.path.isfile(meta):
        with open(meta, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise ReproError(f"{meta} line {i} is not JSON") from None
                if not isinstance(row, dict) or "file_name" not in row or caption_column not in row:
                    raise ReproError(f"{meta} line {i} needs 'file_name' and {caption_column!r}")
                pairs.append((str(row["file_name"]), str(row[caption_column])))
    else:
        for name in sorted(os.listdir(path)):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTS:
                continue
            txt = os.path.join(path, stem + ".txt")
            if not os.path.isfile(txt):
                raise ReproError(f"{os.path.join(path, name)} has no caption: add {stem}.txt or a metadata.jsonl")
            with open(txt, encoding="utf-8") as f:
                pairs.append((name, f.read().strip()))
    if not pairs:
        raise ReproError(f"no captioned images in {path} (want *.png/*.jpg with a .txt each, or a metadata.jsonl)")
    pairs.sort()
    images = []
    for name, _ in pairs:
        full = os.path.join(path, name)
        if os.path.dirname(os.path.normpath(name)).startswith("..") or os.path.isabs(name):
            raise ReproError(f"{meta}: file_name {name!r} points outside the folder")
        images.append(read_image(full, size, center_crop))
    return np.stack(images), [c for _, c in pairs], [n for n, _ in pairs]


def read_image(path, size, center_crop=True):
    """One image file as uint8 [size, size, 3] (see _fit); a missing or damaged file is a ReproError."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            return _fit(img, size, center_crop)
    except FileNotFoundError:
        raise ReproError(f"image listed but not found: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ReproError(f"{path} is not a readable image ({e})") from None


SKIES = (("蓝色", "blue", (90, 150, 230)), ("橙色", "orange", (240, 150, 70)), ("紫色", "purple", (110, 70, 150)))
HILLS = (("绿色", "green", (50, 130, 60)), ("灰色", "grey", (110, 110, 120)))


def builtin_landscapes(n, size, seed=0):
    """Procedural landscapes (sky, two ridges, a sun) with captions, half in
    Chinese: a built-in theme for smoke runs, no download. Returns (images, captions)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, captions = [], []
    for i in range(n):
        (sky_zh, sky_en, sky), (hill_zh, hill_en, hill) = SKIES[i % 3], HILLS[(i // 3) % 2]
        img = np.empty((size, size, 3), np.float64)
        img[:] = np.array(sky) * (0.75 + 0.25 * yy[..., None])
        sun = (xx - rng.uniform(0.2, 0.8)) ** 2 + (yy - rng.uniform(0.1, 0.3)) ** 2 < 0.006
        img[sun] = (250, 240, 200)
        for depth, shade in ((0.55, 0.8), (0.7, 1.0)):
            phase, freq = rng.uniform(0, 6.3), rng.uniform(4, 9)
            ridge = depth + 0.08 * np.sin(freq * xx + phase) + 0.03 * np.sin(3 * freq * xx)
            img[yy > ridge] = np.array(hill) * shade
        img += rng.normal(0, 6, img.shape)
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        captions.append(f"一幅山水画，{sky_zh}的天空，{hill_zh}的山" if i % 2 == 0
                        else f"a landscape painting, {sky_en} sky over {hill_en} hills")
    return np.stack(images), captions


def tokenize(tokenizer, captions):
    ids = tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="np").input_ids
    return np.asarray(ids, np.int64)



def grid(images, cols):
    """A [rows*h, cols*w, 3] mosaic of equally sized images."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.full((rows * h, cols * w, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        out[r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    return out



def to_model_input(x):
    """uint8 [B, H, W, 3] -> float32 [B, 3, H, W] in [-1, 1], as the SD training scripts normalise."""
    return x.transpose(0, 3, 1, 2).astype(np.float32) * (2.0 / 255.0) - 1.0


def random_flip(x, rng):
    """Horizontal flip of each image with probability 1/2 ([B, 3, H, W])."""
    flip = rng.random(len(x)) < 0.5
    x = x.copy()
    x[flip] = x[flip][..., ::-1]
    return x




def save_png(array, path):
    from PIL import Image
    Image.fromarray(array).save(path)


def load_png(path):
    from PIL import Image
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))
