"""Times Pillow on what `graft predict` does to each photo before the network sees it: decode, turn
upright (EXIF), resize the shorter side to 256 (bilinear, antialiased) and crop the centre 224.
`full` decodes every pixel first; `draft` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8
while decoding (Pillow's `Image.draft`), as graft does. One process, one thread, files read once
before timing so the disk is out of it. Prints one JSON line per mode.

    python scripts/bench/decode.py DIR [--resize 256] [--crop 224]
"""
import argparse
import json
import pathlib
import time

from PIL import Image, ImageOps


def prepare(path, resize, crop, draft):
    image = Image.open(path)
    if draft:
        image.draft("RGB", (resize, resize))
    image = ImageOps.exif_transpose(image).convert("RGB")
    width, height = image.size
    scale = resize / min(width, height)
    image = image.resize((max(crop, round(width * scale)), max(crop, round(height * scale))), Image.Resampling.BILINEAR)
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    return image.crop((left, top, left + crop, top + crop)).tobytes()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    args = parser.parse_args()
    paths = sorted(path for path in args.folder.iterdir() if path.suffix.lower() in (".jpg", ".jpeg"))
    for path in paths:
        path.read_bytes()
    for mode in ("full", "draft"):
        start = time.perf_counter()
        for path in paths:
            prepare(path, args.resize, args.crop, mode == "draft")
        seconds = time.perf_counter() - start
        print(json.dumps({"implementation": "pillow", "mode": mode, "images": len(paths), "seconds": seconds}))


if __name__ == "__main__":
    main()
