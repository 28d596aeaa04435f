"""Fast bilateral filter (the BL of the paper's encodings) in torch, CPU and CUDA.

Algorithm: range-lattice decomposition of the bilateral grid (Durand and Dorsey 2002; Paris
and Durand 2006; the "subsampled" filter of Banterle et al. 2012 that the paper's authors used is
of the same family). For range levels ``r_k`` spaced ``range_rate * sigma_r`` apart:

1. splat: at full resolution, ``W_k = G_r(I - r_k)`` (exact Gaussian range weight) and
   ``J_k = W_k * value``, area-downsampled by ``s = spatial_rate * sigma_s`` pixels;
2. blur: a Gaussian blur of the small ``(J_k, W_k)`` grids, its sigma chosen so that box
   downsampling + blur + bilinear upsampling add up to a Gaussian of ``sigma_s`` pixels;
3. slice: every pixel reads ``J / W`` with bilinear interpolation in space and linear
   interpolation in range between the two levels around its own value.

Cost: O(levels) cheap operations per pixel, independent of ``sigma_s`` (a brute-force window
is O(sigma_s^2)). Pixels outside the image contribute nothing (the kernel is renormalised at the
border, like the brute-force reference :func:`reference_bilateral_filter`).

Per-channel mode (the default, as the paper's tool) filters every channel with itself as the
guide; joint mode uses the colour distance over all channels as the range term (a 3-D lattice).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, overload

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import BilateralParams

Mode = Literal["per_channel", "joint"]
MODES: tuple[str, ...] = ("per_channel", "joint")

# Sampling rates (grid cell = rate * sigma). Measured on 5 photos at 192 px against the
# brute-force filter (sigma_s 3% of the side, sigma_r 0.4 and 0.1, both modes): range rate 1.0
# gives 45-61 dB, 0.5 gives 56-71 dB for ~1.5x the time; spatial rate 1.0 instead of 0.5 loses
# 1-4 dB for no speed gain (full-resolution work does not depend on it).
SPATIAL_RATE = 0.5
RANGE_RATE = 1.0
# Input elements filtered per chunk: bounds the temporary memory of big photos (~10 planes
# of a chunk's size).
_CHUNK_ELEMENTS = 1 << 24


def sigma_s_for(side: int, fraction: float = 0.03) -> float:
    """Spatial sigma in pixels for an image whose larger side is ``side`` (paper: 3%, 16 px at 512)."""
    if side <= 0 or fraction <= 0:
        raise ValueError(
            f"side and fraction must be positive (got side={side}, fraction={fraction})"
        )
    return float(side) * float(fraction)


def make_blur(settings: BilateralParams, side: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The BL of the encodings for ``side``-pixel images (the one builder of BL: evaluation,
    enhance), from the ``bilateral`` params group or a model file's copy of it."""
    sigma_s = sigma_s_for(side, settings.sigma_s_fraction)

    def blur(image: torch.Tensor) -> torch.Tensor:
        return bilateral_filter(image, sigma_s, settings.sigma_r, settings.mode)

    return blur


@overload
def bilateral_filter(
    image: np.ndarray,
    sigma_s: float,
    sigma_r: float,
    mode: Mode = ...,
    *,
    spatial_rate: float = ...,
    range_rate: float = ...,
) -> np.ndarray: ...
@overload
def bilateral_filter(
    image: torch.Tensor,
    sigma_s: float,
    sigma_r: float,
    mode: Mode = ...,
    *,
    spatial_rate: float = ...,
    range_rate: float = ...,
) -> torch.Tensor: ...


