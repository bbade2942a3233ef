"""Dataset loaders (digits, Fashion-MNIST IDX files, image folders, torchvision roots) and the uint8 .npz image
store."""

import gzip
import hashlib
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from dualmd.config.sections import DatasetConfig
from dualmd.data import datasets
from dualmd.data.datasets import (
    FASHION_MNIST_ROOT,
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


def _idx_bytes(images, magic=0x00000803):
    """An IDX file of uint8 images (N, H, W): magic number, then the dimensions as big-endian uint32."""
    return struct.pack(">4I", magic, *images.shape) + images.tobytes()


def _write_idx(path, images, *, gz, magic=0x00000803):
    data = _idx_bytes(images, magic)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture
def fashion(tmp_path):
    """A tiny Fashion-MNIST folder: 3 training and 2 test images of random 28x28 pixels (gzipped)."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", train, gz=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test, gz=True)
    return tmp_path, train, test


def _fashion_cfg(root, **keys):
    return DatasetConfig.from_mapping({"name": "fashion_mnist", "root": str(root), "image_size": 28, **keys})


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_fashion_mnist_reads_train_then_test_pixels_exactly(tmp_path, gz):
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", train, gz=gz)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test, gz=gz)
    images = load_dataset(_fashion_cfg(tmp_path))
    assert images.shape == (5, 1, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images[:, 0], np.concatenate([train, test]))  # train first, file order kept


def test_fashion_mnist_max_images_runs_into_the_test_file(fashion):
    root, train, test = fashion
    images = load_dataset(_fashion_cfg(root, max_images=4))
    assert np.array_equal(images[:, 0], np.concatenate([train, test[:1]]))
    with pytest.raises(DatasetError, match="only 5"):
        load_dataset(_fashion_cfg(root, max_images=6))


def test_fashion_mnist_resizes_like_the_other_datasets(fashion):
    root, train, test = fashion
    images = load_dataset(_fashion_cfg(root, image_size=16, channels=3))
    assert images.shape == (5, 3, 16, 16)
    assert np.array_equal(images[:, 0], images[:, 1]) and np.array_equal(images[:, 0], images[:, 2])
    expected = np.asarray(resize_center_crop(Image.fromarray(test[1]), 16))
    assert np.array_equal(images[4, 0], expected)


def test_fashion_mnist_missing_folder_says_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(_fashion_cfg(tmp_path / "nope"))
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and str(tmp_path / "nope") in message
    # dataset.root null reads the Debian package's folder
    monkeypatch.setattr(datasets, "FASHION_MNIST_ROOT", tmp_path / "debian")
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset(DatasetConfig.from_mapping({"name": "fashion_mnist"}))
    assert str(tmp_path / "debian") in str(info.value)


def test_fashion_mnist_default_root_is_the_debian_folder():
    assert FASHION_MNIST_ROOT.as_posix() == "/usr/share/datasets/fashion-mnist"
    assert DatasetConfig.from_mapping({"name": "fashion_mnist"}).root is None  # no root needed


def test_fashion_mnist_missing_file_is_named(fashion):
    root, _, _ = fashion
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(_fashion_cfg(root))
    message = str(info.value)
    assert str(root / "t10k-images-idx3-ubyte") in message
    assert "apt-get install dataset-fashion-mnist" in message


@pytest.mark.parametrize(
    ("data", "gz", "message"),
    [
        (_idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-1], False, "truncated: 1583 bytes for 2 images"),
        (_idx_bytes(np.zeros((2, 28, 28), np.uint8))[:10], False, "truncated IDX file"),
        (_idx_bytes(np.zeros((2, 28, 28), np.uint8)) + b"x", False, "longer than its header says"),
        (_idx_bytes(np.zeros((2, 28, 28), np.uint8), magic=0x801), False, "magic number 0x00000801"),
        (_idx_bytes(np.zeros((2, 8, 8), np.uint8)), False, "images of 8x8 pixels, expected 28x28"),
        (gzip.compress(_idx_bytes(np.zeros((2, 28, 28), np.uint8)))[:-8], True, "cannot read the IDX file"),
        (b"not gzip at all", True, "cannot read the IDX file"),
    ],
    ids=["truncated", "no-header", "too-long", "magic", "dimensions", "truncated-gzip", "not-gzip"],
)
def test_fashion_mnist_bad_idx_file_is_named(fashion, data, gz, message):
    root, _, _ = fashion
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    bad = root / ("t10k-images-idx3-ubyte.gz" if gz else "t10k-images-idx3-ubyte")
    bad.write_bytes(data)
    with pytest.raises(DatasetError) as info:
        load_dataset(_fashion_cfg(root))
    assert str(bad) in str(info.value) and message in str(info.value)


@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist_has_70000_images():
    images = load_dataset(DatasetConfig.from_mapping({"name": "fashion_mnist", "image_size": 28}))
    assert images.shape == (70_000, 1, 28, 28)
    assert images.min() == 0 and images.max() == 255


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


# Miniature CIFAR folders in the real on-disk format: Python 2 protocol-2 pickles of dicts whose keys and strings
# are Python 2 `str` (read back as bytes with encoding="bytes", as the CIFAR page documents, and as str with
# encoding="latin1", as torchvision reads them). Each image is 3072 bytes: the 32x32 R plane row by row, then G,
# then B. Training image k (global index over all training batches) has R = k, G = 100 + row, B = 200 + column.

_RECONSTRUCT = np.zeros(0).__reduce_ex__(2)[0]  # numpy's array-unpickling function


class _Python2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote it: bytes become `str` opcodes, arrays refer to numpy.core."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_python2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_python2_str

    def save_global(self, obj, name=None):
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def _dump_python2(path, obj):
    with open(path, "wb") as f:
        _Python2Pickler(f, protocol=2).dump(obj)


def _pattern_planes(k):
    """The R, G, B planes (each 32x32) of image k: R constant k, G = 100 + row, B = 200 + column."""
    row, col = np.mgrid[0:32, 0:32]
    return np.full((32, 32), k), 100 + row, 200 + col


def _cifar_rows(planes_of, indices):
    """(len(indices), 3072) uint8: per image its R plane, then G, then B, each flattened row by row."""
    rows = [np.concatenate([np.ravel(p) for p in planes_of(k)]) for k in indices]
    return np.stack(rows).astype(np.uint8)


def _write_cifar10(root, planes_of=_pattern_planes, batch_sizes=(3, 2, 2, 2, 2), num_test=2):
    """cifar-10-batches-py with data_batch_1..5 (sizes `batch_sizes`), test_batch and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    start = 0
    for b, size in enumerate(batch_sizes, start=1):
        indices = range(start, start + size)
        _dump_python2(
            folder / f"data_batch_{b}",
            {
                b"batch_label": f"training batch {b} of 5".encode(),
                b"labels": [k % 10 for k in indices],
                b"data": _cifar_rows(planes_of, indices),
                b"filenames": [f"image_{k:05d}.png".encode() for k in indices],
            },
        )
        start += size
    test_indices = range(250, 250 + num_test)  # R plane 250, 251: never a training index
    _dump_python2(
        folder / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": [0] * num_test,
            b"data": _cifar_rows(planes_of, test_indices),
            b"filenames": [f"test_{k}.png".encode() for k in test_indices],
        },
    )
    names = b"airplane automobile bird cat deer dog frog horse ship truck".split()
    _dump_python2(
        folder / "batches.meta", {b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072}
    )
    return folder


