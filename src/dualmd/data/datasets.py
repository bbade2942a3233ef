"""Image datasets as uint8 arrays (N, C, H, W), and their storage as .npz files.

Every source goes through the same preprocessing: convert to grayscale ("L") or RGB, resize the shorter
side to `image_size` and centre-crop to a square, as torchvision's ``Resize(size)`` + ``CenterCrop(size)``
do. Bilinear resampling matches torchvision's default and the authors' STL10/Tiny-ImageNet preprocessing.

Fashion-MNIST (`fashion_mnist`) is read from its four IDX files (gzipped or not) under `dataset.root`, by default
where Debian's package ``dataset-fashion-mnist`` installs them: the 60,000 training images first, then the
10,000 test images, each file in its own order; labels are not read.

Errors: `DatasetError` (a ValueError) for unreadable, corrupt or malformed data; `DatasetNotFoundError`
(a DatasetError that is also a FileNotFoundError) when a file or folder is missing, so callers may catch
either family.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dualmd.config.sections import DatasetConfig
from dualmd.files import write_bytes_atomic

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Captions of an image folder (the layout of Pokemon-BLIP-like datasets): one JSON object per line,
#: {"file_name": <path relative to the folder>, "text": <caption> or [<caption>, ...]}.
CAPTIONS_FILE = "metadata.jsonl"
IMAGES_KEY = "images"
# torchvision dataset name -> (class name, constructor split argument, folder torchvision expects under root).
_TORCHVISION = {
    "cifar10": ("CIFAR10", {"train": True}, "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", {"train": True}, "cifar-100-python"),
    "stl10": ("STL10", {"split": "unlabeled"}, "stl10_binary"),
}
#: Where Debian's package dataset-fashion-mnist installs Fashion-MNIST (used when dataset.root is null).
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
#: Fashion-MNIST's image files, in the order their images are concatenated (train, then test); each may be
#: stored gzipped (``<name>.gz``, as distributed) or plain.
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
FASHION_MNIST_SIZE = 28  # pixels per side of every stored image
_IDX_UBYTE_3D = 0x00000803  # IDX magic number: unsigned bytes, 3 dimensions (images, rows, columns)
_IDX_HEADER_BYTES = 16  # magic number and three big-endian uint32 dimensions
# A fixed zip timestamp makes .npz bytes depend on the arrays only (np.savez stamps the current time).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class DatasetError(ValueError):
    """A dataset, image file or stored image array is unreadable, corrupt or malformed."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset folder or image file does not exist."""


def load_dataset(cfg: DatasetConfig) -> np.ndarray:
    """Load the configured dataset, preprocessed to the configured size and channels.

    Args:
        cfg: dataset section; `name` picks the source, `max_images` keeps the first N images.

    Returns:
        uint8 array (N, C, H, W) with C = cfg.channels and H = W = cfg.image_size.

    Raises:
        DatasetNotFoundError: the local dataset is missing (the message says how to provide it).
        DatasetError: a file is corrupt, the folder holds no images, or max_images exceeds the dataset.
    """
    if cfg.name == "digits":
        images: Iterable[Image.Image] = _digits(cfg.max_images)
    elif cfg.name == "fashion_mnist":
        images = _fashion_mnist(cfg)
    elif cfg.name == "image_folder":
        images = _folder_images(_image_paths(Path(str(cfg.root)), cfg.max_images))
    elif cfg.name in _TORCHVISION:
        images = _torchvision_images(cfg)
    else:  # unreachable after config validation; kept so a new name cannot fall through silently
        raise DatasetError(f"unknown dataset {cfg.name!r}")
    return _stack(images, size=cfg.image_size, channels=cfg.channels)


def _first(num_available: int, max_images: int | None, source: str) -> int:
    """How many images to keep; asking for more than exist is an error, not a silent shortfall."""
    if max_images is None:
        return num_available
    if max_images > num_available:
        raise DatasetError(f"dataset.max_images={max_images} but {source} has only {num_available} images")
    return max_images


def _digits(max_images: int | None) -> list[Image.Image]:
    """scikit-learn's 8x8 digits (values 0..16), rescaled to 0..255 grayscale images."""
    from sklearn.datasets import load_digits

    raw = load_digits().images  # (1797, 8, 8) float64 in [0, 16]
    raw = raw[: _first(len(raw), max_images, "digits")]
    pixels = np.rint(raw * (255.0 / 16.0)).astype(np.uint8)
    return [Image.fromarray(p) for p in pixels]


def _fashion_mnist(cfg: DatasetConfig) -> list[Image.Image]:
    """Fashion-MNIST's 28x28 grayscale images (0 = background, 255 = ink), train then test images."""
    root = FASHION_MNIST_ROOT if cfg.root is None else Path(cfg.root)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"fashion_mnist: folder {root} does not exist; install Fashion-MNIST there with "
            f"`apt-get install dataset-fashion-mnist`, or set dataset.root to a folder holding "
            f"{' and '.join(f'{name}(.gz)' for name in FASHION_MNIST_FILES)}"
        )
    pixels = np.concatenate([read_idx_images(_idx_file(root, name)) for name in FASHION_MNIST_FILES])
    pixels = pixels[: _first(len(pixels), cfg.max_images, "fashion_mnist")]
    return [Image.fromarray(p) for p in pixels]


