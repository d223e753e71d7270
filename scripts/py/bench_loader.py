"""Times torchvision's ImageFolder + DataLoader on a photo folder: PIL decode,
RandomResizedCrop(size) and RandomHorizontalFlip on the PIL image, PILToTensor (uint8, the same
output as compress's loader), batches collated by worker processes.

    python bench_loader.py FOLDER --workers W --size 224 --batch 64 --images N --rounds R

Prints one JSON line per round: images, seconds, images per second (from the first batch
request to the last batch, as compress data --throughput measures).
"""

import argparse
import json
import time

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms


def main():
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--rounds", type=int, default=1)
    a = p.parse_args()
    # One intra-op thread per process, as DataLoader workers run anyway; the main process only
    # receives batches.
    torch.set_num_threads(1)
    tf = transforms.Compose([
        transforms.RandomResizedCrop(a.size),
        transforms.RandomHorizontalFlip(),
        transforms.PILToTensor(),
    ])
    data = datasets.ImageFolder(a.folder, transform=tf)
    n = len(data) if a.images is None else min(a.images, len(data))
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data), generator=g)[:n].tolist()
    for _ in range(a.rounds):
        loader = DataLoader(Subset(data, order), batch_size=a.batch, shuffle=False, num_workers=a.workers,
                            persistent_workers=False, prefetch_factor=2 if a.workers > 0 else None)
        start = time.perf_counter()
        images = 0
        for x, _ in loader:
            images += x.shape[0]
        seconds = time.perf_counter() - start
        print(json.dumps({"images": images, "seconds": seconds, "images_per_second": images / seconds, "workers": a.workers}), flush=True)


if __name__ == "__main__":
    main()