def _write_cifar100(root, planes_of=_pattern_planes, num_train=5, num_test=2):
    """cifar-100-python with train, test and meta (label-name lists shortened)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, indices in (("train", range(num_train)), ("test", range(250, 250 + num_test))):
        _dump_python2(
            folder / name,
            {
                b"filenames": [f"{name}_{k}.png".encode() for k in indices],
                b"batch_label": f"{'training' if name == 'train' else 'testing'} batch 1 of 1".encode(),
                b"fine_labels": [k % 100 for k in indices],
                b"coarse_labels": [k % 20 for k in indices],
                b"data": _cifar_rows(planes_of, indices),
            },
        )
    _dump_python2(
        folder / "meta",
        {
            b"fine_label_names": [b"apple", b"aquarium_fish", b"baby"],
            b"coarse_label_names": [b"aquatic_mammals"],
        },
    )
    return folder


@pytest.fixture
def skip_cifar_md5(monkeypatch):
    """Replace only torchvision's MD5 comparison (the miniature files differ from the real ones) by 'exists'."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath)
    )


def _expected_pattern(indices):
    """(N, 3, 32, 32) uint8 built from the pattern's definition: channels R, G, B; axes row, column."""
    indices = np.asarray(indices)
    out = np.empty((len(indices), 3, 32, 32), np.uint8)
    out[:, 0] = indices[:, None, None]
    out[:, 1] = (100 + np.arange(32))[None, :, None]
    out[:, 2] = (200 + np.arange(32))[None, None, :]
    return out