def _idx_file(root: Path, name: str) -> Path:
    """The gzipped file `name`.gz in `root`, else the plain file `name`."""
    for path in (root / f"{name}.gz", root / name):
        if path.is_file():
            return path
    raise DatasetNotFoundError(
        f"fashion_mnist: neither {root / name}.gz nor {root / name} exists; install Fashion-MNIST with "
        f"`apt-get install dataset-fashion-mnist` (files under {FASHION_MNIST_ROOT}), or set dataset.root"
    )


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an IDX file of 28x28 uint8 images (magic 0x00000803, big-endian dimensions), gzipped or not.

    Args:
        path: the file; a name ending in ".gz" is decompressed.

    Returns:
        uint8 array (N, 28, 28) in file order.

    Raises:
        DatasetError: the file cannot be decompressed, is truncated or too long, has another magic number, or
            its images are not 28x28 (the message names the file).
    """
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path}: cannot read the IDX file: {err}") from err
    if len(data) < _IDX_HEADER_BYTES:
        raise DatasetError(f"{path}: truncated IDX file ({len(data)} bytes, shorter than its 16-byte header)")
    magic, num, rows, cols = np.frombuffer(data, dtype=">u4", count=4)
    if magic != _IDX_UBYTE_3D:
        raise DatasetError(
            f"{path}: magic number {magic:#010x}, expected {_IDX_UBYTE_3D:#010x} (3-D uint8 images)"
        )
    if (rows, cols) != (FASHION_MNIST_SIZE, FASHION_MNIST_SIZE):
        raise DatasetError(f"{path}: images of {rows}x{cols} pixels, expected 28x28")
    expected = _IDX_HEADER_BYTES + int(num) * int(rows) * int(cols)
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise DatasetError(f"{path}: {problem}: {len(data)} bytes for {num} images, expected {expected}")
    pixels = np.frombuffer(data, dtype=np.uint8, offset=_IDX_HEADER_BYTES)
    return pixels.reshape(int(num), int(rows), int(cols))  # (N, 28, 28), read-only view of the file's bytes


def _image_paths(root: Path, max_images: int | None) -> list[Path]:
    """Image files under `root` in sorted relative-path order (the same on every machine)."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist (dataset.root)")
    paths = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not paths:
        raise DatasetError(f"no {'/'.join(IMAGE_SUFFIXES)} files (any case) under {root}")
    paths.sort(key=lambda p: p.relative_to(root).as_posix())
    return paths[: _first(len(paths), max_images, f"image folder {root}")]


def image_folder_names(root: str | Path, max_images: int | None = None) -> list[str]:
    """The file names (relative to `root`, "/"-separated) of the images `load_dataset` reads from the image
    folder `root`, in the same order."""
    root = Path(root)
    return [p.relative_to(root).as_posix() for p in _image_paths(root, max_images)]


