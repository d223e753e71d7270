"""Writes an ImageNet-style photo folder from the real CIFAR-10 JPEG ImageFolder.

Every source image SOURCE/{train,test}/<class>/<name> is upscaled by PIL's bicubic resize to a
random size, width and height each drawn independently and uniformly from 200..500 px (so the
aspect ratio varies), and re-encoded as JPEG quality 90 to OUT/{train,test}/<class>/<stem>.jpg.
The size of each image comes from a generator seeded by (seed, split, class, stem), so the same
seed gives byte-identical files whatever the per-class counts or the number of processes.

The folder is written as OUT.partial and renamed to OUT at the end: an interrupted run leaves
only OUT.partial (removed by the next run). Nothing is downloaded.

    python make_photo_folder.py --source SHARED_CIFAR10 OUT [--train-per-class N]
        [--test-per-class M] [--seed S] [--overwrite]
"""

import argparse
import multiprocessing
import os
import random
import shutil
import sys

from PIL import Image

SPLITS = ("train", "test")
EXTENSIONS = (".jpg", ".jpeg", ".png")
MIN_SIDE, MAX_SIDE = 200, 500
QUALITY = 90


def fail(message):
    print(f"make-photo-folder: {message}", file=sys.stderr)
    sys.exit(2)


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args():
    p = argparse.ArgumentParser(prog="make-photo-folder", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder to write (OUT/{train,test}/<class>/<stem>.jpg)")
    p.add_argument("--source", required=True, help="the CIFAR-10 JPEG ImageFolder (with train/ and test/)")
    p.add_argument("--train-per-class", type=positive, default=None, help="first N files of each class (default: all)")
    p.add_argument("--test-per-class", type=positive, default=None, help="first M files of each class (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image sizes (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    p.add_argument("--sides", type=positive, nargs=2, metavar=("MIN", "MAX"), default=(MIN_SIDE, MAX_SIDE),
                   help=f"range of each side in px (default {MIN_SIDE} {MAX_SIDE})")
    return p.parse_args()


def plan(source, out, seed, per_class, sides):
    """(src, dst, width, height) for every image, and the per-split counts."""
    jobs, counts = [], {}
    for split in SPLITS:
        split_dir = os.path.join(source, split)
        if not os.path.isdir(split_dir):
            fail(f"source folder {split_dir} does not exist (expected the CIFAR-10 JPEG ImageFolder)")
        classes = sorted(c for c in os.listdir(split_dir) if not c.startswith(".") and os.path.isdir(os.path.join(split_dir, c)))
        if not classes:
            fail(f"source folder {split_dir} has no class sub-folders")
        counts[split] = 0
        for cls in classes:
            class_dir = os.path.join(split_dir, cls)
            names = sorted(n for n in os.listdir(class_dir) if n.lower().endswith(EXTENSIONS))
            if not names:
                fail(f"class folder {class_dir} has no .jpg/.jpeg/.png images")
            names = names[: per_class[split]]
            stems = [os.path.splitext(n)[0] for n in names]
            if len(set(stems)) != len(stems):
                fail(f"class folder {class_dir} has two images with the same name stem")
            for name, stem in zip(names, stems):
                rng = random.Random(f"{seed}/{split}/{cls}/{stem}")
                width, height = rng.randint(*sides), rng.randint(*sides)
                jobs.append((os.path.join(class_dir, name), os.path.join(out, split, cls, stem + ".jpg"), width, height))
            counts[split] += len(names)
    return jobs, counts


def convert(job):
    src, dst, width, height = job
    with Image.open(src) as im:
        big = im.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    big.save(dst, "JPEG", quality=QUALITY)
    return os.path.getsize(dst)


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def main():
    args = parse_args()
    out = os.path.abspath(args.out.rstrip("/") or "/")
    partial = out + ".partial"
    if os.path.lexists(out) and not (os.path.isdir(out) and not os.path.islink(out) and not os.listdir(out)) and not args.overwrite:
        fail(f"{args.out} exists and is not empty; pass --overwrite to replace it")
    source = os.path.abspath(args.source)
    if args.sides[0] > args.sides[1]:
        fail(f"--sides {args.sides[0]} {args.sides[1]}: the minimum is larger than the maximum")
    jobs, counts = plan(source, partial, args.seed, {"train": args.train_per_class, "test": args.test_per_class}, tuple(args.sides))

    if os.path.lexists(partial):
        print(f"make-photo-folder: removing {partial} left by an interrupted run", file=sys.stderr)
        remove(partial)
    for d in sorted({os.path.dirname(dst) for _, dst, _, _ in jobs}):
        os.makedirs(d)

    total, done = 0, 0
    with multiprocessing.Pool(os.cpu_count()) as pool:
        for size in pool.imap_unordered(convert, jobs, chunksize=32):
            total += size
            done += 1
            if done % 5000 == 0:
                print(f"make-photo-folder: {done}/{len(jobs)} images", file=sys.stderr)

    # Swap the finished folder in; the old OUT (if any) is moved aside first and removed last.
    old = None
    if os.path.lexists(out):
        old = f"{out}.old-{os.getpid()}"
        os.rename(out, old)
    os.rename(partial, out)
    if old is not None:
        remove(old)
    split_counts = ", ".join(f"{s} {counts[s]}" for s in SPLITS)
    print(f"make-photo-folder: wrote {len(jobs)} images ({split_counts}), {total / 2**20:.1f} MiB, to {args.out}")


if __name__ == "__main__":
    main()
