"""Writes phone-size photos for the decode benchmark: N JPEGs of 4000 x 3000 pixels (quality 92,
4:2:0, about what a phone writes), made from the colour photos in scikit-image's wheel (BSD),
each cropped to 4:3 at a different place, scaled up and given sensor-like noise so the files carry
as much detail as real ones (3-4 MB each). Every fifth one is stored sideways with an EXIF
orientation tag, as phones store portrait shots.

    python scripts/bench/phone_jpegs.py --out DIR [--count 40] [--wheel-dir DIR]

Needs Pillow and numpy; fetches `scikit-image==0.26.0` with `pip download --no-deps` when
`--wheel-dir` has no wheel of it.
"""
import argparse
import io
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image

PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg", "ihc.png"]


def wheel(directory):
    directory.mkdir(parents=True, exist_ok=True)
    found = sorted(directory.glob("scikit_image-0.26.0-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "scikit-image==0.26.0", "-d", str(directory)], check=True)
        found = sorted(directory.glob("scikit_image-0.26.0-*.whl"))
    return found[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--wheel-dir", type=pathlib.Path, default=pathlib.Path("/tmp/graft-skimage"))
    args = parser.parse_args()
    archive = zipfile.ZipFile(wheel(args.wheel_dir))
    photos = [Image.open(io.BytesIO(archive.read(f"skimage/data/{name}"))).convert("RGB") for name in PHOTOS]
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(args.count):
        photo = photos[index % len(photos)]
        width, height = photo.size
        # A 4:3 window at a different place each time.
        crop_width = min(width, height * 4 // 3)
        crop_height = crop_width * 3 // 4
        scale = 0.8 + 0.2 * rng.random()
        crop_width, crop_height = int(crop_width * scale), int(crop_height * scale)
        left = int(rng.integers(0, width - crop_width + 1))
        top = int(rng.integers(0, height - crop_height + 1))
        big = photo.crop((left, top, left + crop_width, top + crop_height)).resize((4000, 3000), Image.Resampling.BICUBIC)
        pixels = np.asarray(big, dtype=np.float32) + rng.normal(0.0, 6.0, (3000, 4000, 3)).astype(np.float32)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        exif = Image.Exif()
        if index % 5 == 4:
            # Stored sideways; orientation 6 says: turn 90 degrees clockwise to view.
            image = image.transpose(Image.Transpose.ROTATE_90)
            exif[0x0112] = 6
        image.save(args.out / f"photo{index:02d}.jpg", quality=92, subsampling=2, exif=exif.tobytes())
    print(f"wrote {args.count} photos to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
