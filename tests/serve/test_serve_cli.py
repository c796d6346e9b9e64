"""The serving commands on the command line: export, predict-image, serve's errors."""

from __future__ import annotations

import shutil
import socket

from pictures import STROKES, draw_strokes, encode, paper_photo
from PIL import Image

from digits.cli import main


def test_export_writes_an_onnx_file(run_dir, tmp_path, capsys):
    out = tmp_path / "exported.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    assert out.stat().st_size > 100_000
    assert f"wrote {out}" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["exported.onnx"]  # no temporary file left


def test_predict_image_reads_drawings_photos_and_blanks(run_dir, tmp_path, capsys, fixture_test):
    seven, blank, photo = tmp_path / "seven.png", tmp_path / "blank.png", tmp_path / "photo.jpg"
    seven.write_bytes(encode(draw_strokes(STROKES[7])))
    blank.write_bytes(encode(Image.new("L", (200, 200), 255)))
    # The first test digit is a 4 that the fixture model, trained on 1,800 rows, takes for a 9 as
    # often as not once photographed; the second is a clear 0.
    photo.write_bytes(encode(paper_photo(fixture_test[0][1]).convert("RGB"), "JPEG"))
    assert main(["predict-image", str(seven), str(blank), str(photo), "--run", str(run_dir), "--show"]) == 0
    out = capsys.readouterr().out
    assert f"{seven}: 7 (p=" in out
    assert f"{blank}: not a digit" in out
    assert f"{photo}: {fixture_test[1][1]} (p=" in out
    assert "@@" in out  # the 28x28 image, drawn in characters


def test_predict_image_on_onnx_gives_the_same_answer(onnx_run_dir, tmp_path, capsys):
    one = tmp_path / "one.png"
    one.write_bytes(encode(draw_strokes(STROKES[1])))
    main(["predict-image", str(one), "--run", str(onnx_run_dir)])
    torch_line = capsys.readouterr().out
    main(["predict-image", str(one), "--run", str(onnx_run_dir), "--runtime", "onnx"])
    assert capsys.readouterr().out == torch_line


def test_a_broken_image_is_one_line_and_exit_status_2(run_dir, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert main(["predict-image", str(broken), "--run", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err == f"digits: error: {broken}: not a PNG or JPEG image (unrecognised or unsupported format)\n"


def test_a_missing_file_is_one_line_and_exit_status_2(run_dir, tmp_path, capsys):
    assert main(["predict-image", str(tmp_path / "nope.png"), "--run", str(run_dir)]) == 2
    assert capsys.readouterr().err.startswith(f"digits: error: {tmp_path / 'nope.png'}: cannot read it")


def test_serve_refuses_a_missing_run_directory(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_serve_refuses_a_port_already_in_use(run_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(run_dir), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_serve_onnx_without_an_export_says_how_to_make_one(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("model.onnx"))
    assert main(["serve", str(run), "--runtime", "onnx"]) == 2
    assert f"run `digits export {run} --format onnx` first" in capsys.readouterr().err
