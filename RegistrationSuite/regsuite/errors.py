"""Exceptions raised by RegistrationSuite.

Every message is a single line that names the problem and the offending file or parameter, so
that the command line, the Slicer panel and the Python console can show it as it is.

Example:
    >>> from regsuite.errors import InputError
    >>> try:
    ...     raise InputError("fixed image 'a.nii' is 2D; a 3D image is needed")
    ... except InputError as error:
    ...     print(error)
    fixed image 'a.nii' is 2D; a 3D image is needed
"""

from __future__ import annotations


class RegSuiteError(Exception):
    """Base class of every error RegistrationSuite raises on purpose."""

    exit_code: int = 1


class InputError(RegSuiteError, ValueError):
    """An input image, mask, point set or option is missing, unreadable or inconsistent."""

    exit_code = 2


class PresetError(InputError):
    """A preset name is unknown or a preset file does not parse or validate."""


class TransformFileError(InputError):
    """A transform file is missing, unreadable or of the wrong kind."""


class RegistrationFailed(RegSuiteError):
    """The optimisation diverged or produced a non-finite result."""


class RegistrationCancelled(RegSuiteError):
    """The caller asked the registration to stop (``cancel`` callback returned True)."""


class InputWarning(UserWarning):
    """An input is usable but unlike what a step expects (e.g. a learned model's training images)."""
