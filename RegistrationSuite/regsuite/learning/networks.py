"""Registration networks: VoxelMorph's U-Net and HyperMorph's lambda-conditioned U-Net.

Both map a fixed and a moving image on the same canonical grid, tensor ``(N, 2, D, H, W)``, to
a stationary velocity field ``(N, 3, d, h, w)`` in voxels of the velocity grid along its
index axes (i, j, k), VoxelMorph's unit,
at full or half the input resolution (``velocity_level`` 0 or 1, as VoxelMorph's
``int_downsize``). Integration (scaling and squaring) and warping are the engine's
(:class:`regsuite.engine.transforms.dense.VelocityField`), see :mod:`regsuite.learning.field`.

HyperMorph here conditions the U-Net by per-layer modulation: a small hypernetwork maps
lambda to a scale and shift for every channel of every convolution (feature-wise modulation,
the approach of conditional LapIRN), instead of generating every weight. The modulation costs
a few thousand parameters, keeps the convolution weights shared across lambda (which is what
lets the model be warm-started from a trained VoxelMorph network) and starts as the identity.

Example:
    >>> import torch
    >>> net = VoxelMorphUNet(width=0.25)
    >>> pair = torch.zeros(1, 2, 32, 32, 32)
    >>> tuple(net(pair).shape)
    (1, 3, 16, 16, 16)
    >>> hyper = HyperMorphUNet(width=0.25)
    >>> tuple(hyper(pair, torch.tensor([0.3])).shape)
    (1, 3, 16, 16, 16)
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: VoxelMorph's default feature counts (encoder, decoder) at width 1.
ENCODER = (16, 32, 32, 32)
DECODER = (32, 32, 32, 32, 32, 16, 16)


def _scaled(features: Sequence[int], width: float) -> list[int]:
    return [max(4, int(round(f * width))) for f in features]


class ConvBlock(nn.Module):
    """3x3x3 convolution, optional instance normalisation, optional modulation
    ``x * (1 + scale) + shift``, LeakyReLU(0.2)."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1, norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels_in, channels_out, 3, stride=stride, padding=1)
        self.norm = nn.InstanceNorm3d(channels_out, affine=True) if norm else None
        self.channels = channels_out

    def forward(self, x: torch.Tensor, modulation: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if modulation is not None:
            scale, shift = modulation[:, : self.channels], modulation[:, self.channels:]
            x = x * (1.0 + scale[:, :, None, None, None]) + shift[:, :, None, None, None]
        return F.leaky_relu(x, 0.2)


class VoxelMorphUNet(nn.Module):
    """VoxelMorph's U-Net: strided-convolution encoder, decoder with skip connections, then a
    velocity head initialised near zero (normal, std 1e-5) so training starts at identity.

    ``width`` scales every feature count (0.5: the half-width network, about 76 k parameters
    with the full decoder). ``velocity_level`` 1 stops the decoder at half resolution, which
    removes the costly full-resolution convolutions; the field is upsampled after integration.
    """

    def __init__(self, width: float = 0.5, velocity_level: int = 1, encoder: Sequence[int] = ENCODER,
                 decoder: Sequence[int] = DECODER, norm: bool = False) -> None:
        super().__init__()
        if velocity_level not in (0, 1):
            raise ValueError("velocity_level must be 0 (full resolution) or 1 (half)")
        self.config: dict[str, Any] = {"width": float(width), "velocity_level": int(velocity_level),
                                       "encoder": list(encoder), "decoder": list(decoder), "norm": bool(norm)}
        enc, dec = _scaled(encoder, width), _scaled(decoder, width)
        self.velocity_level = velocity_level
        levels = len(enc)
        self.encoder = nn.ModuleList()
        channels, skips = 2, []
        for index, features in enumerate(enc):
            # the first block keeps full resolution; each further one halves it
            self.encoder.append(ConvBlock(channels, features, stride=1 if index == 0 else 2, norm=norm))
            skips.append(features)
            channels = features
        self.bottom = ConvBlock(channels, enc[-1], stride=2, norm=norm)
        channels = enc[-1]
        # decoder: one block per encoder level going up (skip from that level), stopping at
        # the velocity level, then the remaining decoder features as plain blocks
        self.decoder = nn.ModuleList()
        up_levels = levels - velocity_level
        for step in range(up_levels):
            skip = skips[levels - 1 - step]
            self.decoder.append(ConvBlock(channels + skip, dec[step], norm=norm))
            channels = dec[step]
        self.extra = nn.ModuleList()
        for features in dec[levels:]:
            self.extra.append(ConvBlock(channels, features, norm=norm))
            channels = features
        self.head = nn.Conv3d(channels, 3, 3, padding=1)
        nn.init.normal_(self.head.weight, 0.0, 1e-5)
        nn.init.zeros_(self.head.bias)

    def load_half_resolution(self, state: dict[str, torch.Tensor]) -> None:
        """Warm start a full-resolution network (``velocity_level`` 0) from the weights of a
        half-resolution one of the same features (``velocity_level`` 1).

        Every block they share is copied. The one decoder block the half-resolution network
        lacks starts as a pass-through of its upsampled input (centre tap 1, the skip's weights
        0), and the head's weights are doubled: one velocity voxel of the half grid is two of
        the full grid. Before training the network thus predicts about the upsampled velocity
        of the network it came from (the instance normalisation of the new block is the
        difference), and training refines it from there.

        Example:
            >>> coarse, fine = VoxelMorphUNet(0.25, 1), VoxelMorphUNet(0.25, 0)
            >>> fine.load_half_resolution(coarse.state_dict())
            >>> bool((fine.head.weight == 2 * coarse.head.weight).all())
            True
        """
        if self.velocity_level != 0:
            raise ValueError("only a full-resolution network (velocity_level 0) takes half-resolution weights")
        new, own = len(self.decoder) - 1, self.state_dict()
        missing = {k for k in own if k.startswith(f"decoder.{new}.")}
        if set(state) != set(own) - missing:
            raise ValueError("the weights are not those of this network's half-resolution counterpart")
        for key, value in state.items():
            if own[key].shape != value.shape:
                raise ValueError(f"weights '{key}' have shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
        self.load_state_dict(state, strict=False)
        block = self.decoder[new]
        with torch.no_grad():
            block.conv.weight.zero_()
            block.conv.bias.zero_()
            for channel in range(block.channels):
                block.conv.weight[channel, channel, 1, 1, 1] = 1.0
            self.head.weight.mul_(2.0)
            self.head.bias.mul_(2.0)

    def blocks(self) -> list[ConvBlock]:
        """Every modulated block, in forward order."""
        return [*self.encoder, self.bottom, *self.decoder, *self.extra]

    def forward(self, pair: torch.Tensor, modulations: list[torch.Tensor] | None = None) -> torch.Tensor:
        mods = iter(modulations) if modulations is not None else None
        take = (lambda: next(mods)) if mods is not None else (lambda: None)
        skips = []
        x = pair
        for block in self.encoder:
            x = block(x, take())
            skips.append(x)
        x = self.bottom(x, take())
        for step, block in enumerate(self.decoder):
            skip = skips[len(skips) - 1 - step]
            x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = block(torch.cat([x, skip], dim=1), take())
        for block in self.extra:
            x = block(x, take())
        return self.head(x)


class HyperMorphUNet(nn.Module):
    """A :class:`VoxelMorphUNet` whose every block is modulated by a hypernetwork of lambda.

    The hypernetwork (1 -> 32 -> 64 -> sum of 2 x channels, LeakyReLU) ends in a zero-initialised
    layer, so before training the model is exactly its U-Net for every lambda.
    """

    def __init__(self, width: float = 0.5, velocity_level: int = 1, encoder: Sequence[int] = ENCODER,
                 decoder: Sequence[int] = DECODER, hidden: int = 32, norm: bool = False) -> None:
        super().__init__()
        self.unet = VoxelMorphUNet(width, velocity_level, encoder, decoder, norm)
        self.config = {**self.unet.config, "hidden": int(hidden)}
        self.sizes = [2 * block.channels for block in self.unet.blocks()]
        self.hyper = nn.Sequential(nn.Linear(1, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 2 * hidden),
                                   nn.LeakyReLU(0.2), nn.Linear(2 * hidden, sum(self.sizes)))
        nn.init.zeros_(self.hyper[-1].weight)
        nn.init.zeros_(self.hyper[-1].bias)

    @property
    def velocity_level(self) -> int:
        return self.unet.velocity_level

    def forward(self, pair: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        lam = torch.as_tensor(lam, dtype=pair.dtype, device=pair.device).reshape(-1, 1)
        if lam.shape[0] == 1 and pair.shape[0] > 1:
            lam = lam.expand(pair.shape[0], 1)
        codes = self.hyper(lam)
        return self.unet(pair, list(torch.split(codes, self.sizes, dim=1)))


def _affine_net(**options: Any) -> nn.Module:
    from .affine import AffineNet  # learning/affine.py builds on this module's blocks
    return AffineNet(**options)


def _pyramid_net(**options: Any) -> nn.Module:
    from .pyramid import PyramidNet  # learning/pyramid.py builds on this module's U-Net
    return PyramidNet(**options)


#: architecture name -> network class (``affine``: :class:`~regsuite.learning.affine.AffineNet`,
#: ``pyramid``: :class:`~regsuite.learning.pyramid.PyramidNet`)
ARCHITECTURES = {"voxelmorph": VoxelMorphUNet, "hypermorph": HyperMorphUNet, "affine": _affine_net,
                 "pyramid": _pyramid_net}


def build_network(architecture: str, options: dict[str, Any]) -> nn.Module:
    """A network by architecture name with its ``config`` options (as stored in a model card)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{architecture}'; expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**options)


def parameter_count(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())
