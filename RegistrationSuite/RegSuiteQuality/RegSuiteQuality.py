"""Registration Quality: how good is a registration? Jacobian, overlap, landmark error, visual checks.

The file Slicer loads. It stays light: the measures (SimpleITK, ``regsuite``) are imported by the
Logic on first use, and PyTorch is never needed. The panel only reads its widgets and calls
:class:`RegSuiteQualityLib.RegSuiteQualityLogic`, which works the same from the Python console.
"""

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from RegSuiteQualityLib import RegSuiteQualityLogic

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core without the application (tests): no translations

    def _(text):
        return text


__all__ = ["RegSuiteQuality", "RegSuiteQualityLogic", "RegSuiteQualityTest", "RegSuiteQualityWidget"]


class RegSuiteQuality(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Registration Quality")
        self.parent.categories = ["Registration.RegistrationSuite"]
        self.parent.dependencies = []
        self.parent.contributors = ["RegistrationSuite developers"]
        self.parent.helpText = _(
            "Measures how good a registration transform is. The transform is read as a registration "
            "result: from parent, it maps a fixed point to a moving point.<ul>"
            "<li><b>Jacobian</b>: determinant volume on the fixed grid (green: folding, J &le; 0; blue: "
            "contraction; red: expansion) and the % of folded voxels, inside the fixed segmentation if given.</li>"
            "<li><b>Overlap</b>: Dice and 95% Hausdorff distance per segment (matched by name) before and "
            "after warping the moving segmentation.</li>"
            "<li><b>Landmark error</b>: |T(fixed point) - moving point| per point pair, before and after.</li>"
            "<li><b>Checkerboard</b> and <b>difference</b> of the fixed and warped moving volumes.</li>"
            "<li><b>Volume change</b>: volume of a fixed segment and of the region it maps to "
            "(integral of the Jacobian).</li></ul>"
            "A moving volume, segmentation or point list placed under the transform itself is read in its "
            "own coordinates. Inputs are never modified; results go to new or selected output nodes."
        )
        self.parent.acknowledgementText = _(
            "Part of the RegistrationSuite extension. Measures from the regsuite package (SimpleITK); "
            "the lung CT test pair used in development is from the elastix test data (Apache-2.0)."
        )


class RegSuiteQualityWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: reads the selected nodes and options, calls the Logic, shows its summary."""

    #: measure -> output selector in the .ui file
    OUTPUT_SELECTORS = {
        "jacobian": "jacobianVolumeSelector",
        "overlap": "overlapTableSelector",
        "landmarks": "landmarkTableSelector",
        "checkerboard": "checkerboardVolumeSelector",
        "difference": "differenceVolumeSelector",
        "volumeChange": "volumeChangeTableSelector",
    }
    #: button -> measures it runs (None: everything the inputs allow)
    BUTTONS = {
        "jacobianButton": ["jacobian"],
        "overlapButton": ["overlap"],
        "landmarkButton": ["landmarks"],
        "checkerboardButton": ["checkerboard"],
        "differenceButton": ["difference"],
        "volumeChangeButton": ["volumeChange"],
        "computeAllButton": None,
    }

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.ui = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RegSuiteQuality.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = RegSuiteQualityLogic()

        for buttonName, measures in self.BUTTONS.items():
            getattr(self.ui, buttonName).connect("clicked(bool)", lambda _checked, m=measures: self.onCompute(m))
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.layout.addStretch(1)

    def cleanup(self):
        self.removeObservers()

    def onSceneEndClose(self, _caller, _event):
        if self.parent.isEntered:
            self.ui.resultsLabel.text = ""

    def inputs(self):
        """The selected inputs, as keyword arguments of :meth:`RegSuiteQualityLogic.process`."""
        ui = self.ui
        return {
            "transformNode": ui.transformSelector.currentNode(),
            "fixedVolume": ui.fixedVolumeSelector.currentNode(),
            "movingVolume": ui.movingVolumeSelector.currentNode(),
            "fixedSegmentation": ui.fixedSegmentationSelector.currentNode(),
            "movingSegmentation": ui.movingSegmentationSelector.currentNode(),
            "fixedPoints": ui.fixedPointsSelector.currentNode(),
            "movingPoints": ui.movingPointsSelector.currentNode(),
            "segmentId": ui.changeSegmentSelector.currentSegmentID() or None,
            "squares": ui.squaresSpinBox.value,
        }

    def onProgress(self, fraction, message):
        slicer.util.showStatusMessage(f"{message} ({100 * fraction:.0f} %)", 3000)
        slicer.app.processEvents()

    def onCompute(self, measures):
        outputs = {m: getattr(self.ui, name).currentNode() for m, name in self.OUTPUT_SELECTORS.items()}
        with slicer.util.tryWithErrorDisplay(_("Registration quality could not be computed."), waitCursor=True):
            results = self.logic.process(**self.inputs(), outputs=outputs, measures=measures,
                                         progress=self.onProgress)
            for measure, node in self.logic.outputNodes(results).items():
                getattr(self.ui, self.OUTPUT_SELECTORS[measure]).setCurrentNode(node)
            self.logic.showResults(results, self.ui.fixedVolumeSelector.currentNode(),
                                   self.ui.opacitySliderWidget.value)
            slicer.util.resetSliceViews()
            self.ui.resultsLabel.text = self.logic.summary(results)


class RegSuiteQualityTest(ScriptedLoadableModuleTest):
    """Self-test on synthetic data (run from Slicer: Reload and Test)."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_scaling_and_translation()

    def test_scaling_and_translation(self):
        import numpy as np
        import vtk

        self.delayDisplay("Registration Quality: synthetic scaling and translation")
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "fixed")
        volume.SetSpacing(1.5, 1.0, 2.0)
        values = np.zeros((12, 20, 16), np.float32)
        values[3:9, 5:15, 4:12] = 100.0
        slicer.util.updateVolumeFromArray(volume, values)
        logic = RegSuiteQualityLogic()

        scale = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "scale")
        matrix = vtk.vtkMatrix4x4()
        for axis in range(3):
            matrix.SetElement(axis, axis, 1.2)
        scale.SetMatrixTransformFromParent(matrix)
        jacobian, stats = logic.jacobian(scale, volume)
        self.assertAlmostEqual(stats["mean"], 1.2 ** 3, places=4)
        self.assertEqual(stats["folding_percent"], 0.0)
        self.assertEqual(jacobian.GetDisplayNode().GetColorNode().GetName(), "RegSuite Jacobian")

        shift = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
        matrix = vtk.vtkMatrix4x4()
        matrix.SetElement(0, 3, 4.0)
        shift.SetMatrixTransformFromParent(matrix)
        fixedPoints = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "F")
        movingPoints = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "M")
        for point in ([1.0, 2.0, 3.0], [-5.0, 0.0, 8.0]):
            fixedPoints.AddControlPoint(vtk.vtkVector3d(*point))
            movingPoints.AddControlPoint(vtk.vtkVector3d(point[0] + 4.0, point[1], point[2]))
        results = logic.process(shift, volume, volume, fixedPoints=fixedPoints, movingPoints=movingPoints)
        mean = results["landmarks"]["rows"][-2]
        self.assertAlmostEqual(mean["error_before_mm"], 4.0, places=6)
        self.assertAlmostEqual(mean["error_after_mm"], 0.0, places=6)
        self.assertEqual(set(results), {"jacobian", "landmarks", "checkerboard", "difference"})
        logic.showResults(results, volume)
        self.delayDisplay("Test passed")
