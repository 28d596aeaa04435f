"""Benchmark: face detection + crop of one 12 MP flash/studio pair (target: under 0.5 s).

Ours: HOG on an 800 px area-averaged copy (crop.detect_max_side, crop.upsample = 1), then
pipeline.faces.detect.crop_pair at 512 px (flash crop + studio warped with its registration
matrix, each one anti-aliased resample of only the window it needs).
Named baseline, in the same run: the straightforward way, face_recognition's default call
on the full-resolution photo (HOG, upsample 1), a full-resolution aligned studio copy
(cv2.warpAffine of the whole frame), then crop + cv2.resize(INTER_AREA) of both.

Run: .venv/bin/python benchmarks/bench_faces.py [--repeats 5]
The photo: ../shared/data/portraits/deepface_img40.jpg (3061x4600) cut to 3:4 and resized
to 3000x4000 when present, else scikit-image's astronaut blown up into a 3000x4000 frame.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from pipeline.faces.detect import Box, CropBox, crop_pair, detect_faces, square_crop_box
from pipeline.io import read_image

SHARED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "portraits" / "deepface_img40.jpg"
)
WIDTH, HEIGHT, SIZE, TARGET_S = 3000, 4000, 512, 0.5


def twelve_megapixel_photo() -> tuple[np.ndarray, str]:
    """A 3000x4000 float32 RGB portrait and where it came from."""
    if SHARED.is_file():
        image = read_image(SHARED)
        h, w = image.shape[:2]
        keep = min(h, round(w * HEIGHT / WIDTH))  # cut to 3:4, then resize
        image = image[(h - keep) // 2 : (h - keep) // 2 + keep]
        source = f"{SHARED.name} cut to 3:4"
    else:
        from skimage import data

        face = data.astronaut().astype(np.float32) / 255.0
        image = np.pad(face, ((80, 80), (0, 0), (0, 0)), mode="reflect")
        source = "skimage astronaut (padded)"
    image = cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 1), source


def ours(
    flash: np.ndarray, studio: np.ndarray, matrix: np.ndarray
) -> tuple[list[Box], tuple[np.ndarray, np.ndarray]]:
    """Detection on the small copy + the composed single warp."""
    faces = detect_faces(flash, detector="hog", max_side=800, upsample=1)
    crop = square_crop_box(faces[0], 0.4)
    return faces, crop_pair(flash, studio, matrix, crop, SIZE)


def naive_crop(
    flash: np.ndarray, studio: np.ndarray, matrix: np.ndarray, crop: CropBox
) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution aligned studio copy, then crop + INTER_AREA resize of both images."""
    x0, y0, side = crop
    aligned = cv2.warpAffine(
        studio, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    pad = max(0, -x0, -y0, x0 + side - WIDTH, y0 + side - HEIGHT)
    crops = []
    for image in (flash, aligned):
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect") if pad else image
        window = padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
        crops.append(cv2.resize(window, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return crops[0], crops[1]


def baseline(
    flash: np.ndarray, studio: np.ndarray, matrix: np.ndarray
) -> tuple[list[Box], tuple[np.ndarray, np.ndarray]]:
    """Full-resolution detection (the library's default call), then :func:`naive_crop`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition

    as_uint8 = np.rint(flash * 255).astype(np.uint8)
    faces = face_recognition.face_locations(as_uint8)  # HOG, upsample 1: the library default
    faces.sort(key=lambda b: -(b[2] - b[0]) * (b[1] - b[3]))
    return faces, naive_crop(flash, studio, matrix, square_crop_box(faces[0], 0.4))


def _iou(a: Box, b: Box) -> float:
    top, right = max(a[0], b[0]), min(a[1], b[1])
    bottom, left = min(a[2], b[2]), max(a[3], b[3])
    inter = max(0, bottom - top) * max(0, right - left)
    area = lambda box: (box[2] - box[0]) * (box[1] - box[3])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def main() -> None:
    """Time both ways on the same pair and print the figures and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    flash, source = twelve_megapixel_photo()
    # The studio shot: the flash photo moved by a small known affine (as registration finds).
    matrix = cv2.getRotationMatrix2D((WIDTH / 2, HEIGHT / 2), 2.0, 1.03)
    matrix[:, 2] += (25.0, -18.0)
    studio = cv2.warpAffine(flash, matrix, (WIDTH, HEIGHT))
    print(f"photo: {WIDTH}x{HEIGHT} float32 RGB ({WIDTH * HEIGHT / 1e6:.0f} MP) from {source}")

    ours(flash, studio, matrix)  # warm-up: model load, page faults
    times, detect_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        faces, (flash_crop, studio_crop) = ours(flash, studio, matrix)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        detect_faces(flash, detector="hog", max_side=800, upsample=1)
        detect_times.append(time.perf_counter() - start)
    t_ours = statistics.median(times)
    t_detect = statistics.median(detect_times)

    start = time.perf_counter()
    base_faces, _ = baseline(flash, studio, matrix)
    t_base = time.perf_counter() - start

    print(
        f"ours     (HOG on 800 px copy + one composed warp): median {t_ours:.3f} s of "
        f"{args.repeats} (detection alone {t_detect:.3f} s; crop of both images the rest)"
    )
    print(f"baseline (full-res HOG + full-res aligned copy + crop/resize): {t_base:.3f} s")
    print(
        f"speed-up: {t_base / t_ours:.1f}x; target < {TARGET_S} s: {'PASS' if t_ours < TARGET_S else 'FAIL'}"
    )
    print(
        f"face box: ours {faces[0]}, baseline {base_faces[0]}, IoU {_iou(faces[0], base_faces[0]):.2f}"
    )
    # Same crop box both ways: the one-warp crop against the two-step one (untimed).
    naive_flash, naive_studio = naive_crop(flash, studio, matrix, square_crop_box(faces[0], 0.4))
    print(
        f"same box, mean |ours - two-step|: flash {np.abs(flash_crop - naive_flash).mean():.4f}, "
        f"studio {np.abs(studio_crop - naive_studio).mean():.4f}; "
        f"studio vs flash crop: ours {np.abs(studio_crop - flash_crop).mean():.4f}, "
        f"two-step {np.abs(naive_studio - naive_flash).mean():.4f}"
    )


if __name__ == "__main__":
    main()
