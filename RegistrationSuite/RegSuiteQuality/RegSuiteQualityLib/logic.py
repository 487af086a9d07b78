"""Logic of the Registration Quality module: how good is a registration transform?

Each measure is one method that takes MRML nodes and returns the nodes it created or updated
plus its numbers; :meth:`RegSuiteQualityLogic.process` runs every measure its inputs allow. The
transform node is read as a registration result: its transform *from parent* maps a fixed world
point to a moving world point. Bad input raises :class:`regsuite.errors.InputError` with a
one-line message; input nodes are never modified.

Example (Slicer's Python console)::

    from RegSuiteQualityLib import RegSuiteQualityLogic
    logic = RegSuiteQualityLogic()
    transform, fixed = getNode("Registration"), getNode("baseline")
    jacobianVolume, stats = logic.jacobian(transform, fixed)
    print(stats["folding_percent"], stats["min"], stats["max"])
    table = logic.landmarkError(transform, getNode("F-fixed"), getNode("F-moving"))
    results = logic.process(transform, fixed, getNode("followup"), progress=print)
    print(logic.summary(results))
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import numpy as np

try:  # the real base class inside Slicer (tests supply a thin stand-in)
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic
except ImportError:  # pragma: no cover - plain Python without Slicer
    ScriptedLoadableModuleLogic = object  # type: ignore[assignment,misc]

from regsuite.errors import InputError

ProgressCallback = Callable[[float, str], None]

#: The measures of :meth:`RegSuiteQualityLogic.process`, in the order they run.
MEASURES = ("jacobian", "overlap", "landmarks", "checkerboard", "difference", "volumeChange")
#: Inputs (``process`` argument names) each measure needs besides the transform.
NEEDS = {
    "jacobian": ("fixedVolume",),
    "overlap": ("fixedVolume", "fixedSegmentation", "movingSegmentation"),
    "landmarks": ("fixedPoints", "movingPoints"),
    "checkerboard": ("fixedVolume", "movingVolume"),
    "difference": ("fixedVolume", "movingVolume"),
    "volumeChange": ("fixedVolume", "fixedSegmentation", "segmentId"),
}
_INPUT_NAMES = {"fixedVolume": "a fixed volume", "movingVolume": "a moving volume",
                "fixedSegmentation": "a fixed segmentation", "movingSegmentation": "a moving segmentation",
                "fixedPoints": "a fixed point list", "movingPoints": "a moving point list",
                "segmentId": "a segment"}
_TITLES = {"jacobian": "Jacobian determinant", "overlap": "segment overlap", "landmarks": "landmark error",
           "checkerboard": "checkerboard", "difference": "difference image", "volumeChange": "volume change"}

#: Jacobian colour map: folding (J <= 0) green, contraction blue, no change white, expansion red.
JACOBIAN_RANGE = (-1.0, 3.0)
JACOBIAN_STOPS = [(-1.0, (0.0, 0.85, 0.2)), (0.0, (0.0, 0.85, 0.2)), (0.0, (0.05, 0.15, 0.75)),
                  (1.0, (1.0, 1.0, 1.0)), (3.0, (0.7, 0.0, 0.0))]
JACOBIAN_COLORS = "RegSuite Jacobian"
#: Difference colour map: negative blue, zero white, positive red (window symmetric about 0).
DIFFERENCE_STOPS = [(-1.0, (0.05, 0.15, 0.75)), (0.0, (1.0, 1.0, 1.0)), (1.0, (0.7, 0.0, 0.0))]
DIFFERENCE_COLORS = "RegSuite Difference"


def _summary_row(label: str, rows: list[dict[str, Any]], key: str, reduce: Callable[[Any], float]) -> dict[str, Any]:
    """A row with ``reduce`` over the finite values of each numeric column of ``rows``."""
    summary: dict[str, Any] = {key: label}
    for column in rows[0]:
        if column == key:
            continue
        values = np.array([row[column] for row in rows], dtype=float)
        values = values[np.isfinite(values)]
        summary[column] = float(reduce(values)) if values.size else math.nan
    return summary


class RegSuiteQualityLogic(ScriptedLoadableModuleLogic):
    """Registration quality measures on MRML nodes (usable without the module's panel)."""

    # ------------------------------------------------------------------ shared steps

    @staticmethod
    def _transform(transformNode: Any, reference: Any) -> Any:
        """The node's from-parent mapping (fixed LPS -> moving LPS), sampled on ``reference`` if non-linear."""
        from regsuite.mrml.transforms import node_to_sitk_transform  # noqa: PLC0415

        return node_to_sitk_transform(transformNode, reference)

    @staticmethod
    def _volumeOutput(image: Any, scene: Any, name: str, node: Any) -> Any:
        """``image`` in ``node`` (or a new volume called ``name``), not under any transform."""
        from regsuite.mrml.volumes import sitk_to_volume  # noqa: PLC0415

        node = sitk_to_volume(image, scene, name, node)
        node.SetAndObserveTransformNodeID(None)
        return node

    @staticmethod
    def _colors(volume: Any, name: str, stops: list, window: tuple[float, float], description: str) -> None:
        from regsuite.mrml.display import color_table, piecewise_colors, set_volume_colors  # noqa: PLC0415

        scene = volume.GetScene()
        table = color_table(scene, name, piecewise_colors(stops, window), description)
        set_volume_colors(volume, table, window)

    def _alignedPair(self, transformNode: Any, fixedVolume: Any, movingVolume: Any,
                     outputVolume: Any, role: str) -> tuple[Any, Any]:
        """The fixed image and the moving image resampled onto its grid through the transform."""
        import SimpleITK as sitk  # noqa: PLC0415

        from . import inputs  # noqa: PLC0415

        inputs.require_transform(transformNode)
        fixed = inputs.image(fixedVolume, "fixed volume")
        moving = inputs.image(movingVolume, "moving volume", transformNode)
        inputs.output_volume(outputVolume, role, [fixedVolume, movingVolume])
        statistics = sitk.MinimumMaximumImageFilter()
        statistics.Execute(moving)
        return fixed, inputs.warp(moving, fixed, self._transform(transformNode, fixed), statistics.GetMinimum())

    # ------------------------------------------------------------------ measures

    def jacobian(self, transformNode: Any, referenceVolume: Any, outputVolume: Any = None,
                 segmentation: Any = None) -> tuple[Any, dict[str, Any]]:
        """Jacobian determinant of the transform on the reference grid, and its statistics.

        Returns ``(volumeNode, stats)``: the determinant volume (``outputVolume`` or a new one),
        shown with a colour map where folding (J <= 0) is green, contraction blue, no change white
        and expansion red (window -1..3); ``stats`` has ``folding_percent`` (% of voxels with
        J <= 0), ``min``, ``max``, ``mean``, ``sd_log_jacobian``, ``voxels`` and ``region``, over
        the whole grid or inside ``segmentation`` (a segmentation or label map; all segments).
        """
        from regsuite.evaluation.jacobian import jacobian_determinant, jacobian_statistics  # noqa: PLC0415
        from regsuite.mrml.volumes import node_name  # noqa: PLC0415

        from . import inputs  # noqa: PLC0415

        inputs.require_transform(transformNode)
        reference = inputs.image(referenceVolume, "reference volume")
        inputs.output_volume(outputVolume, "output Jacobian volume", [referenceVolume])
        mask = None if segmentation is None else inputs.region(segmentation, referenceVolume, reference, "segmentation")
        determinant = jacobian_determinant(self._transform(transformNode, reference), reference)
        stats: dict[str, Any] = jacobian_statistics(determinant, mask)
        stats["region"] = "whole reference grid" if mask is None else f"inside {node_name(segmentation)}"
        node = self._volumeOutput(determinant, referenceVolume.GetScene(), f"{transformNode.GetName()} Jacobian",
                                  outputVolume)
        self._colors(node, JACOBIAN_COLORS, JACOBIAN_STOPS, JACOBIAN_RANGE,
                     "Jacobian determinant: green folding (J <= 0), blue contraction, white 1, red expansion")
        return node, stats

    def segmentOverlap(self, transformNode: Any, fixedSegmentation: Any, movingSegmentation: Any,
                       referenceVolume: Any, table: Any = None) -> Any:
        """Dice and 95 % Hausdorff distance per segment, before and after the transform.

        Segments are matched by name. Each moving segment is warped onto the reference (fixed)
        grid through the transform (linear interpolation of its 0/1 mask, inside where >= 0.5;
        "before" uses the identity) and compared with the fixed segment resampled on that grid.
        Returns the table node (``table`` or a new "Segment overlap"): one row per segment with
        ``segment``, ``dice_before``, ``hd95_before_mm``, ``dice_after``, ``hd95_after_mm``, then a
        ``mean`` row (over finite values).
        """
        import SimpleITK as sitk  # noqa: PLC0415
        from regsuite.evaluation.overlap import dice_per_label, hausdorff95_per_label  # noqa: PLC0415
        from regsuite.mrml.tables import write_table  # noqa: PLC0415
        from regsuite.mrml.volumes import node_name  # noqa: PLC0415

        from . import inputs  # noqa: PLC0415

        inputs.require_transform(transformNode)
        fixedIds = inputs.segment_ids_by_name(fixedSegmentation, "fixed segmentation")
        movingIds = inputs.segment_ids_by_name(movingSegmentation, "moving segmentation")
        common = [name for name in fixedIds if name in movingIds]
        if not common:
            raise InputError(f"segment names do not match: fixed segmentation {node_name(fixedSegmentation)} has "
                             f"{sorted(fixedIds)}, moving segmentation {node_name(movingSegmentation)} has "
                             f"{sorted(movingIds)}")
        reference = inputs.image(referenceVolume, "reference volume")
        mappings = (("before", sitk.Transform(3, sitk.sitkIdentity)),
                    ("after", self._transform(transformNode, reference)))
        rows, overlapping = [], False
        for name in common:
            fixed = inputs.region(fixedSegmentation, referenceVolume, reference, "fixed segmentation",
                                  [fixedIds[name]])
            moving = inputs.segment_image(movingSegmentation, movingIds[name], "moving segmentation", transformNode)
            row: dict[str, Any] = {"segment": name}
            for when, mapping in mappings:
                warped = inputs.warp_mask(moving, reference, mapping)
                row[f"dice_{when}"] = dice_per_label(fixed, warped, [1])[1]
                row[f"hd95_{when}_mm"] = hausdorff95_per_label(fixed, warped, [1])[1]
            overlapping |= row["dice_after"] > 0 or math.isfinite(row["hd95_after_mm"])
            rows.append(row)
        if not overlapping:
            raise InputError(f"moving segmentation {node_name(movingSegmentation)} does not overlap reference volume "
                             f"{node_name(referenceVolume)} through transform {node_name(transformNode)}")
        rows.append(_summary_row("mean", rows, "segment", np.mean))
        return write_table(referenceVolume.GetScene(), rows, "Segment overlap", table)

    def landmarkError(self, transformNode: Any, fixedPoints: Any, movingPoints: Any, table: Any = None) -> Any:
        """Landmark (target registration) errors before and after the transform, in mm.

        Point lists are markups nodes in world RAS, matched by order: error_i = |T(fixed_i) -
        moving_i| with T the transform's from-parent mapping ("before": T = identity). Returns
        the table node (``table`` or a new "Landmark error"): one row per point (``point``,
        ``error_before_mm``, ``error_after_mm``), then ``mean`` and ``max`` rows.
        """
        from regsuite.evaluation.landmarks import landmark_errors  # noqa: PLC0415
        from regsuite.mrml.tables import write_table  # noqa: PLC0415
        from regsuite.mrml.transforms import transform_points  # noqa: PLC0415
        from regsuite.mrml.volumes import node_name  # noqa: PLC0415

        from . import inputs  # noqa: PLC0415

        inputs.require_transform(transformNode)
        labels, fixed = inputs.points_lps(fixedPoints, "fixed point list", transformNode)
        _, moving = inputs.points_lps(movingPoints, "moving point list", transformNode)
        if len(fixed) != len(moving):
            raise InputError(f"fixed point list {node_name(fixedPoints)} has {len(fixed)} points and moving point "
                             f"list {node_name(movingPoints)} has {len(moving)}; they must pair one to one")
        before = landmark_errors(fixed, moving)
        after = landmark_errors(transform_points(transformNode, fixed), moving)
        rows = [{"point": label, "error_before_mm": float(b), "error_after_mm": float(a)}
                for label, b, a in zip(labels, before, after)]
        rows += [_summary_row("mean", rows, "point", np.mean), _summary_row("max", rows, "point", np.max)]
        return write_table(fixedPoints.GetScene(), rows, "Landmark error", table)

    def checkerboard(self, transformNode: Any, fixedVolume: Any, movingVolume: Any, squares: int = 8,
                     outputVolume: Any = None) -> Any:
        """Checkerboard of the fixed volume and the moving volume resampled through the transform.

        ``squares`` boxes per axis, on the fixed grid; returns the volume node (``outputVolume``
        or a new one).
        """
        from regsuite.mrml.display import checkerboard_image  # noqa: PLC0415

        fixed, warped = self._alignedPair(transformNode, fixedVolume, movingVolume, outputVolume,
                                          "output checkerboard volume")
        return self._volumeOutput(checkerboard_image(fixed, warped, squares), fixedVolume.GetScene(),
                                  f"{transformNode.GetName()} checkerboard", outputVolume)

    def difference(self, transformNode: Any, fixedVolume: Any, movingVolume: Any, outputVolume: Any = None) -> Any:
        """Fixed volume minus the moving volume resampled through the transform (same modality).

        Shown with a blue-white-red colour map whose window is +-(99th percentile of |difference|);
        returns the volume node (``outputVolume`` or a new one).
        """
        import SimpleITK as sitk  # noqa: PLC0415
        from regsuite.mrml.display import difference_image  # noqa: PLC0415

        fixed, warped = self._alignedPair(transformNode, fixedVolume, movingVolume, outputVolume,
                                          "output difference volume")
        image = difference_image(fixed, warped)
        node = self._volumeOutput(image, fixedVolume.GetScene(), f"{transformNode.GetName()} difference",
                                  outputVolume)
        half = float(np.percentile(np.abs(sitk.GetArrayViewFromImage(image)), 99)) or 1.0
        self._colors(node, DIFFERENCE_COLORS, DIFFERENCE_STOPS, (-half, half),
                     "Difference: blue negative, white zero, red positive")
        return node

    def volumeChange(self, transformNode: Any, segmentation: Any, segmentId: str, referenceVolume: Any,
                     table: Any = None) -> dict[str, Any]:
        """Volume of a segment drawn on the fixed image and of the region it maps to in the moving image.

        ``segmentId`` is a segment ID or name. The moving volume is the integral of the Jacobian
        determinant over the segment (on the reference grid). Returns a dict with ``segment``,
        ``segmentId``, ``fixed_volume_ml``, ``moving_volume_ml``, ``change_ml``, ``change_percent``
        and ``table`` (the table node, ``table`` or a new "Volume change", holding one row).
        """
        from regsuite.evaluation.jacobian import jacobian_determinant  # noqa: PLC0415
        from regsuite.evaluation.volumes import region_integral  # noqa: PLC0415
        from regsuite.mrml.tables import write_table  # noqa: PLC0415

        from . import inputs  # noqa: PLC0415

        inputs.require_transform(transformNode)
        segmentId = inputs.segment_id(segmentation, segmentId, "segmentation")
        name = segmentation.GetSegmentation().GetSegment(segmentId).GetName()
        reference = inputs.image(referenceVolume, "reference volume")
        mask = inputs.region(segmentation, referenceVolume, reference, "segmentation", [segmentId])
        determinant = jacobian_determinant(self._transform(transformNode, reference), reference)
        integral = region_integral(mask, determinant)  # the same arithmetic as `regsuite change`
        fixedMl, movingMl = integral.volume_ml, integral.mapped_ml
        result = {"segment": name, "fixed_volume_ml": fixedMl, "moving_volume_ml": movingMl,
                  "change_ml": movingMl - fixedMl, "change_percent": 100.0 * (movingMl - fixedMl) / fixedMl}
        node = write_table(referenceVolume.GetScene(), [result], "Volume change", table)
        return {**result, "segmentId": segmentId, "table": node}

    # ------------------------------------------------------------------ everything at once

    def process(self, transformNode: Any, fixedVolume: Any = None, movingVolume: Any = None,
                fixedSegmentation: Any = None, movingSegmentation: Any = None, fixedPoints: Any = None,
                movingPoints: Any = None, segmentId: str | None = None, squares: int = 8,
                outputs: dict[str, Any] | None = None, measures: Iterable[str] | None = None,
                progress: ProgressCallback | None = None) -> dict[str, dict[str, Any]]:
        """Run the measures the inputs allow (or exactly ``measures``) and return their results.

        ``measures`` are names from :data:`MEASURES`; a named measure whose inputs are missing
        raises :class:`InputError`. ``outputs`` maps a measure to the node to reuse for its
        output (volume or table). ``progress(fraction, message)`` is called before each measure
        and at the end. The result maps each measure that ran to a dict with ``node`` (its output
        node) and its numbers: ``stats`` (jacobian), ``rows`` (overlap, landmarks) or the
        :meth:`volumeChange` keys. The Jacobian statistics are taken inside the fixed
        segmentation when one is given.
        """
        from . import inputs  # noqa: PLC0415

        inputs.require_transform(transformNode)
        given = {"fixedVolume": fixedVolume, "movingVolume": movingVolume, "fixedSegmentation": fixedSegmentation,
                 "movingSegmentation": movingSegmentation, "fixedPoints": fixedPoints,
                 "movingPoints": movingPoints, "segmentId": segmentId or None}
        outputs = dict(outputs or {})
        unknown = sorted(set(outputs) - set(MEASURES))
        if unknown:
            raise InputError(f"unknown output {unknown}; outputs are named after the measures {list(MEASURES)}")
        chosen = self._chosen(measures, given)

        results: dict[str, dict[str, Any]] = {}
        for step, measure in enumerate(chosen):
            if progress is not None:
                progress(step / len(chosen), f"Computing {_TITLES[measure]}")
            results[measure] = self._run(measure, given, transformNode, squares, outputs.get(measure))
        if progress is not None:
            progress(1.0, "Done")
        return results

    def _run(self, measure: str, given: dict[str, Any], transformNode: Any, squares: int,
             output: Any) -> dict[str, Any]:
        """One measure of :meth:`process`: its output node under ``node`` and its numbers."""
        from regsuite.mrml.tables import read_table  # noqa: PLC0415

        g = given
        if measure == "jacobian":
            node, stats = self.jacobian(transformNode, g["fixedVolume"], output, g["fixedSegmentation"])
            return {"node": node, "stats": stats}
        if measure == "overlap":
            node = self.segmentOverlap(transformNode, g["fixedSegmentation"], g["movingSegmentation"],
                                       g["fixedVolume"], output)
            return {"node": node, "rows": read_table(node)}
        if measure == "landmarks":
            node = self.landmarkError(transformNode, g["fixedPoints"], g["movingPoints"], output)
            return {"node": node, "rows": read_table(node)}
        if measure == "checkerboard":
            return {"node": self.checkerboard(transformNode, g["fixedVolume"], g["movingVolume"], squares, output)}
        if measure == "difference":
            return {"node": self.difference(transformNode, g["fixedVolume"], g["movingVolume"], output)}
        change = self.volumeChange(transformNode, g["fixedSegmentation"], g["segmentId"], g["fixedVolume"], output)
        return {**change, "node": change["table"]}

    @staticmethod
    def _chosen(measures: Iterable[str] | None, given: dict[str, Any]) -> list[str]:
        if measures is None:
            chosen = [m for m in MEASURES if all(given[name] is not None for name in NEEDS[m])]
            if not chosen:
                raise InputError("nothing to compute: besides the transform, select a fixed volume, "
                                 "a pair of segmentations or a pair of point lists")
            return chosen
        chosen = list(measures)
        for measure in chosen:
            if measure not in NEEDS:
                raise InputError(f"unknown measure '{measure}'; choose from {list(MEASURES)}")
            missing = [_INPUT_NAMES[name] for name in NEEDS[measure] if given[name] is None]
            if missing:
                raise InputError(f"{_TITLES[measure]} needs {' and '.join(missing)}")
        return chosen

    # ------------------------------------------------------------------ presenting results

    @staticmethod
    def summary(results: dict[str, dict[str, Any]]) -> str:
        """A few plain-text lines describing ``process`` results (for the panel or the console)."""
        lines = []
        if "jacobian" in results:
            s = results["jacobian"]["stats"]
            lines.append(f"Jacobian ({s['region']}): mean {s['mean']:.3f}, min {s['min']:.3f}, max {s['max']:.3f}, "
                         f"SD log J {s['sd_log_jacobian']:.3f}, folding {s['folding_percent']:.2f} % "
                         f"of {s['voxels']} voxels")
        if "overlap" in results:
            rows = results["overlap"]["rows"]
            mean = rows[-1]
            lines.append(f"Segment overlap ({len(rows) - 1} segments): mean Dice {mean['dice_before']:.3f} before, "
                         f"{mean['dice_after']:.3f} after; mean HD95 {mean['hd95_before_mm']:.2f} mm before, "
                         f"{mean['hd95_after_mm']:.2f} mm after")
        if "landmarks" in results:
            rows = results["landmarks"]["rows"]
            mean, worst = rows[-2], rows[-1]
            lines.append(f"Landmark error ({len(rows) - 2} points): mean {mean['error_before_mm']:.2f} mm before, "
                         f"{mean['error_after_mm']:.2f} mm after; max {worst['error_before_mm']:.2f} mm before, "
                         f"{worst['error_after_mm']:.2f} mm after")
        if "volumeChange" in results:
            c = results["volumeChange"]
            lines.append(f"Volume of '{c['segment']}': {c['fixed_volume_ml']:.2f} mL fixed, "
                         f"{c['moving_volume_ml']:.2f} mL moving ({c['change_ml']:+.2f} mL, "
                         f"{c['change_percent']:+.1f} %)")
        for measure in ("checkerboard", "difference"):
            if measure in results:
                lines.append(f"{_TITLES[measure].capitalize()}: '{results[measure]['node'].GetName()}'")
        return "\n".join(lines)

    @staticmethod
    def showResults(results: dict[str, dict[str, Any]], fixedVolume: Any = None, opacity: float = 0.5) -> Any:
        """Show the most telling image result in the slice views; returns the volume shown.

        A checkerboard or difference volume is shown alone; a Jacobian volume is shown over
        ``fixedVolume`` (when given) with ``opacity``. Nothing happens for table-only results.
        """
        from regsuite.mrml.display import show_checkerboard, show_fusion  # noqa: PLC0415

        for measure in ("checkerboard", "difference"):
            if measure in results:
                node = results[measure]["node"]
                show_checkerboard(node.GetScene(), node)
                return node
        if "jacobian" in results:
            node = results["jacobian"]["node"]
            if fixedVolume is not None:
                show_fusion(node.GetScene(), fixedVolume, node, opacity)
            else:
                show_checkerboard(node.GetScene(), node)
            return node
        return None

    @staticmethod
    def outputNodes(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Measure -> output node of ``process`` results (to select them in the panel for reuse)."""
        return {measure: result["node"] for measure, result in results.items()}


__all__ = ["MEASURES", "NEEDS", "RegSuiteQualityLogic"]
