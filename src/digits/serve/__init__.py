"""Serving a trained run (one model or an ensemble): the draw-a-digit page, the JSON API, ONNX
export and ``predict-image``.

    digits serve runs/RUN                      # http://127.0.0.1:8000/ ; API docs at /docs
    digits export runs/RUN --format onnx       # runs/RUN/model.onnx
    digits serve runs/RUN --runtime onnx       # the same app without importing torch
    digits predict-image photo.jpg scan.png --run runs/RUN [--show]

    curl -F file=@photo.jpg http://127.0.0.1:8000/api/predict
    curl -H 'Content-Type: image/png' --data-binary @digit.png http://127.0.0.1:8000/api/predict
    curl -H 'Content-Type: application/json' -d '{"pixels": [...784 values 0-255...]}' \\
         http://127.0.0.1:8000/api/predict              # or {"images": [P, P, ...]} for a batch

Modules: ``preprocess`` (MNIST-style preprocessing and image decoding, no torch), ``runtime``
(torch, through the library's Predictor, or ONNX Runtime behind one protocol), ``reader``
(preprocessing + runtime: the one path behind the page, the API and the CLI), ``inputs``
(request bodies to pictures), ``middleware`` (body and request limits, Host check, HEAD,
security headers), ``accesslog`` (one line per request), ``docs`` (/docs and /redoc from
installed assets), ``schemas`` (response shapes), ``app`` (FastAPI), ``protocol`` (read
deadlines and the connection bound on uvicorn's h11), ``settings`` (their limits, as plain
data), ``server`` (uvicorn), ``export`` (ONNX), ``commands`` (the CLI's sub-commands),
``static/`` (the page).
"""
