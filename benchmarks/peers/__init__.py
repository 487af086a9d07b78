"""One module per registration tool; each exposes ``run(fixed_path, moving_path, out_dir,
fixed_mask=None, threads=2, suite="brain") -> dict`` executed inside a fresh child process.

The returned dict has ``transform_path`` (SimpleITK-readable, fixed world -> moving world, or a
displacement field on the fixed grid), ``seconds`` (registration wall time), ``peak_rss_mb`` and
optionally ``affine_transform_path`` and ``tool_warped_path`` (the tool's own resampled moving
image, used to verify the conversion).
"""

TOOLS = ("regsuite", "greedy", "ants", "elastix", "sitk")

#: tool name -> module name inside this package
MODULES = {
    "regsuite": "regsuite_cli",
    "greedy": "greedy",
    "ants": "ants_syn",
    "elastix": "elastix",
    "sitk": "sitk_bspline",
    "identity": "identity",
}
