"""The JSON API through FastAPI's test client: every endpoint and every kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pictures import STROKES, draw_strokes, encode, paper_photo, png_bomb
from PIL import Image

from digits.predict.calibration import load_calibration
from digits.predict.predictor import predict_proba
from digits.runs import load_model
from digits.serve.app import create_app
from digits.serve.preprocess import Limits
from digits.serve.reader import DigitReader

LIMITS = Limits(max_body_bytes=2 * 2**20, max_pixels=4_000_000, max_side=4000, max_batch=16)


@pytest.fixture(scope="module")
def reader(run_dir) -> DigitReader:
    return DigitReader.open(run_dir, "torch")


@pytest.fixture(scope="module")
def client(reader) -> TestClient:
    with TestClient(create_app(reader, LIMITS)) as client:
        yield client


def _png(img: Image.Image) -> bytes:
    return encode(img)


def test_health_names_the_model_version_and_runtime(client, reader):
    answer = client.get("/api/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "model_version": reader.summary.version, "runtime": "torch"}
    assert reader.summary.version.startswith("mlp-")


def test_model_card_has_parameters_accuracy_and_limits(client):
    card = client.get("/api/model").json()
    assert card["architecture"] == "mlp" and card["args"] == {"hidden": [256]}
    assert card["parameters"] == 784 * 256 + 256 + 256 * 10 + 10
    assert card["accuracy_source"] == "validation" and 0.5 < card["accuracy"] <= 1.0
    assert card["limits"]["max_batch"] == 16


def test_page_and_its_static_files_are_served_for_offline_use(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<canvas id="pad"' in page.text
    for src in ("/static/app.js", "/static/app.css"):
        assert src in page.text
        assert client.get(src).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere


def test_openapi_docs_describe_every_endpoint(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/health", "/api/model"} <= set(spec["paths"])
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data", "image/png", "image/jpeg"} <= set(body)


def test_json_pixels_predict_as_the_model_does_on_the_fixture(client, run_dir, fixture_test):
    images, labels = fixture_test
    model, _ = load_model(run_dir)
    expected = predict_proba(model, images[:40]).argmax(1)
    got = []
    for digit in images[:40]:
        answer = client.post("/api/predict", json={"pixels": digit.tolist()})
        assert answer.status_code == 200
        got.append(answer.json()["label"])
    assert np.mean(np.array(got) == expected) >= 0.95  # preprocessing moves a few pixels by one
    assert np.mean(np.array(got) == labels[:40]) >= 0.8


def test_a_flat_list_of_784_reads_like_28_rows(client, fixture_test):
    digit = fixture_test[0][1]
    rows = client.post("/api/predict", json={"pixels": digit.tolist()}).json()
    flat = client.post("/api/predict", json={"pixels": digit.ravel().tolist()}).json()
    assert rows == flat
    assert abs(sum(rows["probabilities"]) - 1) < 1e-4
    assert rows["label"] == int(np.argmax(rows["probabilities"]))


def test_a_json_batch_answers_each_image_in_order(client, fixture_test):
    images = fixture_test[0][:5]
    singles = [client.post("/api/predict", json={"pixels": d.tolist()}).json()["label"] for d in images]
    batch = client.post("/api/predict", json={"images": [d.tolist() for d in images]})
    assert batch.status_code == 200
    assert [p["label"] for p in batch.json()["predictions"]] == singles
    assert batch.json()["model_version"]


def test_png_and_jpeg_bodies_are_read(client):
    drawing = draw_strokes(STROKES[7])
    for body, kind in ((_png(drawing), "image/png"), (encode(drawing, "JPEG", quality=90), "image/jpeg")):
        answer = client.post("/api/predict", content=body, headers={"content-type": kind})
        assert answer.status_code == 200, answer.text
        assert answer.json()["label"] == 7


def test_multipart_uploads_one_file_or_a_batch(client, fixture_test):
    photo = _png(paper_photo(fixture_test[0][0]))
    one = client.post("/api/predict", files={"file": ("photo.png", photo, "image/png")})
    assert one.status_code == 200 and one.json()["digit_found"]
    drawn_one = _png(draw_strokes(STROKES[1]))
    many = client.post("/api/predict", files=[("file", ("a.png", photo, "image/png")),
                                              ("file", ("b.png", drawn_one, "image/png"))])
    assert many.status_code == 200
    assert [p["label"] for p in many.json()["predictions"]] == [one.json()["label"], 1]


def test_the_image_the_model_saw_is_returned_on_request(client):
    answer = client.post("/api/predict?include_image=true", content=_png(draw_strokes(STROKES[0])),
                         headers={"content-type": "image/png"}).json()
    image = np.array(answer["image"])
    assert image.shape == (28, 28) and image.max() == 255 and image[0].max() == 0


def test_raw_28x28_pixels_can_skip_preprocessing(client, run_dir, fixture_test):
    digit = fixture_test[0][2]
    model, _ = load_model(run_dir)
    answer = client.post("/api/predict?preprocess=false", json={"pixels": digit.tolist()}).json()
    calibrated = load_calibration(run_dir).apply(predict_proba(model, digit[None]))[0]  # as the API answers
    assert np.allclose(answer["probabilities"], calibrated, atol=1e-5)


def test_a_blank_canvas_is_no_digit_not_a_guess(client):
    answer = client.post("/api/predict", content=_png(Image.new("L", (280, 280), 255)),
                         headers={"content-type": "image/png"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["label"] is None and body["probabilities"] is None and not body["digit_found"]
    assert "no digit" in body["message"]


BOMB = png_bomb(20_000)
PNG_7 = encode(draw_strokes(STROKES[7]))


@pytest.mark.parametrize(("kwargs", "status", "message"), [
    ({"content": b"7", "headers": {"content-type": "text/plain"}}, 415, "'text/plain' is not accepted"),
    ({"content": b"7"}, 415, "no Content-Type is not accepted"),
    ({"content": b"GIF89a...", "headers": {"content-type": "image/gif"}}, 415, "image/gif"),
    ({"content": b"\x89PNG\r\n\x1a\n broken", "headers": {"content-type": "image/png"}}, 422, "broken image"),
    ({"content": PNG_7[:300], "headers": {"content-type": "image/png"}}, 422, "broken image"),
    ({"content": b"%PDF-1.4", "headers": {"content-type": "image/jpeg"}}, 415, "not a PNG or JPEG"),
    ({"content": BOMB, "headers": {"content-type": "image/png"}}, 413, "too large to decode"),
    ({"content": encode(Image.new("L", (2500, 2500), 255)), "headers": {"content-type": "image/png"}},
     413, "2500x2500 pixels is over the limit"),
    ({"content": b"\0" * (3 * 2**20), "headers": {"content-type": "image/png"}}, 413, "over the limit"),
    ({"files": {"file": ("big.png", b"\0" * (3 * 2**20), "image/png")}}, 413, "over the limit"),
    ({"files": {"file": ("bomb.png", BOMB, "image/png")}}, 413, "bomb.png: image too large"),
    ({"files": {"file": ("note.txt", b"hello", "text/plain")}}, 415, "note.txt: not a PNG or JPEG"),
    ({"files": [("file", ("a.png", PNG_7, "image/png"))] * 17}, 413, "17 images in one request"),
    ({"data": {"name": "no file"}, "headers": {"content-type": "multipart/form-data; boundary=x"}},
     422, "multipart"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "not valid JSON"),
    ({"json": [1, 2, 3]}, 422, 'with "pixels"'),
    ({"json": {"pixels": [0] * 784, "images": []}}, 422, 'with "pixels"'),
    ({"json": {"pixel": [0] * 784}}, 422, 'with "pixels"'),
    ({"json": {"pixels": [[0] * 28] * 28 + [[0] * 28]}}, 422, "got a list of 29"),
    ({"json": {"pixels": [[0] * 28] * 27 + [[0] * 30]}}, 422, r"pixels[27]: expected 28 values, got 30"),
    ({"json": {"pixels": [0] * 783 + [255.5]}}, 422, "value [783] = 255.5 is outside 0-255"),
    ({"json": {"pixels": [-3] + [0] * 783}}, 422, "value [0] = -3 is outside 0-255"),
    ({"content": b'{"pixels": [NaN' + b", 0" * 783 + b"]}", "headers": {"content-type": "application/json"}},
     422, "outside 0-255"),
    ({"json": {"pixels": [None] * 784}}, 422, "is None, not a number"),
    ({"json": {"images": "all of them"}}, 422, '"images" must be a non-empty list'),
    ({"json": {"images": [[0] * 784, [0] * 10]}}, 422, "images[1]: expected 28 rows"),
    ({"json": {"images": [[0] * 784] * 17}}, 413, "17 images in one request"),
    ({"content": PNG_7, "headers": {"content-type": "image/png"}, "params": {"preprocess": "false"}},
     422, "must be 28x28, got 280x280"),
], ids=["text-plain", "no-content-type", "gif-type", "broken-png", "truncated-png", "pdf-as-jpeg",
        "bomb", "too-many-pixels", "body-too-large", "upload-too-large", "bomb-upload", "text-upload",
        "too-many-files", "form-without-file", "invalid-json", "json-list", "pixels-and-images",
        "misnamed-key",
        "29-rows", "30-columns", "over-255", "negative", "nan", "nulls", "images-not-a-list",
        "bad-batch-item",
        "batch-too-big", "raw-not-28x28"])
def test_bad_requests_get_a_4xx_that_says_what_is_wrong(client, kwargs, status, message):
    answer = client.post("/api/predict", **kwargs)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert client.get("/api/health").status_code == 200  # and the server is still there


def test_a_bad_query_parameter_is_a_422(client):
    answer = client.post("/api/predict?include_image=perhaps", json={"pixels": [0] * 784})
    assert answer.status_code == 422
    assert "include_image" in json.dumps(answer.json()["detail"])


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(client):
    chunks = (b"\0" * 65_536 for _ in range(48))  # 3 MiB, streamed with no Content-Length
    answer = client.post("/api/predict", content=chunks, headers={"content-type": "image/png"})
    assert answer.status_code == 413
    assert "over the limit of 2,097,152 bytes" in answer.json()["detail"]


def test_model_card_shows_the_recorded_test_score(run_dir, tmp_path, cli):
    import shutil

    from pictures import FIXTURES

    scored_run = tmp_path / "scored"
    shutil.copytree(run_dir, scored_run)
    assert cli("predict", scored_run, "--data", FIXTURES, "-q").code == 0
    assert cli("score", scored_run / "submission.csv", "--solution", FIXTURES / "solution.csv").code == 0
    score = json.loads((scored_run / "score.json").read_text())["score"]
    with TestClient(create_app(DigitReader.open(scored_run, "torch"), LIMITS)) as scored:
        card = scored.get("/api/model").json()
    assert card["accuracy"] == score and card["accuracy_source"] == "test"
