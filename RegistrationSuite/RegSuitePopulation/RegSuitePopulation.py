"""Registration Population: multi-atlas segmentation, population templates and longitudinal change.

The file Slicer loads. It stays light: the panel only reads its widgets (kept in the module's
parameter node) and calls :class:`RegSuitePopulationLib.RegSuitePopulationLogic`, which exports the
inputs and runs the ``regsuite`` command line in a background process; a ``qt.QTimer`` on the main
thread polls it. Neither PyTorch nor the engine is imported here; nothing is installed before Apply.
"""

import importlib.util
import logging

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from RegSuitePopulationLib import WORKFLOWS, RegSuitePopulationLogic
from RegSuitePopulationLib.parameters import PopulationParameters

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core without the application (tests): no translations

    def _(text):
        return text


__all__ = ["RegSuitePopulation", "RegSuitePopulationLogic", "RegSuitePopulationTest", "RegSuitePopulationWidget"]

ERROR_STYLE = "color: #d32f2f;"
DEFAULT_PRESET = "(command default)"


class RegSuitePopulation(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Registration Population")
        self.parent.categories = ["Registration.RegistrationSuite"]
        self.parent.dependencies = []
        self.parent.contributors = ["RegistrationSuite developers"]
        self.parent.helpText = _(
            "Workflows of many registrations, run by the <tt>regsuite</tt> command line in a background "
            "process (Slicer stays responsive; Cancel stops it and leaves the scene as it was).<ul>"
            "<li><b>Segment</b>: multi-atlas segmentation of the target volume. Atlases come from an "
            "<i>atlas list</i> (a CSV file with the columns <tt>image,labels[,name]</tt>, or a folder "
            "holding an <tt>atlases.csv</tt> or pairs <tt>NAME.nii.gz</tt> + <tt>NAME_labels.nii.gz</tt>) "
            "and/or from image/labels pairs in the scene (segments are matched by name). The fused labels "
            "become a segmentation, named and coloured from the chosen colour table.</li>"
            "<li><b>Template</b>: an unbiased template from a folder of images or a CSV image list; each "
            "finished iteration updates the <i>Template</i> volume and its update magnitude is shown.</li>"
            "<li><b>Change</b>: longitudinal volume change between a baseline and a follow-up scan, per "
            "structure of a baseline segmentation: a table, a bar chart and the Jacobian map over the "
            "baseline (blue shrinkage, red growth).</li></ul>"
            "<i>Run options</i>: the registration preset, the number of local workers, or the address of a "
            "running Dask scheduler (its workers must see the same files)."
            "<p>From the Python console:</p><pre>"
            "from RegSuitePopulationLib import RegSuitePopulationLogic\n"
            "logic = RegSuitePopulationLogic()\n"
            "result = logic.segment(getNode('subject'), atlasList='/data/atlases.csv', log=print)\n"
            "result = logic.buildTemplate('/data/subjects', iterations=4, progress=print)\n"
            "result = logic.measureChange(getNode('m00'), getNode('m12'), getNode('aseg'))</pre>"
        )
        self.parent.acknowledgementText = _(
            "Part of the RegistrationSuite extension. Label fusion, template construction (log-domain "
            "shape update) and the symmetric volume change come from the regsuite package."
        )


class RegSuitePopulationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: one tab per workflow, run options, Apply/Cancel, progress, status and log."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.ui = None
        self._parameters = None
        self._updatingGUI = False
        self._timer = None

    # ------------------------------------------------------------------ set-up and life cycle
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RegSuitePopulation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = RegSuitePopulationLogic()

        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self.onTimer)
        self.ui.progressBar.hide()
        self.ui.atlasTableWidget.horizontalHeader().setSectionResizeMode(qt.QHeaderView.Stretch)
        self.refreshPresets()

        for selector in self._nodeSelectors().values():
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        for edit in self._textEdits().values():
            edit.connect("textChanged(QString)", self.updateParameterNodeFromGUI)
        for spinBox in self._spinBoxes().values():
            spinBox.connect("valueChanged(int)", self.updateParameterNodeFromGUI)
        self.ui.fusionComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        self.ui.presetComboBox.connect("currentTextChanged(QString)", self.updateParameterNodeFromGUI)
        self.ui.workflowTabWidget.connect("currentChanged(int)", self.updateParameterNodeFromGUI)
        self.ui.addAtlasButton.connect("clicked()", self.onAddAtlas)
        self.ui.removeAtlasButton.connect("clicked()", self.onRemoveAtlas)
        browse = {"atlasListFileButton": ("atlasListLineEdit", "csv"),
                  "atlasListFolderButton": ("atlasListLineEdit", "dir"),
                  "imageFolderButton": ("imageSourceLineEdit", "dir"), "imageListButton": ("imageSourceLineEdit", "csv"),
                  "templateOutputButton": ("templateOutputLineEdit", "dir"),
                  "changeOutputButton": ("changeOutputLineEdit", "dir")}
        for button, (edit, kind) in browse.items():
            getattr(self.ui, button).connect("clicked()", lambda e=edit, k=kind: self.onBrowse(e, k))
        self.ui.applyButton.connect("clicked()", self.onApplyButton)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        """The module panel is destroyed (e.g. Slicer quits): stop a run, forget observers."""
        self._stopRun()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self._observeParameterNode(False)

    def onSceneStartClose(self, caller, event):
        self._stopRun()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def _stopRun(self):
        """Cancel a running workflow without keeping its status (scene close, module cleanup)."""
        if self._timer is not None:
            self._timer.stop()
        if self.logic is not None and self.logic.isRunning:
            self.logic.cancel()
            self._setRunning(False)
            self.ui.progressBar.hide()
            self.showStatus("")

    # ------------------------------------------------------------------ parameter node
    def _nodeSelectors(self):
        ui = self.ui
        return {"targetVolume": ui.targetVolumeSelector, "colorNode": ui.colorTableSelector,
                "outputSegmentation": ui.outputSegmentationSelector, "baselineVolume": ui.baselineVolumeSelector,
                "followupVolume": ui.followupVolumeSelector, "changeSegmentation": ui.changeSegmentationSelector}

    def _textEdits(self):
        ui = self.ui
        return {"atlasList": ui.atlasListLineEdit, "imageSource": ui.imageSourceLineEdit,
                "templateOutputDir": ui.templateOutputLineEdit, "changeOutputDir": ui.changeOutputLineEdit,
                "scheduler": ui.schedulerLineEdit}

    def _spinBoxes(self):
        ui = self.ui
        return {"select": ui.selectSpinBox, "iterations": ui.iterationsSpinBox, "workers": ui.workersSpinBox}

    def initializeParameterNode(self):
        self.setParameterNode(PopulationParameters(self.logic.getParameterNode()))
        parameters = self._parameters
        if parameters.targetVolume is None and parameters.baselineVolume is None:
            volumes = [node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                       if not node.IsA("vtkMRMLLabelMapVolumeNode")]
            if volumes:
                with slicer.util.NodeModify(parameters.parameterNode):
                    parameters.targetVolume = volumes[0]

    def setParameterNode(self, parameters):
        """Observe ``parameters`` (a PopulationParameters or None) and show its state."""
        self._observeParameterNode(False)
        self._parameters = parameters
        if parameters is not None:
            self._observeParameterNode(True)
            self.updateGUIFromParameterNode()

    def _observeParameterNode(self, observe):
        if self._parameters is None:
            return
        arguments = (self._parameters.parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        if observe and not self.hasObserver(*arguments):
            self.addObserver(*arguments)
        elif not observe and self.hasObserver(*arguments):
            self.removeObserver(*arguments)

    def updateGUIFromParameterNode(self, caller=None, event=None):
        parameters = self._parameters
        if parameters is None or self._updatingGUI:
            return
        self._updatingGUI = True
        try:
            ui = self.ui
            for name, selector in self._nodeSelectors().items():
                selector.setCurrentNode(getattr(parameters, name))
            for name, edit in self._textEdits().items():
                if edit.text != getattr(parameters, name):
                    edit.text = getattr(parameters, name)
            for name, spinBox in self._spinBoxes().items():
                spinBox.value = getattr(parameters, name)
            ui.fusionComboBox.currentIndex = max(ui.fusionComboBox.findText(parameters.fusion), 0)
            _selectText(ui.presetComboBox, parameters.preset or DEFAULT_PRESET)
            workflow = parameters.workflow if parameters.workflow in WORKFLOWS else WORKFLOWS[0]
            ui.workflowTabWidget.currentIndex = WORKFLOWS.index(workflow)
            self._showAtlasPairs(parameters.atlasPairs)
        finally:
            self._updatingGUI = False
        self._updateButtons()

    def updateParameterNodeFromGUI(self, *args):
        parameters = self._parameters
        if parameters is None or self._updatingGUI:
            return
        ui = self.ui
        with slicer.util.NodeModify(parameters.parameterNode):
            for name, selector in self._nodeSelectors().items():
                setattr(parameters, name, selector.currentNode())
            for name, edit in self._textEdits().items():
                setattr(parameters, name, edit.text)  # kept as typed (stripped when used)
            for name, spinBox in self._spinBoxes().items():
                setattr(parameters, name, spinBox.value)
            parameters.fusion = ui.fusionComboBox.currentText
            preset = ui.presetComboBox.currentText.strip()
            parameters.preset = "" if preset == DEFAULT_PRESET else preset
            parameters.workflow = WORKFLOWS[max(ui.workflowTabWidget.currentIndex, 0)]
        self._updateButtons()

    def _showAtlasPairs(self, pairs):
        table = self.ui.atlasTableWidget
        table.setRowCount(len(pairs))
        for row, (image, labels) in enumerate(pairs):
            for column, node in enumerate((image, labels)):
                table.setItem(row, column, qt.QTableWidgetItem(node.GetName()))
        self.ui.removeAtlasButton.enabled = bool(pairs)

    def onAddAtlas(self):
        if self._parameters is None:
            return
        image, labels = self.ui.atlasImageSelector.currentNode(), self.ui.atlasLabelsSelector.currentNode()
        if image is None or labels is None:
            self.showError(_("Choose an atlas image and its labels first."))
            return
        pairs = self._parameters.atlasPairs
        if all(image is not other or labels is not otherLabels for other, otherLabels in pairs):
            self._parameters.atlasPairs = pairs + [(image, labels)]
        self.showStatus("")

    def onRemoveAtlas(self):
        if self._parameters is None:
            return
        pairs = self._parameters.atlasPairs
        row = self.ui.atlasTableWidget.currentRow()
        if pairs:
            del pairs[row if 0 <= row < len(pairs) else len(pairs) - 1]
            self._parameters.atlasPairs = pairs

    def onBrowse(self, editName, kind):
        edit = getattr(self.ui, editName)
        if kind == "dir":
            path = qt.QFileDialog.getExistingDirectory(self.parent, _("Choose a folder"), edit.text)
        else:
            path = qt.QFileDialog.getOpenFileName(self.parent, _("Choose a CSV file"), edit.text,
                                                  "CSV files (*.csv);;All files (*)")
        if isinstance(path, (tuple, list)):
            path = path[0]
        if path:
            edit.text = path

    def refreshPresets(self):
        """The preset box: the command's default first, then the engine's presets (typing a JSON path works)."""
        combo = self.ui.presetComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        combo.addItem(DEFAULT_PRESET)
        try:
            combo.addItems(self.logic.presetNames())
        except Exception as error:
            self.showError(_errorText(error))
        combo.blockSignals(wasBlocked)

    # ------------------------------------------------------------------ running
    def _ready(self):
        """"" when the selected workflow's inputs are there, else what is missing."""
        parameters = self._parameters
        if parameters is None:
            return _("No parameter node.")
        workflow = parameters.workflow
        if workflow == "segment":
            if parameters.targetVolume is None:
                return _("Select the target volume.")
            if not parameters.atlasList.strip() and not parameters.atlasPairs:
                return _("Give an atlas list or folder, or add atlases from the scene.")
        elif workflow == "template":
            if not parameters.imageSource.strip():
                return _("Give a folder of images or a CSV image list.")
        elif parameters.baselineVolume is None or parameters.followupVolume is None:
            return _("Select the baseline and follow-up volumes.")
        return ""

    def _updateButtons(self):
        running = self.logic is not None and self.logic.isRunning
        missing = self._ready()
        self.ui.applyButton.enabled = running or not missing
        self.ui.applyButton.toolTip = (_("Stop the run; the scene is left as it was.") if running else
                                       missing or _("Run the workflow of the selected tab."))

    def _runArguments(self):
        """The selected workflow and the Logic's keyword arguments for it."""
        p = self._parameters
        options = {"preset": p.preset.strip() or None, "workers": p.workers or None,
                   "scheduler": p.scheduler.strip() or None,
                   "progress": self.onProgress, "log": self.onLog, "waitForCompletion": False}
        if p.workflow == "segment":
            return self.logic.segment, dict(options, targetVolume=p.targetVolume, atlases=p.atlasPairs,
                                            atlasList=p.atlasList.strip() or None, colorNode=p.colorNode,
                                            outputSegmentation=p.outputSegmentation, fusion=p.fusion,
                                            select=p.select or None)
        if p.workflow == "template":
            return self.logic.buildTemplate, dict(options, images=p.imageSource.strip(), iterations=p.iterations,
                                                  outputDir=p.templateOutputDir.strip() or None)
        return self.logic.measureChange, dict(options, baselineVolume=p.baselineVolume,
                                              followupVolume=p.followupVolume, segmentation=p.changeSegmentation,
                                              outputDir=p.changeOutputDir.strip() or None)

    def onApplyButton(self):
        if self.logic.isRunning:
            self._timer.stop()
            self.logic.cancel()  # stops the command; what the run added to the scene is removed
            self._finishRun()
            return
        self.showStatus("")
        missing = self._ready()
        if missing:
            self.showError(missing)
            return
        if not self._engineAvailable():
            self.showError(_("The registrations need PyTorch, which is not installed."))
            return
        self.ui.logPlainTextEdit.clear()
        try:
            start, arguments = self._runArguments()
            start(**arguments)
        except Exception as error:
            self.showError(_errorText(error))
            return
        self.ui.progressBar.value = 0
        self._setRunning(True)
        self.showStatus(_("Starting..."))
        self._timer.start()

    @staticmethod
    def _engineAvailable():
        """True when the background command can import PyTorch (installed after confirmation if missing)."""
        if importlib.util.find_spec("torch") is not None:
            return True
        try:
            from RegSuiteRegistrationLib.dependencies import ensureTorch
        except ImportError:
            return False
        return bool(ensureTorch(askConfirmation=True))

    def _setRunning(self, running):
        for widget in (self.ui.workflowTabWidget, self.ui.optionsCollapsibleButton):
            widget.enabled = not running
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.progressBar.visible = running or self.ui.progressBar.visible
        self._updateButtons()

    def onTimer(self):
        """Polls the run on the main thread (progress and scene updates come through the callbacks)."""
        try:
            self.logic.poll()
        except Exception as error:
            self.logic.cancel()
            self._finishRun(_errorText(error))
            return
        if not self.logic.isRunning:
            self._finishRun()

    def _finishRun(self, error=None):
        self._timer.stop()
        self._setRunning(False)
        job = self.logic.job
        state = "failed" if error or job is None else job.state
        if state == "completed":
            self.ui.progressBar.value = self.ui.progressBar.maximum
            self.showStatus(_("Done in {seconds:.1f} s.").format(seconds=job.elapsed) + self._resultText(job))
            self._showResult(job)
        elif state == "cancelled":
            self.ui.progressBar.hide()
            self.showStatus(_("Cancelled; the scene is as it was."))
        else:
            self.ui.progressBar.hide()
            # the job's own failure is already the last line of the log ("Failed: ...")
            self.showError(error or (job.error if job is not None else "") or _("the run failed"),
                           log=bool(error) or job is None)

    @staticmethod
    def _resultText(job):
        result = job.result or {}
        if job.workflow == "segment":
            return " " + _("Segmentation '{name}' with {count} segments.").format(
                name=result["segmentation"].GetName(), count=len(result["segments"]))
        if job.workflow == "template":
            return " " + _("Template '{name}'; files in {folder}").format(name=result["template"].GetName(),
                                                                         folder=result["outputDir"])
        return " " + _("Table '{name}'; files in {folder}").format(name=result["table"].GetName(),
                                                                   folder=result["outputDir"])

    @staticmethod
    def _showResult(job):
        """Fit the slice views to a new template or Jacobian map; a change chart goes into the layout
        (where Slicer's Plots module exists)."""
        if job.workflow == "segment" or job.result is None:
            return
        plots = getattr(getattr(slicer, "modules", None), "plots", None)
        if job.workflow == "change" and plots is not None:
            plots.logic().ShowChartInLayout(job.result["chart"])
        if getattr(slicer.app, "layoutManager", None) is not None and slicer.app.layoutManager() is not None:
            slicer.util.resetSliceViews()

    def onProgress(self, record):
        fraction = record.get("fraction")
        if fraction is not None:
            self.ui.progressBar.value = int(round(self.ui.progressBar.maximum * fraction))
        self.showStatus(record.get("text", ""))

    def onLog(self, line):
        self.ui.logPlainTextEdit.appendPlainText(str(line))

    # ------------------------------------------------------------------ messages
    def showStatus(self, text):
        self.ui.statusLabel.setStyleSheet("")
        self.ui.statusLabel.text = text

    def showError(self, text, log=True):
        """``text`` (one line) in red under the Apply button and, with ``log``, at the end of the log."""
        self.ui.statusLabel.setStyleSheet(ERROR_STYLE)
        self.ui.statusLabel.text = text
        if log:
            self.ui.logPlainTextEdit.appendPlainText(_("Error: ") + text)


def _selectText(combo, text):
    """Select ``text`` in ``combo``, adding it when missing (e.g. a preset file typed by the user)."""
    if combo.findText(text) < 0 and text:
        combo.addItem(text)
    combo.currentIndex = combo.findText(text)


def _errorText(error):
    """The one-line message of ``error``; unexpected errors also go to the log with their traceback."""
    from regsuite.errors import RegSuiteError

    if not isinstance(error, (RegSuiteError, ValueError)):
        logging.error("Registration Population: unexpected error", exc_info=error)
    return " ".join(str(error).split()) or type(error).__name__


class RegSuitePopulationTest(ScriptedLoadableModuleTest):
    """Self-test (run from Slicer: Reload and Test): segment a shifted blob from two shifted atlases."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_segment_from_scene_atlases()

    def test_segment_from_scene_atlases(self):
        import numpy as np

        self.delayDisplay("Registration Population: segment a blob from two scene atlases")
        k, j, i = np.meshgrid(*(np.arange(32.0),) * 3, indexing="ij")

        def blob(shift):  # an asymmetric blob (two Gaussians), shifted by whole voxels
            ci, cj, ck = 16 + shift[0], 16 + shift[1], 16 + shift[2]
            return (100 * np.exp(-(((i - ci) / 6) ** 2 + ((j - cj) / 8) ** 2 + ((k - ck) / 7) ** 2))
                    + 60 * np.exp(-(((i - ci - 6) / 3) ** 2 + ((j - cj + 4) / 3) ** 2 + ((k - ck) / 4) ** 2))
                    ).astype(np.float32)

        ijkToRAS = np.diag([3.0, 3.0, 3.0, 1.0])
        target = slicer.util.addVolumeFromArray(blob((0, 0, 0)), ijkToRAS, name="target")
        pairs = []
        for number, shift in enumerate(((1, -1, 0), (-1, 1, 1)), start=1):
            values = blob(shift)
            image = slicer.util.addVolumeFromArray(values, ijkToRAS, name=f"atlas {number}")
            labels = slicer.util.addVolumeFromArray((values > 30).astype(np.uint8), ijkToRAS,
                                                    name=f"atlas {number} labels",
                                                    nodeClassName="vtkMRMLLabelMapVolumeNode")
            pairs.append((image, labels))
        result = RegSuitePopulationLogic().segment(target, atlases=pairs, preset="rigid")
        self.assertEqual(result["segmentation"].GetSegmentation().GetNumberOfSegments(), 1)
        self.delayDisplay("Test passed")
