"""Datasets for ``torchpool compare``: scikit-learn digits, Fashion-MNIST IDX files, an image folder.

Every loader returns a :class:`ImageData`: float32 images in ``[0, 1]`` shaped ``(N, 1, H, W)``
and int64 labels. A missing or malformed dataset raises :class:`DatasetError` with a message that
names what was expected where; the command line turns it into exit status 2.
"""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_FASHION_DIR",
    "DatasetError",
    "ImageData",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "check_usable",
    "load_folder",
    "read_idx",
]

DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_TYPES: dict[int, tuple[str, int]] = {
    0x08: (">u1", 1),
    0x09: (">i1", 1),
    0x0B: (">i2", 2),
    0x0C: (">i4", 4),
    0x0D: (">f4", 4),
    0x0E: (">f8", 8),
}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
LAB_HINT = 'install the optional dependencies with: pip install "torchpool[lab]"'


class DatasetError(Exception):
    """A dataset is missing or malformed; the message says what was expected where."""


@dataclass
class ImageData:
    """A train/test split of grayscale images.

    Attributes:
        name: dataset name for reports, e.g. ``"digits"``.
        train_x: ``(N, 1, H, W)`` float32 images in ``[0, 1]``.
        train_y: ``(N,)`` int64 labels in ``[0, num_classes)``.
        test_x: ``(M, 1, H, W)`` float32 images in ``[0, 1]``.
        test_y: ``(M,)`` int64 labels.
        classes: class names, indexed by label.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of every image."""
        return int(self.train_x.shape[-2]), int(self.train_x.shape[-1])

    def describe(self) -> str:
        """One line: name, sizes, classes."""
        h, w = self.image_size
        return (
            f"{self.name}: {len(self.train_y)} train / {len(self.test_y)} test images, "
            f"{h}x{w}, {self.num_classes} classes"
        )


