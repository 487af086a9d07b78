"""Registration Suite: the Slicer module (panel, parameter node binding and self-test).

The panel is thin: it reads its state from the parameter node, checks the inputs with the Logic
and runs ``RegSuiteRegistrationLogic.process(..., waitForCompletion=False)``, polling the returned
job from a timer on the main thread. PyTorch and the engine (``regsuite``) are imported lazily, so
loading this file never needs them; PyTorch is installed on demand when Apply is first pressed.
"""

import importlib.util
import json

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from RegSuiteRegistrationLib.logic import (LEARNED_STAGES, RegSuiteRegistrationLogic,  # Logic: re-exported
                                           presetStagesToRows, rowsToPresetStages)
from RegSuiteRegistrationLib.panel import errorText as _errorText, progressFraction, progressText  # noqa: F401
from RegSuiteRegistrationLib.panel import selectText as _selectText
from RegSuiteRegistrationLib.parameters import getParameterNode

__all__ = ["RegSuiteRegistration", "RegSuiteRegistrationWidget", "RegSuiteRegistrationLogic",
           "RegSuiteRegistrationTest", "progressFraction", "progressText"]

ERROR_STYLE = "color: #d32f2f;"
#: Fusion colours: "From preset" keeps the display preset's foreground colour map, the others replace it.
FUSION_COLORMAPS = {"From preset": None, "Grey": "Grey", "Iron": "Iron", "Rainbow": "Rainbow", "PET-Heat": "PET-Heat"}
DEFAULT_FUSION_PRESET = "Default"
STAGE_COLUMNS = ("model", "metric", "levels", "regularization", "step")  # the stage table's columns


#
# RegSuiteRegistration
#
class RegSuiteRegistration(ScriptedLoadableModule):
    """Module description shown by Slicer (title, category, help, acknowledgement)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Registration Suite"
        self.parent.categories = ["Registration.RegistrationSuite"]
        self.parent.dependencies = []
        self.parent.contributors = ["RegistrationSuite developers"]
        self.parent.helpText = """
Registers a moving volume onto a fixed volume in physical space (PyTorch engine, CPU or CUDA) and
stores the result as a transform node, optionally with the resampled moving volume.
<p>Presets: <b>rigid</b>, <b>affine</b>, <b>affine-fast</b>, <b>bspline</b>, <b>deformable</b>,
<b>brain-mri</b>, <b>brain-mri-coarse</b> (2 mm, for population work), <b>lung-ct</b>,
<b>multimodal-rigid</b> and <b>ct-mr</b>, plus your own: edit the
stages in the Advanced section (levels are <i>shrink/smoothing/iterations</i> separated by ';') and
use <i>Save as preset...</i>. Optional masks (label map or segmentation) restrict the similarity
measure; an optional initial transform starts the search.</p>
<p>Deep learning (skull-stripped T1 brain MRI): <b>brain-mri-voxelmorph</b> (affine, then one
pass of a VoxelMorph network; <b>brain-mri-voxelmorph-ic</b>: one trained for inverse consistency;
<b>brain-mri-voxelmorph-cascade</b>: a network trained as a cascade, run twice), <b>brain-mri-fast</b> (the network, then a short optimisation) and
<b>brain-mri-hypermorph</b>, whose <i>Smoothness (lambda)</i> slider changes the finished result
in place, without running again; <b>brain-any-contrast</b> (and <b>brain-any-contrast-io</b>, with a short MIND-SSC
optimisation) for two brains of any MRI contrasts (T1, T2, PD, unknown).</p>
<p>Results: the <i>Display preset</i> (Default, PET on CT, PET on MR, CT on MR, MR on CT) sets the
fusion's colour maps, window/levels, a threshold below which the moving image is transparent, and
its opacity, in linked slice views; <i>Fusion colours</i> replaces the preset's colour map.</p>
<p>PyTorch is installed on first use, after you confirm.</p>
<p>From the Python console:</p>
<pre>
from RegSuiteRegistration import RegSuiteRegistrationLogic
logic = RegSuiteRegistrationLogic()
outputs = logic.process(fixedVolume, movingVolume, preset="rigid")
print(outputs.summaryText())
</pre>
<p>See <a href="https://github.com/RegistrationSuite/RegistrationSuite">the project page</a>.</p>
"""
        self.parent.acknowledgementText = """