def bilateral_filter(
    image: np.ndarray | torch.Tensor,
    sigma_s: float,
    sigma_r: float,
    mode: Mode = "per_channel",
    *,
    spatial_rate: float = SPATIAL_RATE,
    range_rate: float = RANGE_RATE,
) -> np.ndarray | torch.Tensor:
    """Edge-preserving bilateral filter with a Gaussian spatial and range kernel.

    ``image``: numpy HxWxC (or HxW) float array, or a torch tensor (N, C, H, W) or (C, H, W) on
    any device; values are nominally in [0, 1] but any range works. ``sigma_s`` is in pixels,
    ``sigma_r`` in image value units. The result has the input's type and shape (numpy ->
    float32 numpy; torch -> torch on the same device, in the input dtype; half and bfloat16
    inputs are filtered in float32). Not differentiable: it is a preprocessing operation.
    ``spatial_rate`` and ``range_rate`` set the lattice cell in sigmas (smaller = closer to
    the brute-force filter, slower).
    """
    if mode not in MODES:
        raise ValueError(f"bilateral mode must be one of {MODES}, got {mode!r}")
    if not (sigma_s > 0 and sigma_r > 0):
        raise ValueError(f"sigma_s and sigma_r must be positive (got {sigma_s}, {sigma_r})")
    if not (0 < spatial_rate <= 2 and 0 < range_rate <= 2):
        raise ValueError(f"sampling rates must be in (0, 2] (got {spatial_rate}, {range_rate})")
    rates = (spatial_rate, range_rate)
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise ValueError(f"numpy image must be HxW or HxWxC, got shape {image.shape}")
        array = image[..., None] if image.ndim == 2 else image
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        out = _filter(tensor.permute(2, 0, 1)[None], sigma_s, sigma_r, mode, rates)
        result = out[0].permute(1, 2, 0).numpy()
        return np.ascontiguousarray(result[..., 0] if image.ndim == 2 else result)
    if isinstance(image, torch.Tensor):
        if image.ndim == 3:
            return bilateral_filter(
                image[None],
                sigma_s,
                sigma_r,
                mode,
                spatial_rate=spatial_rate,
                range_rate=range_rate,
            )[0]
        if image.ndim != 4:
            raise ValueError(
                f"torch image must be (N, C, H, W) or (C, H, W), got {tuple(image.shape)}"
            )
        out = _filter(image, sigma_s, sigma_r, mode, rates)
        return out.to(image.dtype) if image.dtype.is_floating_point else out
    raise TypeError(
        f"bilateral_filter takes a numpy array or torch tensor, got {type(image).__name__}"
    )


@torch.no_grad()
def _filter(
    image: torch.Tensor, sigma_s: float, sigma_r: float, mode: str, rates: tuple[float, float]
) -> torch.Tensor:
    x = image.float()
    n, c, h, w = x.shape
    if x.numel() == 0:
        return x.clone()
    if mode == "per_channel" or c == 1:
        # Each channel is its own guide: a batch of N*C one-channel images.
        planes = x.reshape(n * c, 1, h, w)
        return _lattice_filter(planes, sigma_s, sigma_r, rates).reshape(n, c, h, w)
    return _lattice_filter(x, sigma_s, sigma_r, rates)


def _blur_matrix(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """(size, size) matrix of a 1-D Gaussian blur with zero padding (nothing outside the image).

    The grids are small (tens of cells a side), so the separable blur is two tiny matrix
    products: much faster than a one-channel convolution on CPU.
    """
    index = torch.arange(size, device=device, dtype=torch.float32)
    offsets = index[:, None] - index[None, :]
    radius = max(1, math.ceil(3.0 * sigma))
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2) * (offsets.abs() <= radius)
    # Normalised by the full kernel's sum: the weights that fall outside the image are lost,
    # as the brute-force filter's (the output divides J by W, which renormalises).
    full = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    return kernel / torch.exp(-0.5 * (full / sigma) ** 2).sum()


