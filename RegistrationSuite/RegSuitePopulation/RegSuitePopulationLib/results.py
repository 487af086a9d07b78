"""Results of the population workflows brought into the scene.

* :func:`importLabels` - a fused label map into a segmentation node, segments named and coloured
  from a colour table and the atlases' segment names;
* :func:`loadTemplate` - a template image into the "Template" volume node;
* :func:`readChangeRows`, :func:`changeTable`, :func:`changeChart`, :func:`showJacobian` - the
  longitudinal change: its rows, a table node, a bar chart and the colours of the Jacobian map.

The ``regsuite`` engine, NumPy and SimpleITK are imported inside the functions (never PyTorch).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .messages import input_error, one_line, quoted_name, regsuite_errors
from .undo import scratch

__all__ = ["TEMPLATE_NAME", "CHANGE_COLUMNS", "JACOBIAN_COLORS", "importLabels", "loadTemplate", "readChangeRows",
           "changeTable", "changeChart", "showJacobian", "number_or_nan"]

TEMPLATE_NAME = "Template"
#: The change table's columns, in this order (others the command adds follow them).
CHANGE_COLUMNS = ("label", "name", "baseline_ml", "followup_ml", "change_ml", "change_percent")
JACOBIAN_COLORS = "RegSuite Volume change"


def number_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# ---------------------------------------------------------------------------- segment
def importLabels(labels: Any, segmentation: Any, colorNode: Any = None,
                 names: dict[int, tuple[str, tuple[float, float, float] | None]] | None = None,
                 referenceVolume: Any = None) -> list[str]:
    """Put the label map ``labels`` (SimpleITK, LPS) into ``segmentation`` (its segments replaced).

    One segment per label value, named and coloured from ``colorNode`` (a colour table; default:
    "GenericAnatomyColors" when the scene has it), then from ``names`` (value -> (name, colour)),
    which wins. Returns the segment names. Temporary nodes are removed again.
    """
    import slicer  # noqa: PLC0415
    from regsuite.mrml import sitk_to_volume  # noqa: PLC0415

    scene = segmentation.GetScene()
    colorNode = colorNode or scene.GetFirstNodeByName("GenericAnatomyColors")
    if segmentation.GetDisplayNode() is None:
        segmentation.CreateDefaultDisplayNodes()
    segmentation.GetSegmentation().RemoveAllSegments()
    if referenceVolume is not None and referenceVolume.GetParentTransformNode() is None:
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
    with scratch(scene):
        labelmap = sitk_to_volume(labels, scene, "__regsuite_population_labels", labelmap=True)
        if colorNode is not None:
            labelmap.GetDisplayNode().SetAndObserveColorNodeID(colorNode.GetID())
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
            raise regsuite_errors().RegSuiteError(f"the fused labels cannot be imported into "
                                                  f"{quoted_name(segmentation)}")
    result = segmentation.GetSegmentation()
    found = []
    for index in range(result.GetNumberOfSegments()):
        segment = result.GetNthSegment(index)
        named = (names or {}).get(int(segment.GetLabelValue()))
        if named is not None:
            segment.SetName(named[0])
            if named[1] is not None and (colorNode is None or colorNode.GetColorIndexByName(named[0]) < 0):
                segment.SetColor(*named[1])
        found.append(segment.GetName())
    return found


# ---------------------------------------------------------------------------- template
def loadTemplate(path: Path, scene: Any, node: Any = None) -> Any:
    """The template image file ``path`` in the volume ``node`` (None: a new node named "Template")."""
    from regsuite.io.images import read_image  # noqa: PLC0415
    from regsuite.mrml import sitk_to_volume  # noqa: PLC0415

    image = read_image(str(path), "template")
    return sitk_to_volume(image, scene, TEMPLATE_NAME, node)


# ---------------------------------------------------------------------------- change
def readChangeRows(path: Path, names: dict[int, str] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """The rows of ``change.json`` (an object with ``rows``, or a list of rows), tolerant of extra keys.

    Each row keeps its keys; ``label`` becomes text and ``name`` comes from ``names`` (label value ->
    name: the segment names as they are in the scene, which the label table sent to the command
    could only hold without spaces) when given there.
    """
    try:
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise input_error(f"the command wrote no change table '{path}'") from None
    except (OSError, ValueError) as error:
        raise input_error(f"change table '{path}' cannot be read ({one_line(error)})") from None
    rows = summary.get("rows", summary.get("labels")) if isinstance(summary, dict) else summary
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise input_error(f"change table '{path}' holds no list of rows")
    cleaned = []
    for row in rows:
        label = row.get("label")
        value = int(label) if isinstance(label, (int, float)) and float(label).is_integer() else None
        name = ((names or {}).get(value) if value is not None else None) or row.get("name")  # the scene's names win
        ordered = {"label": "" if label is None else str(value if value is not None else label), "name": name or ""}
        for key in CHANGE_COLUMNS[2:]:
            ordered[key] = number_or_nan(row.get(key))
        for key, item in row.items():
            if key not in ordered and (item is None or isinstance(item, (int, float, str))):
                ordered[key] = item
        cleaned.append(ordered)
    return summary, cleaned


def changeTable(scene: Any, rows: list[dict[str, Any]], name: str, table: Any = None) -> Any:
    """A table node (``table``, or a new one with a unique ``name``) with the change rows and a
    ``structure`` column (the name, else the label) that the chart shows."""
    from regsuite.mrml.tables import write_table  # noqa: PLC0415

    shown = [{"structure": row.get("name") or row.get("label"), **row} for row in rows]
    units = {"baseline_ml": "ml", "followup_ml": "ml", "change_ml": "ml", "change_percent": "%"}
    return write_table(scene, shown, name, table, units=units)


def changeChart(scene: Any, table: Any, title: str) -> tuple[Any, Any]:
    """A bar chart of ``change_percent`` per structure: (plot series node, plot chart node)."""
    import slicer  # noqa: PLC0415

    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(f"{title} (%)"))
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
    series.SetYColumnName("change_percent")
    series.SetLabelColumnName("structure")
    series.SetColor(0.2, 0.45, 0.75)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(f"{title} chart"))
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(title)
    chart.SetXAxisTitle("structure (whole brain first)")
    chart.SetYAxisTitle("volume change (%)")
    chart.SetLegendVisibility(False)
    return series, chart


def showJacobian(volume: Any, image: Any = None) -> None:
    """Colour the Jacobian map: blue where tissue shrank, white for no change, red where it grew.

    The window is 1 +- h with h the 99th percentile of |J - 1| (between 0.02 and 1).
    """
    import numpy as np  # noqa: PLC0415
    from regsuite.mrml.display import color_table, piecewise_colors, set_volume_colors  # noqa: PLC0415

    if image is not None:
        import SimpleITK as sitk  # noqa: PLC0415

        values = sitk.GetArrayViewFromImage(image)
    else:
        import slicer  # noqa: PLC0415

        values = slicer.util.arrayFromVolume(volume)
    spread = np.abs(np.asarray(values, dtype=float) - 1.0)
    spread = spread[np.isfinite(spread)]
    half = float(min(max(np.percentile(spread, 99) if spread.size else 0.0, 0.02), 1.0))
    window = (1.0 - half, 1.0 + half)
    stops = [(window[0], (0.05, 0.2, 0.8)), (1.0, (1.0, 1.0, 1.0)), (window[1], (0.8, 0.05, 0.05))]
    table = color_table(volume.GetScene(), JACOBIAN_COLORS, piecewise_colors(stops, window),
                        "Volume change (Jacobian): blue shrinkage, white none, red growth")
    set_volume_colors(volume, table, window)
