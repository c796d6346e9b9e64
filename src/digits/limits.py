"""The stated limits on what ``digits`` reads: each one generous for real data and far below
what would exhaust a machine. Checked before the work they bound, never after."""

from __future__ import annotations

# The largest registered model (pytorch-example) has 1.2 million parameters; 100 million
# (400 MB of fp32 weights) leaves room for any width a user or a tuning study asks for while
# refusing, before a byte is allocated, a model.json that asks for a billion.
MAX_PARAMETERS = 100_000_000

# A weights file whose model cannot be built to measure it (the ONNX server hashes the
# weights without torch): 100 million parameters in float64, the widest dtype we would write.
MAX_WEIGHTS_BYTES = 8 * MAX_PARAMETERS
# A safetensors header names each tensor in a few dozen bytes; ours are a few kilobytes.
MAX_WEIGHTS_HEADER_BYTES = 16 * 1024 * 1024

# Kaggle's train.csv (42,000 rows) is 77 MB uncompressed and deflates about 8:1. A member
# larger than this, or one that claims to inflate more than MAX_ZIP_RATIO times its
# compressed size (a zip bomb), is refused before a byte of it is inflated.
MAX_UNCOMPRESSED_BYTES = 1024 ** 3
MAX_ZIP_RATIO = 100
# Small members may compress very well (a few all-black digits); the ratio is only
# meaningful for members big enough to hurt.
RATIO_CHECK_FROM_BYTES = 16 * 1024 * 1024

# Run files (config, metrics, model card, checkpoint state) are a few kilobytes, well under a
# megabyte with a long history; anything far larger is not one of ours.
MAX_JSON_BYTES = 64 * 1024 * 1024
# Our files nest 4 levels deep. Python's JSON reader recurses once per level and fails with
# RecursionError near 1,000, so depth is bounded before parsing.
MAX_JSON_DEPTH = 64
