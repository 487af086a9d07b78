"""The pieces of a SimpleITK transform: one definition of a (nested) composite's leaves.

Example:
    >>> import SimpleITK as sitk
    >>> inner = sitk.CompositeTransform([sitk.Euler3DTransform(), sitk.TranslationTransform(3)])
    >>> [piece.GetName() for piece in leaves(sitk.CompositeTransform([inner, sitk.AffineTransform(3)]))]
    ['Euler3DTransform', 'TranslationTransform', 'AffineTransform']
"""

from __future__ import annotations

import SimpleITK as sitk


def leaves(transform: sitk.Transform) -> list[sitk.Transform]:
    """The pieces of a (possibly nested) composite in storage order, downcast; or ``[transform]``."""
    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        found: list[sitk.Transform] = []
        for n in range(composite.GetNumberOfTransforms()):
            found.extend(leaves(composite.GetNthTransform(n)))
        return found
    try:
        return [transform.Downcast()]
    except (AttributeError, RuntimeError):
        return [transform]