Developed by the RegistrationSuite developers. The engine builds on PyTorch, SimpleITK and NumPy;
the panel follows the conventions of 3D Slicer's scripted module template.
"""


#
# RegSuiteRegistrationWidget
#
class RegSuiteRegistrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: Inputs, Outputs, Advanced (stage table, presets, log), Apply/Cancel and Results."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._updatingGUI = False
        self._timer = None
        self._job = None
        self._runFixedVolume = None  # fixed volume of the shown result
        self._outputs = None
        self._presetDict = None  # the preset the stage table shows (as edited)
        self._tableSource = None  # (preset, presetOverride) the table was filled from
        self._learnedPresets = set()  # names of the presets with a network stage (Method: Deep learning)
        self._lambdaTimer = None
        self._lambdaJob = None  # lambdas.LambdaJob of the shown HyperMorph result
        self._droppedLambdaJobs = []  # jobs whose computation was still running when dropped

    # ------------------------------------------------------------------ set-up and life cycle
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RegSuiteRegistration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = RegSuiteRegistrationLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self.onTimer)

        self._lambdaTimer = qt.QTimer()
        self._lambdaTimer.setInterval(50)
        self._lambdaTimer.connect("timeout()", self.onLambdaTimer)

        # The second Method lists the learned presets (a network stage); each Method lists its own.
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        slider = self.ui.lambdaSliderWidget
        slider.minimum, slider.maximum, slider.singleStep, slider.decimals = 0.0, 1.0, 0.05, 2
        self._setLambdaVisible(False)
        header = self.ui.stagesTableWidget.horizontalHeader()
        for column in range(self.ui.stagesTableWidget.columnCount):  # Levels takes the spare width
            mode = qt.QHeaderView.Stretch if STAGE_COLUMNS[column] == "levels" else qt.QHeaderView.ResizeToContents
            header.setSectionResizeMode(column, mode)
        self.ui.progressBar.hide()
        self.refreshPresetNames()
        self.refreshDeviceItems()
        self.refreshFusionPresets()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for selector in self._nodeSelectors().values():
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        self.ui.presetComboBox.connect("currentIndexChanged(int)", self.onPresetChanged)
        slider.connect("valueChanged(double)", self.onLambdaChanged)
        self.ui.stagesTableWidget.connect("itemChanged(QTableWidgetItem*)", self.onStageTableEdited)
        self.ui.revertPresetButton.connect("clicked()", self.onRevertPreset)
        self.ui.savePresetButton.connect("clicked()", self.onSavePreset)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.checkerboardButton.connect("toggled(bool)", self.onCheckerboardToggled)
        self.ui.fusionColormapComboBox.connect("currentIndexChanged(int)", self.onFusionColormapChanged)
        self.ui.fusionPresetComboBox.connect("currentIndexChanged(int)", self.onFusionPresetChanged)

        self._setResultsAvailable(False)
        self.initializeParameterNode()

    def cleanup(self):
        """Called when the application closes and the module widget is destroyed."""
        self._stopJob()
        self._stopLambda()
        for job in self._droppedLambdaJobs:  # a thread inside PyTorch at interpreter exit would abort Slicer
            job.stop(timeout=30.0)
        self._droppedLambdaJobs = []
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self._observeParameterNode(False)  # a running job still stores its outputs in the parameter node

    def onSceneStartClose(self, caller, event):
        self._stopJob()
        self._stopLambda()
        self._outputs = self._runFixedVolume = None
        self._setResultsAvailable(False)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def _stopJob(self):
        """Cancels a running registration without waiting for its end (scene close, module cleanup)."""
        if self._timer is not None:
            self._timer.stop()
        if self._job is not None:
            self._job.cancel()
            self._job = None
            self._setRunning(False)
            self.ui.progressBar.hide()  # no progress or status of the stopped run is left showing
            self.clearStatus()

    # ------------------------------------------------------------------ parameter node
    def _nodeSelectors(self):
        return {"fixedVolume": self.ui.fixedVolumeSelector, "movingVolume": self.ui.movingVolumeSelector,
                "fixedMask": self.ui.fixedMaskSelector, "movingMask": self.ui.movingMaskSelector,
                "initialTransform": self.ui.initialTransformSelector,
                "outputTransform": self.ui.outputTransformSelector, "outputVolume": self.ui.outputVolumeSelector}

    def initializeParameterNode(self):
        self.setParameterNode(getParameterNode(self.logic))
        parameters = self._parameterNode
        if parameters.fixedVolume is None and parameters.movingVolume is None:
            volumes = [node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                       if not node.IsA("vtkMRMLLabelMapVolumeNode")]
            if len(volumes) >= 2:
                with slicer.util.NodeModify(parameters.parameterNode):
                    parameters.fixedVolume, parameters.movingVolume = volumes[0], volumes[1]

    def setParameterNode(self, parameterNode):
        """Observes ``parameterNode`` (a RegSuiteRegistrationParameterNode or None) and shows its state."""
        self._observeParameterNode(False)
        self._parameterNode = parameterNode
        self._tableSource = None
        if parameterNode is not None:
            self._observeParameterNode(True)
            self.updateGUIFromParameterNode()

    def _observeParameterNode(self, observe):
        if self._parameterNode is None:
            return
        arguments = (self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        if observe and not self.hasObserver(*arguments):
            self.addObserver(*arguments)
        elif not observe and self.hasObserver(*arguments):
            self.removeObserver(*arguments)

    def updateGUIFromParameterNode(self, caller=None, event=None):
        parameters = self._parameterNode
        if parameters is None or self._updatingGUI:
            return
        self._updatingGUI = True
        try:
            for name, selector in self._nodeSelectors().items():
                selector.setCurrentNode(getattr(parameters, name))
            self._showMethodOf(parameters.preset)
            _selectText(self.ui.presetComboBox, parameters.preset)
            _selectText(self.ui.deviceComboBox, parameters.device)
            self._updateStageTable()
        finally:
            self._updatingGUI = False
        self._updateButtons()

    def updateParameterNodeFromGUI(self, caller=None, event=None):
        parameters = self._parameterNode
        if parameters is None or self._updatingGUI:
            return
        with slicer.util.NodeModify(parameters.parameterNode):
            for name, selector in self._nodeSelectors().items():
                setattr(parameters, name, selector.currentNode())
            parameters.device = self.ui.deviceComboBox.currentText

    def _updateButtons(self):
        parameters = self._parameterNode
        running = self._job is not None
        ready = parameters is not None and parameters.fixedVolume is not None and parameters.movingVolume is not None
        self.ui.applyButton.enabled = running or ready
        self.ui.applyButton.toolTip = ("Stop the registration; the scene is left as it was." if running else
                                       "Run the registration." if ready else "Select the fixed and moving volumes.")
        self.ui.revertPresetButton.enabled = not running and parameters is not None and bool(parameters.presetOverride)
        self.ui.savePresetButton.enabled = not running and self._presetDict is not None

    # ------------------------------------------------------------------ presets and the stage table
    def refreshPresetNames(self):
        """Lists the presets of the chosen Method (learned ones: a network stage) in the preset box."""
        combo = self.ui.presetComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        try:
            names = self.logic.presetNames()
            self._learnedPresets = {name for name in names if self._isLearned(name)}
            learned = self.ui.methodComboBox.currentIndex == 1
            combo.addItems([name for name in names if (name in self._learnedPresets) == learned])
        except Exception as error:
            self.showError(_errorText(error), popup=False)
        if self._parameterNode is not None:
            _selectText(combo, self._parameterNode.preset)
        combo.blockSignals(wasBlocked)

    def _isLearned(self, name):
        try:
            return any(stage["model"] in LEARNED_STAGES for stage in self.logic.loadPreset(name)["stages"])
        except Exception:
            return False  # a broken user preset is listed with the iterative ones and reported when chosen

    def _showMethodOf(self, preset):
        """Shows the Method of ``preset`` (and that Method's presets), without signals."""
        index = 1 if preset in self._learnedPresets else 0
        if self.ui.methodComboBox.currentIndex != index:
            wasBlocked = self.ui.methodComboBox.blockSignals(True)
            self.ui.methodComboBox.currentIndex = index
            self.ui.methodComboBox.blockSignals(wasBlocked)
            self.refreshPresetNames()

    def refreshDeviceItems(self):
        """Enables 'cuda' only when the Logic sees a CUDA device (False while PyTorch is absent)."""
        cuda = self.logic.cudaAvailable()
        item = self.ui.deviceComboBox.model().item(self.ui.deviceComboBox.findText("cuda"))
        item.setEnabled(cuda)
        item.setToolTip("" if cuda else "No CUDA GPU is available to PyTorch (or PyTorch is not installed yet).")

    def onMethodChanged(self, index):
        """The user chose a Method: its presets are listed; a preset of the other Method gives way to the
        Method's usual one (brain-mri-fast, brain-mri) or its first."""
        parameters, learned = self._parameterNode, index == 1
        if parameters is not None and not self._updatingGUI and (parameters.preset in self._learnedPresets) != learned:
            try:
                names = [name for name in self.logic.presetNames() if (name in self._learnedPresets) == learned]
            except Exception as error:
                names = []
                self.showError(_errorText(error), popup=False)
            if names:  # the Method's usual preset first, else the first in the list
                usual = "brain-mri-fast" if learned else "brain-mri"
                self._setPreset(usual if usual in names else names[0])
        self.refreshPresetNames()

    def onPresetChanged(self, index):
        if self._parameterNode is None or self._updatingGUI:
            return
        self._setPreset(self.ui.presetComboBox.currentText)

    def _setPreset(self, name):
        with slicer.util.NodeModify(self._parameterNode.parameterNode):
            self._parameterNode.preset = name
            self._parameterNode.presetOverride = ""

    def onRevertPreset(self):
        self._setPreset(self._parameterNode.preset)
        self.clearStatus()

    def _updateStageTable(self):
        """Fills the table from the edited preset (presetOverride) or the named preset, when either changed."""
        parameters = self._parameterNode
        source = (parameters.preset, parameters.presetOverride)
        if source == self._tableSource:
            return
        self._tableSource = source
        try:
            if parameters.presetOverride:
                self._presetDict = json.loads(parameters.presetOverride)
            else:
                self._presetDict = self.logic.loadPreset(parameters.preset)
        except Exception as error:
            self._presetDict = None
            self.showError(_errorText(error), popup=False)
        table = self.ui.stagesTableWidget
        wasBlocked = table.blockSignals(True)
        rows = presetStagesToRows(self._presetDict) if self._presetDict is not None else []
        table.setRowCount(len(rows))
        for rowIndex, row in enumerate(rows):
            for column, key in enumerate(STAGE_COLUMNS):
                table.setItem(rowIndex, column, qt.QTableWidgetItem(row[key]))
        table.blockSignals(wasBlocked)
        self._updateLambdaSlider()

    def _tableRows(self):
        """The stage table's cells as rows for ``rowsToPresetStages``."""
        table = self.ui.stagesTableWidget
        return [{key: table.item(row, column).text() if table.item(row, column) else ""
                 for column, key in enumerate(STAGE_COLUMNS)} for row in range(table.rowCount)]

    def onStageTableEdited(self, item=None):
        """Parses the edited cells into the preset; a bad cell is reported and nothing is stored."""
        if self._parameterNode is None or self._updatingGUI or self._presetDict is None:
            return
        try:
            edited = rowsToPresetStages(self._presetDict, self._tableRows())
        except Exception as error:
            self.showError(_errorText(error), popup=False)
            return
        self.clearStatus()
        self._presetDict = edited
        text = json.dumps(edited)
        self._tableSource = (self._parameterNode.preset, text)  # the table already shows it
        self._parameterNode.presetOverride = text

    def onSavePreset(self):
        if self._presetDict is None:
            return
        suggestion = f"{self._parameterNode.preset}-custom"
        name = qt.QInputDialog.getText(slicer.util.mainWindow(), "Save as preset", "Name of the new preset:",
                                       qt.QLineEdit.Normal, suggestion)
        name = (name or "").strip()
        if not name:
            return
        try:
            path = self.logic.savePreset(self._presetDict, name)
        except Exception as error:
            self.showError(_errorText(error))
            return
        self.refreshPresetNames()
        self._setPreset(name)
        self.showStatus(f"Saved preset '{name}' to {path}.")

    def _presetForRun(self):
        """The preset name, or the edited preset dict; a bad table cell raises PresetError."""
        parameters = self._parameterNode
        rows = self._tableRows()
        if self._presetDict is not None and rows != presetStagesToRows(self._presetDict):
            return rowsToPresetStages(self._presetDict, rows)  # an edit that was not accepted yet
        return json.loads(parameters.presetOverride) if parameters.presetOverride else parameters.preset

    # ------------------------------------------------------------------ HyperMorph lambda
    def _setLambdaVisible(self, visible):
        self.ui.lambdaLabel.visible = visible
        self.ui.lambdaSliderWidget.visible = visible

    def _updateLambdaSlider(self):
        """The slider shows the preset's lambda, only for presets ending with a HyperMorph stage."""
        stages = (self._presetDict or {}).get("stages") or [{}]
        lam = stages[-1].get("lambda") if stages[-1].get("model") == "network" else None
        self._setLambdaVisible(lam is not None)
        if lam is not None:
            slider = self.ui.lambdaSliderWidget
            wasBlocked = slider.blockSignals(True)
            slider.value = float(lam)
            slider.blockSignals(wasBlocked)

    def onLambdaChanged(self, value):
        """Sets the preset's lambda for the next run and updates a finished HyperMorph result in place."""
        if self._parameterNode is None or self._updatingGUI or self._presetDict is None:
            return
        try:
            edited = self.logic.presetWithLambda(self._presetDict, value)
        except Exception as error:
            self.showError(_errorText(error), popup=False)
            return
        self._presetDict = edited
        text = json.dumps(edited)
        self._tableSource = (self._parameterNode.preset, text)  # the table shows the same stages
        self._parameterNode.presetOverride = text
        if self._lambdaJob is not None and self._job is None:
            self._lambdaJob.request(value)  # computed in a thread; only the latest value while dragging
            self.showStatus(f"Updating the result for lambda {value:.2f}...")
            self._lambdaTimer.start()

    def onLambdaTimer(self):
        """Polls the lambda thread on the main thread: the finished result goes into the scene."""
        job = self._lambdaJob
        if job is None:
            self._lambdaTimer.stop()
            return
        update, error = job.poll()
        if error:
            self.showError(error, popup=False)
        elif update is not None:
            self.showStatus(f"Lambda {update.lam:.2f}: result updated in {update.seconds:.1f} s.")
            if self._outputs is not None:
                self.ui.summaryLabel.text = self._outputs.summaryText()
        if not job.busy:
            self._lambdaTimer.stop()

    def _startLambda(self, outputs):
        """After a HyperMorph run: keep its updater and warm it up (network loaded) in a thread."""
        self._stopLambda()
        if outputs.lambdaUpdater is None:
            return
        from RegSuiteRegistrationLib.lambdas import LambdaJob

        self._lambdaJob = LambdaJob(outputs.lambdaUpdater)
        self._lambdaJob.prepare()
        self._lambdaTimer.start()

    def _stopLambda(self):
        """Forget the shown result's lambda updates (a computation still running is ignored)."""
        if self._lambdaTimer is not None:
            self._lambdaTimer.stop()
        job, self._lambdaJob = self._lambdaJob, None
        self._droppedLambdaJobs = [dropped for dropped in self._droppedLambdaJobs if not dropped.stop()]
        if job is not None and not job.stop():
            self._droppedLambdaJobs.append(job)  # cleanup() waits for it

    # ------------------------------------------------------------------ running
    def onApplyButton(self):
        if self._job is not None:
            self._job.cancel()
            self.ui.applyButton.enabled = False
            self.showStatus("Cancelling...")
            return
        self.clearStatus()
        parameters = self._parameterNode
        try:
            inputs = {"fixedVolume": parameters.fixedVolume, "movingVolume": parameters.movingVolume,
                      "fixedMask": parameters.fixedMask, "movingMask": parameters.movingMask,
                      "initialTransform": parameters.initialTransform, "preset": self._presetForRun(),
                      "device": parameters.device, "outputTransform": parameters.outputTransform,
                      "outputVolume": parameters.outputVolume}
            torchFound = importlib.util.find_spec("torch") is not None
            # Without PyTorch no device can be checked yet: check the rest, install, then check the device.
            self.logic.validateInputs(**dict(inputs, device=inputs["device"] if torchFound else "auto"))
        except Exception as error:
            self.showError(_errorText(error))
            return
        from RegSuiteRegistrationLib.dependencies import ensureTorch

        if not ensureTorch(askConfirmation=True):
            self.showError("Registration needs PyTorch, which is not installed.")
            return
        try:
            if not torchFound:
                self.refreshDeviceItems()
                self.logic.validateInputs(**inputs)
            self.ui.logPlainTextEdit.clear()
            job = self.logic.process(progress=self.onProgress, log=self.onLog, waitForCompletion=False, **inputs)
        except Exception as error:
            self.showError(_errorText(error))
            return
        self._job = job
        self._stopLambda()  # the run replaces the result the slider changed
        self._runFixedVolume = parameters.fixedVolume
        self._setResultsAvailable(False)
        self._setRunning(True)
        self.showStatus("Starting...")
        self._timer.start()

    def _setRunning(self, running):
        for widget in (self.ui.inputsCollapsibleButton, self.ui.outputsCollapsibleButton, self.ui.stagesTableWidget):
            widget.enabled = not running
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        if running:
            self.ui.progressBar.value = 0
            self.ui.progressBar.show()
        self._updateButtons()

    def onTimer(self):
        """Polls the job on the main thread: progress, log lines, and the MRML nodes when it ends."""
        job = self._job
        if job is None:
            self._timer.stop()
            return
        try:
            if job.poll():
                return
        except Exception as error:
            job.cancel()  # stop the worker: this panel no longer follows it
            self._finishJob(_errorText(error))
            return
        self._finishJob()

    def _finishJob(self, error=None):
        job, self._job = self._job, None
        self._timer.stop()
        self._setRunning(False)
        state = "failed" if error else job.state
        if state == "completed":
            self.ui.progressBar.value = self.ui.progressBar.maximum
            self._showOutputs(job.outputs)
            self.showStatus(f"Done in {job.elapsed:.1f} s.")
        elif state == "cancelled":
            self.ui.progressBar.hide()
            self.showStatus("Cancelled; the scene is unchanged.")
        else:
            self.ui.progressBar.hide()
            self.showError(error or job.error or "the registration failed")

    def onProgress(self, event):
        try:
            fraction, text = progressFraction(event), progressText(event)
        except (KeyError, TypeError, ValueError):
            return  # an event this panel cannot show; the run goes on
        self.ui.progressBar.value = int(round(self.ui.progressBar.maximum * fraction))
        self.showStatus(text)

    def onLog(self, line):
        self.ui.logPlainTextEdit.appendPlainText(str(line))

    # ------------------------------------------------------------------ results
    def _showOutputs(self, outputs):
        self._outputs = outputs
        parameters = self._parameterNode
        if parameters is not None:
            with slicer.util.NodeModify(parameters.parameterNode):
                parameters.outputTransform = outputs.transformNode
                if outputs.outputVolumeNode is not None:
                    parameters.outputVolume = outputs.outputVolumeNode
        self.ui.summaryLabel.text = outputs.summaryText()
        # the Logic shows the plain fusion (the volumes keep their display); a display preset or colours
        # the user chose for an earlier result apply to this one too
        wasBlocked = self.ui.checkerboardButton.blockSignals(True)
        self.ui.checkerboardButton.checked = False
        self.ui.checkerboardButton.blockSignals(wasBlocked)
        self._setResultsAvailable(True)
        self.ui.resultsCollapsibleButton.collapsed = False
        if (self.ui.fusionPresetComboBox.currentText != DEFAULT_FUSION_PRESET
                or FUSION_COLORMAPS.get(self.ui.fusionColormapComboBox.currentText) is not None):
            self._showView(False)
        self._startLambda(outputs)

    def _setResultsAvailable(self, available):
        self.ui.checkerboardButton.enabled = available
        self.ui.fusionColormapComboBox.enabled = available
        self.ui.fusionPresetComboBox.enabled = available
        if not available:
            self.ui.summaryLabel.text = "Run a registration to see its summary here."

    def _showView(self, checkerboard):
        if self._outputs is None:
            return
        try:
            if checkerboard:
                self.logic.showCheckerboard(self._runFixedVolume, self._outputs)
            else:
                colormap = FUSION_COLORMAPS.get(self.ui.fusionColormapComboBox.currentText)
                self.logic.applyFusionPreset(self._runFixedVolume, self.logic.registeredVolume(self._outputs),
                                             self.ui.fusionPresetComboBox.currentText, colormap=colormap)
        except Exception as error:
            self.showError(_errorText(error))

    def onCheckerboardToggled(self, checked):
        self._showView(checked)

    def onFusionColormapChanged(self, index):
        if self.ui.checkerboardButton.checked:
            self.ui.checkerboardButton.checked = False  # back to the fusion, in the new colours
        else:
            self._showView(False)

    def refreshFusionPresets(self):
        """Lists the Logic's fusion display presets, each with its description as tooltip."""
        combo = self.ui.fusionPresetComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        try:
            for name, description in self.logic.fusionPresetDescriptions().items():
                combo.addItem(name)
                combo.setItemData(combo.count - 1, description, qt.Qt.ToolTipRole)
        except Exception as error:
            self.showError(_errorText(error), popup=False)
        combo.currentIndex = max(combo.findText(DEFAULT_FUSION_PRESET), 0)
        combo.blockSignals(wasBlocked)

    def onFusionPresetChanged(self, index):
        """A display preset shows in its own colours: the colour choice goes back to 'From preset'."""
        wasBlocked = self.ui.fusionColormapComboBox.blockSignals(True)
        self.ui.fusionColormapComboBox.currentIndex = 0
        self.ui.fusionColormapComboBox.blockSignals(wasBlocked)
        if self.ui.checkerboardButton.checked:
            self.ui.checkerboardButton.checked = False  # back to the fusion, as the preset shows it
        else:
            self._showView(False)

    # ------------------------------------------------------------------ messages
    def showStatus(self, text):
        self.ui.statusLabel.setStyleSheet("")
        self.ui.statusLabel.text = text

    def clearStatus(self):
        self.showStatus("")

    def showError(self, text, popup=True):
        """Shows ``text`` in red under the Apply button and, unless ``popup`` is False, in a dialog."""
        self.ui.statusLabel.setStyleSheet(ERROR_STYLE)
        self.ui.statusLabel.text = text
        if popup:
            slicer.util.errorDisplay(text, windowTitle="Registration Suite")


#
# RegSuiteRegistrationTest
#
class RegSuiteRegistrationTest(ScriptedLoadableModuleTest):
    """Self-test for the Slicer application: a rigid registration recovers a known shift."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RigidRecoversShift()

    def test_RigidRecoversShift(self):
        import numpy as np

        self.delayDisplay("Rigid registration of a shifted synthetic volume")
        k, j, i = np.meshgrid(*(np.arange(48.0),) * 3, indexing="ij")

        def blobs(center):  # two Gaussian blobs: an asymmetric shape, so the pose is unique
            ci, cj, ck = center
            return (100 * np.exp(-(((i - ci) / 6) ** 2 + ((j - cj) / 9) ** 2 + ((k - ck) / 7) ** 2))
                    + 60 * np.exp(-(((i - ci - 8) / 4) ** 2 + ((j - cj + 6) / 4) ** 2 + ((k - ck) / 5) ** 2))
                    ).astype(np.float32)

        ijkToRAS = np.diag([2.0, 2.0, 2.0, 1.0])  # 2 mm voxels, axes along R, A, S
        fixedCenter, shift = np.array([24.0, 24.0, 24.0]), np.array([2.5, -1.0, 1.5])  # voxels
        fixed = slicer.util.addVolumeFromArray(blobs(fixedCenter), ijkToRAS, name="fixed")
        moving = slicer.util.addVolumeFromArray(blobs(fixedCenter + shift), ijkToRAS, name="moving")

        outputs = RegSuiteRegistrationLogic().process(fixed, moving, preset="rigid", device="cpu",
                                                      waitForCompletion=True)

        # The result moves the moving volume onto the fixed one: to-world maps moving points to fixed points.
        toWorld = vtk.vtkGeneralTransform()
        slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(outputs.transformNode, None, toWorld)
        for offset in ([0.0, 0.0, 0.0], [8.0, -6.0, 0.0]):
            fixedPoint = 2.0 * (fixedCenter + offset)
            mapped = np.array(toWorld.TransformPoint(2.0 * (fixedCenter + shift + offset)))
            self.assertLess(np.linalg.norm(mapped - fixedPoint), 1.0, f"{mapped} should be near {fixedPoint}")
        self.delayDisplay("Test passed")