def test_miniature_cifar_files_have_the_documented_layout(tmp_path):
    folder = _write_cifar10(tmp_path)
    raw = (folder / "data_batch_2").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the files from the CIFAR page
    with open(folder / "data_batch_2", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert set(batch) == {b"data", b"labels", b"filenames", b"batch_label"}
    assert batch[b"data"].shape == (2, 3072) and batch[b"data"].dtype == np.uint8
    # second batch holds global images 3 and 4; offsets: R[0,0], G[0,0], G[1,0], B[0,1]
    assert batch[b"data"][1, [0, 1024, 1024 + 32, 2048 + 1]].tolist() == [4, 100, 101, 201]
    assert batch[b"labels"] == [3, 4] and batch[b"filenames"] == [b"image_00003.png", b"image_00004.png"]
    with open(folder / "data_batch_2", "rb") as f:
        assert set(pickle.load(f, encoding="latin1")) == {"data", "labels", "filenames", "batch_label"}


def test_cifar10_real_format_train_batches_in_order(tmp_path, skip_cifar_md5):
    _write_cifar10(tmp_path)
    cfg = DatasetConfig.from_mapping(
        {"name": "cifar10", "root": str(tmp_path), "channels": 3, "image_size": 32}
    )
    images = load_dataset(cfg)
    assert images.shape == (11, 3, 32, 32) and images.dtype == np.uint8
    # data_batch_1 (images 0-2), then data_batch_2 (3-4), ..., data_batch_5 (9-10); no test_batch image (R 250+)
    assert images[:, 0, 0, 0].tolist() == list(range(11))
    assert np.array_equal(
        images, _expected_pattern(range(11))
    )  # R, G, B -> channels 0, 1, 2; rows, columns kept
    first = load_dataset(DatasetConfig.from_mapping({**cfg.to_dict(), "max_images": 4}))
    assert np.array_equal(first, _expected_pattern(range(4)))  # crosses from data_batch_1 into data_batch_2


def test_cifar100_real_format_train_file_only(tmp_path, skip_cifar_md5):
    _write_cifar100(tmp_path)
    cfg = DatasetConfig.from_mapping(
        {"name": "cifar100", "root": str(tmp_path), "channels": 3, "image_size": 32}
    )
    images = load_dataset(cfg)
    assert images.shape == (5, 3, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(images, _expected_pattern(range(5)))  # `train` only, in file order; no `test` image
    first = load_dataset(DatasetConfig.from_mapping({**cfg.to_dict(), "max_images": 4}))
    assert np.array_equal(first, _expected_pattern(range(4)))


def _constant_planes(k):
    """Image k is flat: R = 20k, G = 100, B = 50."""
    return np.full((32, 32), 20 * k), np.full((32, 32), 100), np.full((32, 32), 50)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_real_format_grayscale_and_resized(tmp_path, skip_cifar_md5, name):
    (_write_cifar10 if name == "cifar10" else _write_cifar100)(tmp_path, planes_of=_constant_planes)
    base = {"name": name, "root": str(tmp_path), "image_size": 16, "max_images": 4}
    gray = load_dataset(DatasetConfig.from_mapping({**base, "channels": 1}))
    assert gray.shape == (4, 1, 16, 16) and gray.dtype == np.uint8
    # ITU-R 601-2 luma 0.299 R + 0.587 G + 0.114 B = 5.98 k + 64.4 -> 64.4, 70.38, 76.36, 82.34
    assert np.array_equal(
        gray, np.broadcast_to(np.array([64, 70, 76, 82], np.uint8)[:, None, None, None], gray.shape)
    )
    rgb = load_dataset(DatasetConfig.from_mapping({**base, "channels": 3}))
    assert rgb.shape == (4, 3, 16, 16)
    expected = np.array([[20 * k, 100, 50] for k in range(4)], np.uint8)[:, :, None, None]
    assert np.array_equal(rgb, np.broadcast_to(expected, rgb.shape))  # a flat image stays flat when resized


def test_cifar_real_format_failing_md5_is_a_dataset_error(tmp_path):
    _write_cifar10(tmp_path)  # the miniature files do not have the real files' MD5 sums
    with pytest.raises(DatasetError, match="cifar10: cannot load .*cifar-10-batches-py"):
        load_dataset(DatasetConfig.from_mapping({"name": "cifar10", "root": str(tmp_path)}))