def _blur_grid(grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of the last two dimensions of a grid, zero padded."""
    if sigma < 0.05:
        return grid
    gh, gw = grid.shape[-2:]
    if max(gh, gw) <= 256:
        rows = _blur_matrix(gh, sigma, grid.device)
        cols = _blur_matrix(gw, sigma, grid.device)
        return rows @ grid @ cols.T
    # Big grids (tiny sigma_s on a big image): a convolution costs less than a dense matrix.
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=grid.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    flat = grid.reshape(-1, 1, gh, gw)
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1), padding=(0, radius))
    return flat.reshape(grid.shape)


def _lattice_filter(
    x: torch.Tensor, sigma_s: float, sigma_r: float, rates: tuple[float, float]
) -> torch.Tensor:
    """Bilateral filter of (B, C, H, W) values guided by their own C channels (C = 1 or 3)."""
    b, c, h, w = x.shape
    lo, hi = (float(value) for value in torch.aminmax(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("bilateral_filter: image contains NaN or infinite values")
    # Chunks of whole images bound the temporaries (a 13 MP photo runs one plane at a time).
    # The lattice is anchored at absolute values (level k at k * step), so an image's result
    # does not depend on the other images of its batch or chunk.
    chunk = max(1, _CHUNK_ELEMENTS // (c * h * w))
    parts = [_lattice_chunk(part, sigma_s, sigma_r, *rates) for part in x.split(chunk)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _column_weights(w: int, gw: int, s: int, device: torch.device) -> torch.Tensor:
    """(gw, w) matrix of bilinear upsampling by s along columns (align_corners=False).

    Column positions are clamped to the grid: the edges repeat the first and last columns,
    as ``F.interpolate`` does.
    """
    position = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / s - 0.5
    taps = position.clamp_(0, gw - 1)[None, :] - torch.arange(gw, device=device)[:, None]
    return (1.0 - taps.abs()).clamp_(min=0.0)


def _upsample(grid: torch.Tensor, s: int, cols: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling by an integer factor s of (..., gh, gw) into ``out`` (..., gh*s, w).

    Same values as ``F.interpolate(..., mode="bilinear")``, about three times faster on CPU
    for the large factors used here, and into a reused buffer (fresh multi-megabyte tensors
    cost page faults): columns by a small matrix product, then rows in blocks of s, each
    block a lerp between two grid rows with a weight pattern that depends on the row in the
    block only (row i*s + m lies between grid rows i-1 and i for m < s//2, else i and i+1).
    """
    gh = grid.shape[-2]
    wide = grid @ cols  # (..., gh, w)
    half = s // 2
    offsets = (torch.arange(s, device=grid.device, dtype=grid.dtype) + 0.5) / s
    padded = torch.cat([wide[..., :1, :], wide, wide[..., -1:, :]], dim=-2)
    delta = padded[..., 1:, :] - padded[..., :-1, :]
    blocks = out.view(*out.shape[:-2], gh, s, out.shape[-1])
    torch.addcmul(
        padded[..., :-2, None, :],
        delta[..., :-1, None, :],
        (offsets[:half] + 0.5)[:, None],
        out=blocks[..., :half, :],
    )
    torch.addcmul(
        padded[..., 1:-1, None, :],
        delta[..., 1:, None, :],
        (offsets[half:] - 0.5)[:, None],
        out=blocks[..., half:, :],
    )
    return out


def _tent(
    v: torch.Tensor, point: tuple[int, ...], out: torch.Tensor, tmp: torch.Tensor
) -> torch.Tensor:
    """Product over range dimensions of max(0, 1 - |v_d - point_d|), into ``out``."""
    torch.sub(v[:1], point[0], out=out)
    out.abs_().neg_().add_(1.0).clamp_(min=0.0)
    for d in range(1, len(point)):
        torch.sub(v[d : d + 1], point[d], out=tmp)
        out.mul_(tmp.abs_().neg_().add_(1.0).clamp_(min=0.0))
    return out


def _lattice_chunk(
    x: torch.Tensor, sigma_s: float, sigma_r: float, spatial_rate: float, range_rate: float
) -> torch.Tensor:
    b, c, h, w = x.shape
    step = range_rate * sigma_r
    lo, hi = (float(value) for value in torch.aminmax(x))
    base = math.floor(lo / step)
    count = max(2, math.ceil(hi / step) - base + 1)
    # Channel-first layout (C, B, H, W): every per-channel plane below is contiguous.
    xt = x.transpose(0, 1).contiguous()
    v = (xt / step).sub_(base)  # continuous level index in [0, count - 1] per range dimension
    points = _needed_points(v, count)

    s = max(1, int(spatial_rate * sigma_s))
    gh, gw = -(-h // s), -(-w // s)
    # Box downsampling (variance ~ s^2/12) and bilinear upsampling (~ s^2/6) already blur:
    # the grid blur supplies the rest of sigma_s^2.
    grid_sigma = math.sqrt(max(sigma_s**2 - s**2 / 4.0, 0.0)) / s if s > 1 else sigma_s
    # Scaled values: the range weight of a lattice point l is 2^-|xs - l|^2 (exp2 is about
    # five times faster than exp on CPU).
    scale = math.sqrt(math.log2(math.e)) / (math.sqrt(2.0) * sigma_r)
    xs = xt * scale
    pool = {"kernel_size": s, "stride": s, "ceil_mode": True, "divisor_override": s * s}
    # Full-resolution buffers reused across lattice points.
    splat = x.new_empty((c + 1, b, h, w))  # (value * weight, weight)
    plane = x.new_empty((1, b, h, w))
    plane2 = x.new_empty((1, b, h, w)) if c > 1 else plane

    # Splat: the exact Gaussian range weight of every pixel for every lattice point, then
    # (value * weight, weight) box-downsampled.
    grid = x.new_empty((len(points), c + 1, b, gh, gw))
    weight = splat[c:]
    for index, point in enumerate(points):
        torch.sub(xs[:1], (base + point[0]) * step * scale, out=weight)
        weight.square_()
        for d in range(1, c):
            torch.sub(xs[d : d + 1], (base + point[d]) * step * scale, out=plane)
            weight.add_(plane.square_())
        weight.neg_().exp2_()
        torch.mul(xt, weight, out=splat[:c])
        grid[index] = F.avg_pool2d(splat, **pool) if s > 1 else splat
    grid = _blur_grid(grid, grid_sigma)

    # Normalise on the grid (J / W per lattice point), then slice the ratio: bilinear in
    # space, (multi)linear in range between the lattice points around the pixel's value (the
    # tents sum to 1). Slicing one ratio instead of J and W apart halves the full-resolution
    # work, at the same accuracy (measured). A cell that no pixel reaches (W underflow, tiny
    # sigma_r) takes the lattice point's own value, so a neighbour reading it is not pulled
    # to 0.
    numer, denom = grid[:, :c], grid[:, c:]
    levels = torch.tensor(points, device=x.device, dtype=x.dtype).add_(base).mul_(step)
    ratio = torch.where(denom > 1e-30, numer / denom.clamp(min=1e-30), levels.view(-1, c, 1, 1, 1))
    cols = _column_weights(w, gw, s, x.device) if s > 1 else None
    cell_buffer = x.new_empty((c, b, gh * s, w)) if s > 1 else None
    out = x.new_empty((c, b, h, w))
    for index, point in enumerate(points):
        tent = _tent(v, point, plane, plane2)
        if s > 1:
            cell = _upsample(ratio[index], s, cols, cell_buffer)[..., :h, :]
        else:
            cell = ratio[index]
        if index == 0:
            torch.mul(tent, cell, out=out)
        else:
            out.addcmul_(tent, cell)
    return out.transpose(0, 1)


def _needed_points(v: torch.Tensor, count: int) -> list[tuple[int, ...]]:
    """Lattice points that are corners of a cell holding a pixel (the others get no weight).

    ``v``: (dims, ...) level coordinates. One channel: every level from the lowest to the
    highest value. Colour: natural images fill a small part of the colour cube, so most of
    the count**dims points are skipped.
    """
    dims = v.shape[0]
    if dims == 1:
        return [(k,) for k in range(count)]
    cells = v.floor().clamp_(0, count - 2).long()
    flat = torch.zeros_like(cells[0])
    for d in range(dims):
        flat = flat * (count - 1) + cells[d]
    occupied = torch.bincount(flat.flatten(), minlength=(count - 1) ** dims) > 0
    occupied = occupied.reshape((count - 1,) * dims).cpu().numpy()
    needed = np.zeros((count,) * dims, dtype=bool)
    for corner in np.ndindex(*([2] * dims)):
        needed[tuple(slice(k, k + count - 1) for k in corner)] |= occupied
    return [tuple(int(k) for k in point) for point in np.argwhere(needed)]


def reference_bilateral_filter(
    image: np.ndarray,
    sigma_s: float,
    sigma_r: float,
    mode: Mode = "per_channel",
    radius: int | None = None,
) -> np.ndarray:
    """Brute-force bilateral filter (for tests and benchmarks; O(radius^2) per pixel).

    Gaussian spatial kernel truncated to a disc of ``radius`` pixels (default 3 sigma_s) and
    Gaussian range kernel, normalised over the pixels inside the image; HxWxC float in, float32
    out. Vectorised over the window offsets with numpy (float64 accumulation).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[..., None]
    radius = int(math.ceil(3 * sigma_s)) if radius is None else int(radius)
    h, w, c = img.shape
    numer = np.zeros_like(img)
    denom = np.zeros((h, w, c if mode == "per_channel" else 1))
    inv_two_var_s = 1.0 / (2.0 * sigma_s**2)
    inv_two_var_r = 1.0 / (2.0 * sigma_r**2)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx > radius * radius:
                continue
            # Output pixels whose neighbour (y+dy, x+dx) lies inside the image.
            y0, y1 = max(0, -dy), min(h, h - dy)
            x0, x1 = max(0, -dx), min(w, w - dx)
            if y0 >= y1 or x0 >= x1:
                continue
            centre = img[y0:y1, x0:x1]
            neighbour = img[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
            diff2 = (neighbour - centre) ** 2
            if mode != "per_channel":
                diff2 = diff2.sum(axis=2, keepdims=True)
            weight = np.exp(-(dy * dy + dx * dx) * inv_two_var_s - diff2 * inv_two_var_r)
            numer[y0:y1, x0:x1] += weight * neighbour
            denom[y0:y1, x0:x1] += weight
    out = (numer / denom).astype(np.float32)
    return out[..., 0] if np.ndim(image) == 2 else out
