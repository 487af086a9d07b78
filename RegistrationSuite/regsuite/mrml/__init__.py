"""MRML bridge: engine images and transforms <-> Slicer nodes.

This package needs only ``vtk`` and the MRML classes (``slicer`` from Slicer or from the
``slicer-core`` wheel); it never imports Qt or ``slicer.app``. Frames are named explicitly:

* the engine and every ITK file work in **LPS** world millimetres;
* the Slicer scene works in **RAS** world millimetres; ``C = diag(-1, -1, 1)`` converts both ways
  (:mod:`regsuite.geometry` defines it, with the helpers every layer uses);
* a registration result maps *fixed* world points to *moving* world points (ITK resampling
  convention) and is stored in a transform node as its transform **from parent**.

Modules: :mod:`.volumes` (volume/label/segmentation nodes <-> SimpleITK images),
:mod:`.transforms` (engine transforms <-> transform nodes), :mod:`.display` (fusion,
checkerboard) and :mod:`.tables` (result tables).
"""

from ..geometry import LPS_FROM_RAS
from .volumes import mask_from_node, sitk_to_volume, volume_to_sitk

__all__ = ["LPS_FROM_RAS", "mask_from_node", "sitk_to_volume", "volume_to_sitk"]
