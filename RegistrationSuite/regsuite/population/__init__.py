"""Workflows built on many registrations: multi-atlas segmentation, templates, longitudinal change.

One concept per module: :mod:`.tasks` (a unit of work described by file paths), :mod:`.runner`
(where tasks run: this process, a Dask ``LocalCluster`` or a running scheduler),
:mod:`.steps` (the task functions), :mod:`.workspace` (a run's folder and ``--resume``),
:mod:`.atlases`, :mod:`.fusion` (label fusion), and the three workflows :mod:`.segment`,
:mod:`.template` and :mod:`.change` behind ``regsuite segment/template/change``.
"""
