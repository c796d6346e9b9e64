"""Serving a trained run: the draw-a-digit page, the JSON API, ONNX export and ``predict-image``.

Modules: ``preprocess`` (MNIST-style preprocessing, no torch), ``runtime`` (torch or ONNX
Runtime behind one protocol), ``reader`` (preprocessing + runtime), ``app`` (FastAPI),
``server`` (uvicorn), ``export`` (ONNX), ``commands`` (the CLI's sub-commands).
"""
