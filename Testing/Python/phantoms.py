"""Synthetic 'real-looking' test volumes with known geometry (shared by the engine tests)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def rotation(angles: tuple[float, float, float]) -> np.ndarray:
    """Rz @ Ry @ Rx for angles (radians)."""
    a, b, g = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_grid(size=(40, 40, 40), spacing=(2.0, 2.0, 2.0), origin=None, direction=None) -> sitk.Image:
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing([float(s) for s in spacing])
    direction = np.eye(3) if direction is None else np.asarray(direction)
    image.SetDirection(direction.ravel().tolist())
    if origin is None:  # centre the grid on the world origin
        extent = (np.array(size) - 1) * np.array(spacing)
        origin = -direction @ (extent / 2.0)
    image.SetOrigin([float(v) for v in origin])
    return image


def phantom_function(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """A smooth, asymmetric head-like object: an ellipsoid with inner blobs (world mm)."""
    rng = np.random.default_rng(seed)
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    body = 1.0 / (1.0 + np.exp(((x / 30) ** 2 + (y / 24) ** 2 + (z / 20) ** 2 - 1.0) * 12))
    value = 0.4 * body
    for _ in range(9):
        c = rng.uniform(-15, 15, 3) * np.array([1.4, 1.1, 0.9])
        s = rng.uniform(3.5, 7.0)
        value += rng.uniform(0.2, 0.6) * np.exp(-((points - c) ** 2).sum(1) / (2 * s * s)) * body
    return value.astype(np.float32)


def sample_phantom(reference: sitk.Image, world_map=None, seed: int = 0) -> sitk.Image:
    """The phantom sampled on ``reference``'s grid, optionally through ``world_map``:
    image(x) = phantom(world_map(x))."""
    size = reference.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3)
    matrix = np.array(reference.GetDirection()).reshape(3, 3) @ np.diag(reference.GetSpacing())
    points = index @ matrix.T + np.array(reference.GetOrigin())
    if world_map is not None:
        points = world_map(points)
    values = phantom_function(points, seed).reshape(size[0], size[1], size[2]).transpose(2, 1, 0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(values))
    image.CopyInformation(reference)
    return image
