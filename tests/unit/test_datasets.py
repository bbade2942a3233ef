"""Dataset loaders (digits, image folders, torchvision roots) and the uint8 .npz image store."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from dualmd.config import DatasetConfig
from dualmd.data.datasets import (
    DatasetError,
    DatasetNotFoundError,
    load_dataset,
    load_images,
    resize_center_crop,
    save_images,
    to_model_range,
)


def test_digits_default_is_all_grayscale_8x8_in_full_range():
    images = load_dataset(DatasetConfig.from_mapping({}))
    assert images.shape == (1797, 1, 8, 8)
    assert images.dtype == np.uint8
    # sklearn's 0..16 scale is stretched to 0..255, not copied as is
    assert images.min() == 0 and images.max() == 255


def test_digits_rgb_resized_replicates_channels():
    cfg = DatasetConfig.from_mapping({"channels": 3, "image_size": 16, "max_images": 20})
    images = load_dataset(cfg)
    assert images.shape == (20, 3, 16, 16)
    assert np.array_equal(images[:, 0], images[:, 1]) and np.array_equal(images[:, 0], images[:, 2])
    # the same digits as the native 8x8 load, only upsampled: average-pooling 2x2 stays close to them
    native = load_dataset(DatasetConfig.from_mapping({"max_images": 20})).astype(float)
    pooled = images[:, :1].astype(float).reshape(20, 1, 8, 2, 8, 2).mean(axis=(3, 5))
    assert np.abs(pooled - native).mean() < 25


def test_max_images_keeps_the_first_images():
    first = load_dataset(DatasetConfig.from_mapping({"max_images": 5}))
    assert np.array_equal(first, load_dataset(DatasetConfig.from_mapping({}))[:5])


def test_max_images_beyond_dataset_is_an_error():
    with pytest.raises(DatasetError, match="only 1797"):
        load_dataset(DatasetConfig.from_mapping({"max_images": 5000}))


def _write(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


@pytest.fixture
def image_tree(tmp_path):
    """Three images in nested folders: a red RGB PNG, a grey JPEG (upper-case suffix), a 20x12 PNG."""
    root = tmp_path / "imgs"
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    _write(root / "b" / "c.png", red)
    _write(root / "a" / "x.JPG", np.full((8, 8), 100, np.uint8), fmt="JPEG")
    wide = np.zeros((12, 20, 3), np.uint8)
    wide[:, 10:] = 200  # right half bright: centre crop keeps both halves
    _write(root / "a" / "y" / "wide.png", wide)
    (root / "notes.txt").write_text("not an image")
    return root


def test_image_folder_sorted_nested_rgb(image_tree):
    cfg = DatasetConfig.from_mapping({"name": "image_folder", "root": str(image_tree), "channels": 3})
    images = load_dataset(cfg)
    assert images.shape == (3, 3, 8, 8) and images.dtype == np.uint8
    # sorted relative paths: a/x.JPG, a/y/wide.png, b/c.png
    grey, wide, red = images
    assert np.allclose(grey.astype(int), 100, atol=3)  # JPEG is lossy
    assert red[0].min() == 255 and red[1].max() == 0 and red[2].max() == 0
    assert wide[:, :, 0].max() == 0 and wide[:, :, -1].min() == 200


def test_image_folder_grayscale_converts_rgb(image_tree):
    cfg = DatasetConfig.from_mapping({"name": "image_folder", "root": str(image_tree), "channels": 1})
    images = load_dataset(cfg)
    assert images.shape == (3, 1, 8, 8)
    assert abs(int(images[2, 0, 0, 0]) - 76) <= 1  # ITU-R 601-2 luma of pure red: 0.299 * 255


def test_image_folder_corrupt_file_is_named(image_tree):
    bad = image_tree / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cfg = DatasetConfig.from_mapping({"name": "image_folder", "root": str(image_tree)})
    with pytest.raises(DatasetError, match="broken.png"):
        load_dataset(cfg)


def test_image_folder_empty_and_missing(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no .png"):
        load_dataset(DatasetConfig.from_mapping({"name": "image_folder", "root": str(tmp_path / "empty")}))
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(DatasetConfig.from_mapping({"name": "image_folder", "root": str(tmp_path / "nope")}))


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("stl10", "stl10_binary")])
def test_missing_torchvision_dataset_says_where_and_how(tmp_path, name, folder):
    cfg = DatasetConfig.from_mapping({"name": name, "root": str(tmp_path)})  # download stays false
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(cfg)
    assert isinstance(info.value, DatasetError)
    message = str(info.value)
    assert folder in message and str(tmp_path) in message and "dataset.download: true" in message
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or created


def test_resize_center_crop_matches_torchvision():
    from torchvision import transforms

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8))
    expected = transforms.CenterCrop(16)(transforms.Resize(16)(img))
    assert np.array_equal(np.asarray(resize_center_crop(img, 16)), np.asarray(expected))


def test_save_load_images_round_trip_and_hash(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    digest = save_images(tmp_path / "out" / "images.npz", images)
    assert digest == hashlib.sha256(images.tobytes()).hexdigest()
    loaded = load_images(tmp_path / "out" / "images.npz")
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, images)
    save_images(tmp_path / "again.npz", images)  # deterministic bytes
    assert (tmp_path / "again.npz").read_bytes() == (tmp_path / "out" / "images.npz").read_bytes()


def test_load_images_rejects_bad_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="missing.npz"):
        load_images(tmp_path / "missing.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DatasetError, match="corrupt.npz"):
        load_images(tmp_path / "corrupt.npz")
    np.savez(tmp_path / "wrongkey.npz", pixels=np.zeros((1, 1, 2, 2), np.uint8))
    with pytest.raises(DatasetError, match="wrongkey.npz.*'images'"):
        load_images(tmp_path / "wrongkey.npz")
    np.savez(tmp_path / "float.npz", images=np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(DatasetError, match="float.npz.*uint8"):
        load_images(tmp_path / "float.npz")
    np.savez(tmp_path / "flat.npz", images=np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetError, match=r"flat.npz.*\(N>0, C, H, W\)"):
        load_images(tmp_path / "flat.npz")


def test_to_model_range_endpoints_and_dtype():
    pixels = np.array([[[[0, 255], [127, 128]]]], dtype=np.uint8)
    x = to_model_range(pixels)
    assert x.dtype == torch.float32 and x.shape == (1, 1, 2, 2)
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 0, 1] == 1.0
    assert torch.allclose(x[0, 0, 1], torch.tensor([-1 / 255, 1 / 255]), atol=1e-6)
    with pytest.raises(DatasetError, match="uint8"):
        to_model_range(pixels.astype(np.float32))


class _FakeTorchvision:
    """Stands in for a torchvision dataset class (whose real files fail an MD5 check when faked)."""

    calls: list = []

    def __init__(self, root, download, **split):
        self.calls.append((root, download, split))
        rng = np.random.default_rng(0)
        if split == {"split": "unlabeled"}:
            self.data = rng.integers(0, 256, (6, 3, 12, 12), dtype=np.uint8)  # STL10 layout: (N, C, H, W)
        else:
            self.data = rng.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)  # CIFAR layout: (N, H, W, C)


@pytest.mark.parametrize(
    "name, class_name, folder, split",
    [
        ("cifar10", "CIFAR10", "cifar-10-batches-py", {"train": True}),
        ("stl10", "STL10", "stl10_binary", {"split": "unlabeled"}),
    ],
)
def test_torchvision_datasets_use_train_split_and_convert(
    tmp_path, monkeypatch, name, class_name, folder, split
):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, class_name, _FakeTorchvision)
    _FakeTorchvision.calls = []
    (tmp_path / folder).mkdir()
    cfg = DatasetConfig.from_mapping(
        {"name": name, "root": str(tmp_path), "channels": 3, "image_size": 12, "max_images": 4}
    )
    images = load_dataset(cfg)
    raw = _FakeTorchvision(str(tmp_path), False, **split).data[:4]
    expected = raw if name == "stl10" else raw.transpose(0, 3, 1, 2)
    assert np.array_equal(images, expected)  # same size: pixels pass through unchanged, channels first
    assert _FakeTorchvision.calls[0] == (str(tmp_path), False, split)
    gray = load_dataset(DatasetConfig.from_mapping({"name": name, "root": str(tmp_path), "image_size": 6}))
    assert gray.shape == (6, 1, 6, 6)
