"""Augmentation of whole uint8 batches on the training device, different for every image of the batch.

- :func:`pad_crop_flip`: random crop with zero padding and horizontal flip (small inputs, the CIFAR papers).
- :func:`random_resized_crop`: a random box of the image (area fraction and aspect ratio drawn per image, as
  torchvision's ``RandomResizedCrop``) resized to the input size with ``torchvision.ops.roi_align``, then a
  random flip (the ImageNet papers); :func:`centre_crop` for evaluation.

torchvision's transforms draw one set of parameters per call; a batch needs one per image, so the boxes are
drawn here (vectorised) and the resampling is torchvision's batched ``roi_align``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

#: candidate boxes drawn per image before falling back to the centred box (torchvision tries 10 times too)
ATTEMPTS = 10


def pad_crop_flip(x: torch.Tensor, padding: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a uint8 batch, on its device."""
    b, c, h, w = x.shape
    dev = x.device
    if padding:
        xp = F.pad(x, (padding,) * 4)
        oy = torch.randint(0, 2 * padding + 1, (b, 1), device=dev, generator=gen)
        ox = torch.randint(0, 2 * padding + 1, (b, 1), device=dev, generator=gen)
        rows = (oy + torch.arange(h, device=dev)).view(b, 1, h, 1).expand(b, c, h, w + 2 * padding)
        x = xp.gather(2, rows)  # (b, c, h, w + 2p): the crop's rows
        cols = (ox + torch.arange(w, device=dev)).view(b, 1, 1, w).expand(b, c, h, w)
        x = x.gather(3, cols)
    return random_flip(x, gen) if hflip else x


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image of the batch mirrored left-right with probability 1/2."""
    flip = torch.rand(len(x), device=x.device, generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def sample_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                 gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` crop boxes ``(x0, y0, x1, y1)`` (whole pixels, inside the image) drawn as ``RandomResizedCrop`` does.

    Per image: area fraction uniform in ``scale``, aspect ratio log-uniform in ``ratio``; the first of
    :data:`ATTEMPTS` candidates that fits, else the centred box of the whole image with its aspect ratio
    clamped to ``ratio``; then a uniform position.
    """
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, ATTEMPTS, device=device, generator=gen))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, ATTEMPTS, device=device, generator=gen))
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    fits = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
    first = fits.float().argmax(1, keepdim=True)  # the first candidate that fits (0 when none does)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    fw, fh = _fallback_size(height, width, ratio)
    found = fits.any(1)
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    u = torch.rand(n, 2, device=device, generator=gen)
    x0 = torch.where(found, (u[:, 0] * (width - w + 1)).floor(), torch.full_like(w, (width - fw) // 2))
    y0 = torch.where(found, (u[:, 1] * (height - h + 1)).floor(), torch.full_like(h, (height - fh) // 2))
    return torch.stack([x0, y0, x0 + w, y0 + h], 1)


def _fallback_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    aspect = width / height
    if aspect < ratio[0]:
        return width, int(round(width / ratio[0]))
    if aspect > ratio[1]:
        return int(round(height * ratio[1])), height
    return width, height


def resize_boxes(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Box ``i`` of image ``i`` resized to ``size`` x ``size`` (float, 0-255): bilinear, averaged over
    ``ceil(box / size)`` samples a side (``roi_align``'s adaptive sampling), so shrinking is antialiased.

    ``aligned=True``: pixel centres at half-integers, so a box of exactly ``size`` pixels is copied as is.
    """
    rois = torch.cat([torch.arange(len(x), device=x.device, dtype=boxes.dtype).view(-1, 1), boxes], 1)
    return roi_align(x.float(), rois.float(), output_size=(size, size), spatial_scale=1.0, sampling_ratio=0,
                     aligned=True)


def random_resized_crop(x: torch.Tensor, size: int, scale: tuple[float, float], ratio: tuple[float, float],
                        hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """A random box of each image (see :func:`sample_boxes`) resized to ``size``, randomly flipped; float 0-255."""
    boxes = sample_boxes(len(x), x.shape[2], x.shape[3], scale, ratio, gen, x.device)
    out = resize_boxes(x, boxes, size)
    return random_flip(out, gen) if hflip else out


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The centred ``size`` x ``size`` crop (offsets rounded as torchvision's ``CenterCrop``); a view."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]
