"""Writes the torchvision golden values of the image transforms (tests/fixtures/transforms/).

Sources are real photos: CIFAR-10 test images from ../shared decoded by PIL, tiled into
mosaics so a resize sees photographic detail at several hundred pixels. Every expected image is
torchvision's v2 functional transform on the uint8 tensor (what `compress` matches); a few are
also rendered through PIL (what torchvision's classic ImageFolder pipeline does), for reference.
JPEG decoding is covered too: a mosaic encoded by PIL at quality 90 and PIL's decode of it.

    python golden_transforms.py SHARED_CIFAR_TEST_DIR OUT_DIR
"""

import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


def cifar_tiles(root, n):
    """The first n test images, in class-folder then file order, as HWC uint8 arrays."""
    tiles = []
    for cls in sorted(os.listdir(root)):
        for name in sorted(os.listdir(os.path.join(root, cls)))[: (n + 9) // 10]:
            with Image.open(os.path.join(root, cls, name)) as im:
                tiles.append(np.asarray(im.convert("RGB")))
    # Interleave classes so neighbouring tiles differ.
    per = (n + 9) // 10
    order = [c * per + i for i in range(per) for c in range(10)]
    return [tiles[k] for k in order][:n]


def mosaic(tiles, rows, cols):
    return np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0)


def to_tensor(hwc):
    return torch.from_numpy(np.array(hwc, copy=True)).permute(2, 0, 1).contiguous()


def save_png(path, chw_or_hwc):
    arr = chw_or_hwc.permute(1, 2, 0).numpy() if isinstance(chw_or_hwc, torch.Tensor) else chw_or_hwc
    Image.fromarray(np.ascontiguousarray(arr)).save(path, optimize=True)


def main(cifar_test, out):
    os.makedirs(out, exist_ok=True)
    tiles = cifar_tiles(cifar_test, 80)
    sources = {
        # 7×5 tiles: 224 wide, 160 high (landscape).
        "mosaic_landscape.png": mosaic(tiles[:35], 5, 7),
        # 3×5 tiles: 96 wide, 160 high (portrait).
        "mosaic_portrait.png": mosaic(tiles[35:50], 5, 3),
        # One photo at its own 32×32.
        "photo32.png": tiles[50],
    }
    for name, arr in sources.items():
        save_png(os.path.join(out, name), arr)

    cases = []

    def resized_crop(src, top, left, h, w, size, flip, pil=False):
        x = to_tensor(sources[src])
        y = F.resized_crop(x, top, left, h, w, [size, size], antialias=True)
        if flip:
            y = F.horizontal_flip(y)
        name = f"rc_{src.split('.')[0]}_{top}_{left}_{h}x{w}_to{size}{'_flip' if flip else ''}.png"
        save_png(os.path.join(out, name), y)
        case = {"op": "resized_crop", "source": src, "box": [top, left, h, w], "size": size, "flip": flip, "expected": name}
        if pil:
            im = Image.fromarray(sources[src]).crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)
            if flip:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            pil_name = name.replace(".png", "_pil.png")
            im.save(os.path.join(out, pil_name))
            case["pil"] = pil_name
        cases.append(case)

    # Boxes as RandomResizedCrop draws them: small, large, off-square, and the whole image.
    resized_crop("mosaic_landscape.png", 17, 40, 121, 150, 96, False, pil=True)
    resized_crop("mosaic_landscape.png", 0, 0, 160, 224, 64, True, pil=True)
    resized_crop("mosaic_landscape.png", 101, 180, 45, 37, 96, False)
    resized_crop("mosaic_portrait.png", 30, 5, 110, 83, 56, True)
    resized_crop("mosaic_portrait.png", 3, 11, 150, 60, 24, False)
    # Upscaling a CIFAR photo to a student's resolution, and a box that is a plain cut.
    resized_crop("photo32.png", 0, 0, 32, 32, 96, False)
    resized_crop("photo32.png", 4, 2, 24, 27, 24, False)
    resized_crop("mosaic_landscape.png", 50, 60, 32, 32, 32, True)

    def evaluation(src, shorter, crop):
        x = to_tensor(sources[src])
        y = F.center_crop(F.resize(x, [shorter], antialias=True), [crop])
        name = f"eval_{src.split('.')[0]}_{shorter}_{crop}.png"
        save_png(os.path.join(out, name), y)
        cases.append({"op": "eval", "source": src, "resize_shorter": shorter, "center_crop": crop, "expected": name})

    evaluation("mosaic_landscape.png", 128, 112)
    evaluation("mosaic_portrait.png", 73, 64)
    evaluation("photo32.png", 36, 32)

    # Box arithmetic on sizes the images above do not have: Resize(int) output sizes, centre
    # crop offsets (read back from an index image; padding shows as -1) and the fallback box
    # of RandomResizedCrop (a scale range no draw can meet forces it).
    geometry = []
    for (h, w) in [(375, 500), (500, 375), (200, 333), (256, 341), (256, 343), (31, 45), (20, 30), (224, 224), (1000, 10), (10, 1000)]:
        entry = {"h": h, "w": w}
        entry["resize_shorter_256"] = list(F.resize(torch.zeros(1, h, w, dtype=torch.uint8), [256], antialias=True).shape[-2:])
        for ch, cw in [(224, 224), (25, 10), (h // 2 + 1, w // 3 + 1)]:
            index = (torch.arange(h * w, dtype=torch.int64).view(1, h, w) + 1)
            c = F.center_crop(index, [ch, cw])[0]
            nz = (c > 0).nonzero()
            if len(nz) == 0:
                box = None
            else:
                y0, x0 = nz[0].tolist()
                v = int(c[y0, x0]) - 1
                box = [v // w - y0, v % w - x0, ch, cw]
            entry.setdefault("center_crop", []).append(box)
        t = torchvision.transforms.RandomResizedCrop(8, scale=(2.0, 3.0))
        i, j, hh, ww = t.get_params(torch.zeros(1, h, w), t.scale, t.ratio)
        entry["rrc_fallback"] = [i, j, hh, ww]
        geometry.append(entry)

    # JPEG decoding: PIL writes the landscape mosaic at quality 90 (4:2:0 chroma, as it does
    # by default) and decodes it again.
    jpeg_name = "mosaic_landscape_q90.jpg"
    Image.fromarray(sources["mosaic_landscape.png"]).save(os.path.join(out, jpeg_name), quality=90)
    with Image.open(os.path.join(out, jpeg_name)) as im:
        save_png(os.path.join(out, "mosaic_landscape_q90_pil_decoded.png"), np.asarray(im.convert("RGB")))
    decoding = [{"jpeg": jpeg_name, "pil_decoded": "mosaic_landscape_q90_pil_decoded.png"}]

    manifest = {
        "generated_by": "scripts/golden-transforms",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": Image.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cases": cases,
        "geometry": geometry,
        "decoding": decoding,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
