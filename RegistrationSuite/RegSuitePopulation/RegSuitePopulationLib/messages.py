"""The one-line messages and errors of the population workflows.

Errors are the engine's :mod:`regsuite.errors` classes, imported when first needed (loading the
module in Slicer stays light): :func:`input_error` for bad input, :func:`regsuite_errors` for
the module itself. :func:`one_line` turns any exception into one line of text,
:func:`quoted_name` names a node in a message.

Example:
    >>> one_line(ValueError("a\\n   b"))
    'a b'
"""

from __future__ import annotations

from typing import Any

__all__ = ["input_error", "one_line", "quoted_name", "regsuite_errors"]


def regsuite_errors() -> Any:
    """The module :mod:`regsuite.errors` (``InputError``, ``RegSuiteError``, ``RegistrationCancelled``...)."""
    from regsuite import errors  # noqa: PLC0415  (lazy: loading the module stays light)

    return errors


def input_error(message: str) -> Exception:
    return regsuite_errors().InputError(message)


def quoted_name(node: Any) -> str:
    return f"'{node.GetName()}'"


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