def _resize(x: Tensor, size: int | None) -> Tensor:
    if size is None or (x.shape[-2] == size and x.shape[-1] == size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded, per-class train/test split."""
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(idx) * test_fraction)
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits(image_size: int | None = 16, seed: int = 0, test_fraction: float = 0.2) -> ImageData:
    """scikit-learn's bundled 8x8 digits (1797 images), split per class, optionally upsampled.

    Args:
        image_size: side length to resize to (bilinear); None keeps 8x8.
        seed: seed of the train/test split.
        test_fraction: share of each class held out for testing.

    Raises:
        DatasetError: if scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DatasetError(f"--dataset digits needs scikit-learn; {LAB_HINT}") from exc
    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = _stratified_split(labels, test_fraction, seed)
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    tr, te = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return ImageData(
        name="digits",
        train_x=_resize(x[tr], image_size),
        train_y=y[tr],
        test_x=_resize(x[te], image_size),
        test_y=y[te],
        classes=[str(c) for c in range(10)],
    )


def read_idx(path: str | Path) -> np.ndarray:
    """Parses one IDX file (gzip-compressed or not, detected from its first bytes).

    Args:
        path: the file.

    Returns:
        The array with the dims and dtype the header declares.

    Raises:
        DatasetError: if the file is missing, unreadable, or its header or length is wrong.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path} looks gzip-compressed but does not decompress: {exc}") from None
    if len(raw) < 4:
        raise DatasetError(
            f"{path} is not an IDX file: {len(raw)} bytes, shorter than the 4-byte magic number"
        )
    zero, type_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or type_code not in _IDX_TYPES or ndim == 0:
        raise DatasetError(
            f"{path} is not an IDX file: magic number {raw[:4].hex()} (expected 0000 then a type code "
            f"in {sorted(hex(c) for c in _IDX_TYPES)} and a non-zero number of dims, "
            "e.g. 00000803 for images)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dims need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype, itemsize = _IDX_TYPES[type_code]
    expected = math.prod(dims) * itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: IDX header declares dims {list(dims)} ({expected} data bytes) "
            f"but the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DatasetError(f"Fashion-MNIST file {stem}(.gz) not found in {directory}")


def load_fashion_mnist(data_dir: str | Path | None = None, image_size: int | None = None) -> ImageData:
    """Fashion-MNIST from its four IDX files (``train-images-idx3-ubyte(.gz)`` and so on).

    Args:
        data_dir: the folder holding the four files; None uses Debian's
            ``dataset-fashion-mnist`` location ``/usr/share/datasets/fashion-mnist``.
        image_size: side length to resize to; None keeps 28x28.

    Raises:
        DatasetError: if the folder or a file is missing or malformed.
    """
    directory = Path(data_dir) if data_dir is not None else DEFAULT_FASHION_DIR
    if directory.exists() and not directory.is_dir():
        raise DatasetError(
            f"--data-dir {directory} is a file; expected the folder holding the four IDX files"
        )
    if not directory.is_dir():
        raise DatasetError(
            f"Fashion-MNIST folder {directory} does not exist; expected the four IDX files "
            f"{', '.join(_FASHION_FILES.values())} (optionally .gz) there: install Debian's "
            "dataset-fashion-mnist or pass --data-dir"
        )
    arrays = {key: read_idx(_find_idx(directory, stem)) for key, stem in _FASHION_FILES.items()}
    for split in ("train", "test"):
        pixels, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if pixels.ndim != 3:
            raise DatasetError(
                f"{split} images in {directory}: expected 3 dims (N, H, W), got {pixels.shape}"
            )
        if labels.ndim != 1:
            raise DatasetError(f"{split} labels in {directory}: expected 1 dim (N,), got {labels.shape}")
        if len(pixels) != len(labels):
            raise DatasetError(f"{split} split in {directory}: {len(pixels)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise DatasetError(f"{split} labels in {directory}: expected classes 0..9")
        if len(labels) == 0 or 0 in pixels.shape[1:]:
            raise DatasetError(
                f"{split} split in {directory} holds no images (IDX dims {list(pixels.shape)}): "
                "nothing to train or test on"
            )
    train_hw, test_hw = arrays["train_images"].shape[1:], arrays["test_images"].shape[1:]
    if train_hw != test_hw:
        raise DatasetError(
            f"Fashion-MNIST in {directory}: test images are {test_hw[0]}x{test_hw[1]} but training images "
            f"are {train_hw[0]}x{train_hw[1]}; the two splits must come from the same dataset"
        )

    def images(key: str) -> Tensor:
        arr = arrays[key].astype(np.float32)
        scale = 255.0 if arrays[key].dtype.kind in "ui" else 1.0
        return _resize(torch.from_numpy(arr / scale).unsqueeze(1), image_size)

    return ImageData(
        name="fashion-mnist",
        train_x=images("train_images"),
        train_y=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_x=images("test_images"),
        test_y=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        classes=[
            "T-shirt",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Boot",
        ],
    )


def _read_image(path: Path, size: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DatasetError(f"--dataset folder needs Pillow (installed with matplotlib); {LAB_HINT}") from exc
    try:
        with Image.open(path) as img:
            gray = img.convert("L").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(gray, dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None


def _list_folder(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise DatasetError(f"cannot list image folder {folder}: {exc.strerror or exc}") from None


def _read_class_tree(
    root: Path, size: int, classes: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    found = [p.name for p in _list_folder(root) if p.is_dir() and not p.name.startswith(".")]
    if classes is not None and set(found) - set(classes):
        extra = sorted(set(found) - set(classes))
        raise DatasetError(
            f"image folder {root}: class folder(s) {extra} have no counterpart in the training tree "
            f"(classes {classes})"
        )
    classes = found if classes is None else classes
    if len(classes) < 2:
        raise DatasetError(
            f"image folder {root}: expected one subfolder per class (at least 2), found {len(found)}"
        )
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = root / name
        files = (
            [p for p in _list_folder(folder) if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()]
            if folder.is_dir()
            else []
        )
        if not files:
            raise DatasetError(
                f"image folder {root}: class folder {name!r} holds no images "
                f"(expected files ending in {', '.join(sorted(_IMAGE_SUFFIXES))})"
            )
        images.extend(_read_image(f, size) for f in files)
        labels.extend([label] * len(files))
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def load_folder(
    data_dir: str | Path | None, image_size: int | None = 32, seed: int = 0, test_fraction: float = 0.2
) -> ImageData:
    """An image-folder tree: ``ROOT/<class>/<image>``, or ``ROOT/train/<class>/...`` plus ``ROOT/test/...``.

    Images are converted to grayscale and resized to ``image_size`` squared. Without
    ``train``/``test`` subfolders, a seeded per-class split holds out ``test_fraction``.

    Raises:
        DatasetError: if the folder is missing, has fewer than two classes, a class with fewer than two
            images for the automatic split, a test class absent from the training tree, or an
            unreadable image.
    """
    if data_dir is None:
        raise DatasetError("--dataset folder needs --data-dir PATH (one subfolder of images per class)")
    root = Path(data_dir)
    size = 32 if image_size is None else image_size
    if root.exists() and not root.is_dir():
        raise DatasetError(
            f"--data-dir {root} is a file; expected a folder with one subfolder of images per class"
        )
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist (expected one subfolder of images per class)")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_x, train_y, classes = _read_class_tree(root / "train", size)
        test_x, test_y, _ = _read_class_tree(root / "test", size, classes)
    else:
        x, y, classes = _read_class_tree(root, size)
        counts = np.bincount(y, minlength=len(classes))
        if counts.min() < 2:
            few = [f"{classes[i]!r} ({counts[i]})" for i in np.flatnonzero(counts < 2)]
            raise DatasetError(
                f"image folder {root}: the train/test split needs at least 2 images per class (one to train, "
                f"one to test); too few in {', '.join(few)}"
            )
        train_idx, test_idx = _stratified_split(y, test_fraction, seed)
        train_x, train_y, test_x, test_y = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    return ImageData(
        name=f"folder:{root.name}",
        train_x=torch.from_numpy(train_x).unsqueeze(1),
        train_y=torch.from_numpy(train_y),
        test_x=torch.from_numpy(test_x).unsqueeze(1),
        test_y=torch.from_numpy(test_y),
        classes=classes,
    )


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    image_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> ImageData:
    """Loads ``digits``, ``fashion-mnist`` or ``folder`` and optionally subsamples the training set.

    Args:
        name: the dataset.
        data_dir: folder for ``fashion-mnist`` (optional) or ``folder`` (required).
        image_size: side length; None means the dataset's default (digits 16, fashion-mnist 28, folder 32).
        seed: seed of splits and of the ``limit`` subsample.
        limit: keep a seeded random subset of this many training images.

    Raises:
        DatasetError: for an unknown name, a missing or malformed dataset, or one that cannot give a
            result: no training or test images, test images of another size than the training
            images, or a class without training images (e.g. after ``limit``).
    """
    if name == "digits":
        data = load_digits(16 if image_size is None else image_size, seed=seed)
    elif name == "fashion-mnist":
        data = load_fashion_mnist(data_dir, image_size)
    elif name == "folder":
        data = load_folder(data_dir, image_size, seed=seed)
    else:
        raise DatasetError(f"unknown dataset {name!r}; expected digits, fashion-mnist or folder")
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"--limit must be positive, got {limit}")
        if limit < len(data.train_y):
            gen = torch.Generator().manual_seed(seed)
            keep = torch.randperm(len(data.train_y), generator=gen)[:limit]
            data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
    check_usable(data, limit)
    return data


def check_usable(data: ImageData, limit: int | None = None) -> None:
    """Refuses a dataset that cannot give a meaningful accuracy.

    Args:
        data: the loaded split.
        limit: the ``--limit`` that subsampled the training set, for the message.

    Raises:
        DatasetError: if either split is empty, the splits' image sizes differ, or a class has no
            training image.
    """
    for split, x, y in (("training", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        if len(y) == 0 or x.numel() == 0:
            raise DatasetError(f"{data.name}: the {split} split holds no images (shape {tuple(x.shape)})")
        if len(x) != len(y):
            raise DatasetError(f"{data.name}: the {split} split has {len(x)} images but {len(y)} labels")
    if data.train_x.shape[1:] != data.test_x.shape[1:]:
        train_hw, test_hw = tuple(data.train_x.shape[-2:]), tuple(data.test_x.shape[-2:])
        raise DatasetError(
            f"{data.name}: test images are {test_hw[0]}x{test_hw[1]} but training images "
            f"{train_hw[0]}x{train_hw[1]}"
        )
    present = torch.bincount(data.train_y, minlength=data.num_classes)
    if bool((present == 0).any()):
        missing = [data.classes[i] for i in torch.nonzero(present == 0).flatten().tolist()]
        cause = f" after --limit {limit}" if limit is not None else ""
        hint = "; use a larger --limit" if limit is not None else ""
        raise DatasetError(
            f"{data.name}: no training image of class(es) {missing}{cause}: the model could never "
            f"predict them{hint}"
        )