def read_captions(path: str | Path) -> dict[str, tuple[str, ...]]:
    """The captions of a `metadata.jsonl` file, by file name (a path relative to the file's folder).

    Each non-blank line is {"file_name": str, "text": str or non-empty list of str}; the first caption of a
    list is the image's original caption.

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetError: a line is not such an object, or a file name repeats (the message names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"caption file {path} does not exist")
    captions: dict[str, tuple[str, ...]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            name, texts = _caption_record(line, f"{path}, line {number}")
            if name in captions:
                raise DatasetError(f"{path}, line {number}: file_name {name!r} appears twice")
            captions[name] = texts
    return captions


def _caption_record(line: str, where: str) -> tuple[str, tuple[str, ...]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{where}: not valid JSON: {err}") from err
    if not isinstance(record, dict) or not isinstance(record.get("file_name"), str):
        raise DatasetError(f"{where}: expected an object with a string 'file_name'")
    text = record.get("text")
    texts = [text] if isinstance(text, str) else text
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise DatasetError(f"{where}: 'text' must be a caption or a non-empty list of captions, got {text!r}")
    return Path(record["file_name"]).as_posix(), tuple(texts)


def image_folder_captions(root: str | Path, max_images: int | None = None) -> list[tuple[str, ...]]:
    """The captions of every image `load_dataset` reads from the image folder `root`, in the same order.

    Raises:
        DatasetNotFoundError: no `metadata.jsonl` in `root`.
        DatasetError: the file is malformed, or an image has no line in it (the message names the image).
    """
    root = Path(root)
    by_name = read_captions(root / CAPTIONS_FILE)
    out = []
    for image in _image_paths(root, max_images):
        name = image.relative_to(root).as_posix()
        if name not in by_name:
            raise DatasetError(f"{root / CAPTIONS_FILE}: no caption for image {name!r}")
        out.append(by_name[name])
    return out


def _folder_images(paths: list[Path]) -> Iterable[Image.Image]:
    for path in paths:
        try:
            with Image.open(path) as img:
                img.load()  # decode now: a truncated file fails here, not later without its name
                yield img.copy()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise DatasetError(f"cannot read image {path}: {err}") from err


def _torchvision_images(cfg: DatasetConfig) -> list[Image.Image]:
    """The TRAIN split of CIFAR-10/100 (SecMI's indices refer to it) or STL10's unlabeled split."""
    import torchvision.datasets

    class_name, split_kwargs, folder = _TORCHVISION[cfg.name]
    root = Path(str(cfg.root))
    if not cfg.download and not (root / folder).is_dir():
        raise DatasetNotFoundError(
            f"{cfg.name}: {folder} not found in {root}; set dataset.download: true to fetch it there, "
            f"or place the extracted {folder} folder in {root}"
        )
    try:
        dataset = getattr(torchvision.datasets, class_name)(str(root), download=cfg.download, **split_kwargs)
    except (RuntimeError, OSError) as err:  # torchvision's integrity check or a failed download
        raise DatasetError(f"{cfg.name}: cannot load {root / folder}: {err}") from err
    data = np.asarray(dataset.data)  # CIFAR: (N, H, W, 3); STL10: (N, 3, H, W)
    if cfg.name == "stl10":
        data = data.transpose(0, 2, 3, 1)
    data = data[: _first(len(data), cfg.max_images, cfg.name)]
    return [Image.fromarray(np.ascontiguousarray(img)) for img in data]


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size` (bilinear), then crop the central size x size square.

    Rounding follows torchvision's Resize(int) and CenterCrop so results match its pipelines.
    """
    w, h = img.size
    if (w, h) != (size, size):
        short, long = min(w, h), max(w, h)
        new_long = max(size, int(size * long / short))
        new_w, new_h = (size, new_long) if w <= h else (new_long, size)
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left = int(round((new_w - size) / 2.0))
        top = int(round((new_h - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    return img


def _stack(images: Iterable[Image.Image], *, size: int, channels: int) -> np.ndarray:
    """Convert (L for 1 channel, RGB for 3), resize/crop and stack into (N, C, size, size) uint8."""
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(resize_center_crop(img.convert(mode), size)) for img in images]
    stacked = np.stack(arrays).astype(np.uint8, copy=False)
    if channels == 1:
        return stacked[:, None, :, :]  # (N, H, W) -> (N, 1, H, W)
    return np.ascontiguousarray(stacked.transpose(0, 3, 1, 2))  # (N, H, W, 3) -> (N, 3, H, W)


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> str:
    """Write arrays to an uncompressed .npz atomically and deterministically.

    The bytes depend only on the keys, their order and the arrays (fixed zip timestamps), and the file
    appears via os.replace, so an interrupted job never leaves a half-written file.

    Returns:
        SHA-256 hex digest of the file's bytes.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    data = buffer.getvalue()
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def images_sha256(images: np.ndarray) -> str:
    """SHA-256 of the raw bytes of a uint8 image array (C order)."""
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def save_images(path: str | Path, images: np.ndarray) -> str:
    """Store images as an .npz with key "images".

    Args:
        path: destination .npz file (parent folders are created).
        images: uint8 array (N, C, H, W).

    Returns:
        SHA-256 of the images array bytes (see `images_sha256`).
    """
    _check_images(images, source="save_images")
    write_npz(path, {IMAGES_KEY: images})
    return images_sha256(images)


def load_images(path: str | Path) -> np.ndarray:
    """Read images stored by `save_images`.

    Returns:
        uint8 array (N, C, H, W).

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetError: not a readable .npz, no "images" key, or not a non-empty uint8 4-D array.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"image file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if IMAGES_KEY not in archive.files:
                raise DatasetError(f"{path}: no {IMAGES_KEY!r} array (found {archive.files})")
            images = archive[IMAGES_KEY]
    except DatasetError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DatasetError(f"{path}: not a readable .npz image file: {err}") from err
    _check_images(images, source=str(path))
    return images


def _check_images(images: np.ndarray, *, source: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise DatasetError(
            f"{source}: images must be a uint8 numpy array, got {getattr(images, 'dtype', None)}"
        )
    if images.ndim != 4 or images.shape[0] == 0:
        raise DatasetError(f"{source}: images must have shape (N>0, C, H, W), got {images.shape}")


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels to the model's range: x / 127.5 - 1.

    Args:
        images: uint8 array or tensor, any shape (usually (N, C, H, W)).

    Returns:
        float32 tensor of the same shape with values in [-1, 1] (0 -> -1, 255 -> 1).
    """
    tensor = torch.from_numpy(np.asarray(images)) if isinstance(images, np.ndarray) else images
    if tensor.dtype != torch.uint8:
        raise DatasetError(f"to_model_range expects uint8 pixels, got {tensor.dtype}")
    return tensor.to(torch.float32) / 127.5 - 1.0
