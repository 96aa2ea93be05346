"""Image file reading: bytes -> uint8 RGB tensor [3, H, W], with errors that name the file.

torchvision's libjpeg-turbo decoder (``torchvision.io.decode_image``) is used when it is available: it decodes a
VOC-sized JPEG to a tensor faster than PIL plus the conversion does. torchvision 0.29
deprecates its image codecs (in favour of TorchCodec); when they are gone, or for a format they do not read,
PIL takes over, so nothing breaks.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image

from frcnn.data.errors import DataError

try:  # torchvision >= 0.19 has decode_image(..., mode=ImageReadMode.RGB)
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_image as _tv_decode_image

    _RGB = ImageReadMode.RGB
except (ImportError, AttributeError):  # pragma: no cover - codecs removed from torchvision
    _tv_decode_image = None
    _RGB = None


def _decode_torchvision(data: bytes) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "decoding capabilities ... are deprecated"
        return _tv_decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=_RGB)


def _decode_pil(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # raises on truncated files
        array = np.array(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_image(path) -> torch.Tensor:
    """Decode the image file at ``path`` to a uint8 RGB tensor [3, H, W] (EXIF orientation is not applied:
    VOC and COCO boxes are given in the stored pixel grid). Raises :class:`DataError` naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e.strerror or e}") from e
    if not data:
        raise DataError(f"cannot decode image {path}: the file is empty")
    tv_error = None
    if _tv_decode_image is not None:
        try:
            return _decode_torchvision(data)
        except (RuntimeError, ValueError) as e:  # corrupt, or a format torchvision does not read: try PIL
            tv_error = str(e).split(", ")[-1] if e.args else repr(e)
    try:
        return _decode_pil(data)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... depending on the format
        detail = f"{type(e).__name__}: {e}"
        if tv_error:
            detail = f"{tv_error} (PIL: {detail})"
        raise DataError(f"cannot decode image {path}: {detail}") from e


def read_image_size(path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels. Raises :class:`DataError` naming the file."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError as e:
        raise DataError(f"image not found: {path}") from e
    except Exception as e:
        raise DataError(f"cannot read the size of image {path}: {type(e).__name__}: {e}") from e
    return int(height), int(width)
