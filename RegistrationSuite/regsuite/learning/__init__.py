"""Learned registration: networks, their canonical grid, training and the shipped models.

See ``docs/LEARNING.md``. The engine runs a learned model as one more stage kind
(``regsuite.engine.stages.network``); this package holds what that stage and ``regsuite train``
need: :mod:`.networks` (VoxelMorph, HyperMorph), :mod:`.canonical` (the model's grid and
intensities), :mod:`.field` (the network's output as the engine's velocity field), :mod:`.models`
(checked loading of ``regsuite/models/<name>``), :mod:`.inference`, :mod:`.session` (HyperMorph's
lambda after a run), :mod:`.config`, :mod:`.data` and :mod:`.training`.
"""
