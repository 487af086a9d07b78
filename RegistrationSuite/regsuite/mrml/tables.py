"""Result tables: rows of plain values <-> ``vtkMRMLTableNode``.

A row is a ``dict`` from column name to value. Columns keep the order in which their names first
appear. A column whose values are all numbers (``int``, ``float``, ``bool``, numpy scalars or
``None``) becomes a ``double`` column (``None`` -> NaN); any other column becomes a ``string``
column (``None`` -> ``""``). Reading gives ``float`` for double columns and ``str`` for string
columns, so a table written and read back compares equal to its rows up to those types.

Example:
    >>> import slicer
    >>> scene = slicer.vtkMRMLScene()
    >>> table = write_table(scene, [{"segment": "liver", "dice": 0.9}], "Overlap")
    >>> read_table(table)
    [{'segment': 'liver', 'dice': 0.9}]
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Mapping

from ..errors import InputError
from .volumes import node_name


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, numbers.Number) and not isinstance(value, complex))


def _columns(rows: list[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        for key in row:
            names.setdefault(str(key), None)
    return list(names)


def _vtk_column(name: str, values: list[Any]) -> Any:
    import vtk  # noqa: PLC0415

    if all(_is_number(value) for value in values):
        column = vtk.vtkDoubleArray()
        for value in values:
            column.InsertNextValue(math.nan if value is None else float(value))
    else:
        column = vtk.vtkStringArray()
        for value in values:
            column.InsertNextValue("" if value is None else str(value))
    column.SetName(name)
    return column


def write_table(scene: Any, rows: Iterable[Mapping[str, Any]], name: str, table: Any = None,
                units: Mapping[str, str] | None = None,
                descriptions: Mapping[str, str] | None = None) -> Any:
    """Put ``rows`` into ``table`` (emptied first) or into a new ``vtkMRMLTableNode`` of ``scene``.

    ``units`` and ``descriptions`` (by column name) become the column unit labels and
    descriptions that Slicer's table view shows. An existing ``table`` keeps its ID and name.
    Raises :class:`InputError` when ``table`` is not a table node.
    """
    rows = [dict(row) for row in rows]
    if table is None:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    elif not table.IsA("vtkMRMLTableNode"):
        raise InputError(f"output table {node_name(table)} is a {table.GetClassName()}, not a table")
    previous = table.StartModify()
    try:
        table.RemoveAllColumns()
        data = table.GetTable()
        for column_name in _columns(rows):
            data.AddColumn(_vtk_column(column_name, [row.get(column_name) for row in rows]))
        for column_name, unit in (units or {}).items():
            table.SetColumnUnitLabel(column_name, unit)
        for column_name, text in (descriptions or {}).items():
            table.SetColumnDescription(column_name, text)
        table.Modified()
    finally:
        table.EndModify(previous)
    return table


def read_table(table: Any) -> list[dict[str, Any]]:
    """The rows of a table node as dicts: ``float`` for numeric columns, ``str`` otherwise."""
    if table is None or not table.IsA("vtkMRMLTableNode"):
        raise InputError(f"{node_name(table)} is not a table node")
    data = table.GetTable()
    columns = [data.GetColumn(index) for index in range(data.GetNumberOfColumns())]
    rows: list[dict[str, Any]] = []
    for row in range(data.GetNumberOfRows()):
        values: dict[str, Any] = {}
        for column in columns:
            if column.IsA("vtkDataArray"):
                values[column.GetName()] = float(column.GetTuple1(row))
            else:
                values[column.GetName()] = column.GetVariantValue(row).ToString()
        rows.append(values)
    return rows
