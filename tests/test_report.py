"""Run reports and run comparisons: what the pages hold, that they stand alone, that a real
browser shows them whole, and the errors for directories that are not finished runs."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import chromium, needs_chromium
from helpers import FIXTURES

from digits.data.kaggle import load_kaggle_csv
from digits.report import write_report
from digits.report.evaluate import evaluate
from digits.report.heldout import HeldOut, find_held_out
from digits.report.record import read_run
from digits.train.config import TrainConfig
from digits.train.ensemble import EnsembleSpec, train_ensemble
from digits.train.run import train_run

TINY = TrainConfig(model="mlp", model_args={"hidden": [32]}, epochs=2, batch_size=64, optimizer="adam",
                   lr=2e-3, val_split=0.1, seed=0, device="cpu")
SECTIONS = ("summary", "score", "configuration", "curves", "confusion", "per-class", "calibration", "mistakes",
            "samples")
PICTURES = ("curves.png", "confusion.png", "per-class.png", "reliability.png", "mistakes.png", "samples.png")


@pytest.fixture(scope="module")
def train_file() -> Path:
    return FIXTURES / "train.csv"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, train_file) -> Path:
    path = tmp_path_factory.mktemp("report") / "run"
    train_run(TINY, load_kaggle_csv(train_file, kind="train"), path, data_source=str(train_file))
    return path


@pytest.fixture(scope="module")
def bagged_ensemble(tmp_path_factory, train_file) -> Path:
    path = tmp_path_factory.mktemp("report") / "ensemble"
    spec = EnsembleSpec(TINY.replace(epochs=2), members=2, bagging=0.2)  # two epochs: a curve to draw
    train_ensemble(spec, load_kaggle_csv(train_file, kind="train"), path, data_source=str(train_file))
    return path


class _References(HTMLParser):
    """Every URL a page would load or link to, and every tag that could run or fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.active: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "link", "iframe", "object", "embed", "base"):
            self.active.append(tag)
        self.urls += [value or "" for name, value in attrs
                      if name in ("src", "href", "srcset", "poster", "action", "data", "background")]


def external_references(page: str) -> list[str]:
    parser = _References()
    parser.feed(page)
    outside = [url for url in parser.urls if not url.startswith("data:image/png;base64,")]
    css_urls = re.findall(r"url\(", page)
    web = re.findall(r"https?://", page)
    return outside + parser.active + css_urls + web


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', page)


def test_report_of_a_run_has_every_section_and_nothing_outside_the_page(run_dir):
    page_path = write_report(run_dir)
    assert page_path == run_dir / "report" / "report.html"
    page = page_path.read_text()
    assert section_ids(page) == list(SECTIONS)
    assert external_references(page) == []
    assert page.count('<img src="data:image/png;base64,') == len(PICTURES)
    for name in PICTURES:
        assert (run_dir / "report" / name).stat().st_size > 1000, name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"{metrics['parameters']:,}" in page  # the parameter count
    assert '"hidden": [32]' in html.unescape(page)  # the configuration
    assert "Confusion matrix on the validation rows" in page and "lowest validation loss" in page


def test_report_re_creates_exactly_the_validation_rows_the_run_held_out(run_dir):
    held_out = find_held_out(read_run(run_dir))
    assert isinstance(held_out, HeldOut) and held_out.kind == "validation" and len(held_out.data) == 200
    recorded = json.loads((run_dir / "metrics.json").read_text())["final"]["val_accuracy"]
    assert evaluate(held_out).accuracy == pytest.approx(recorded, abs=1e-6)


def test_report_of_a_bagged_ensemble_shows_every_member_and_the_ensemble(bagged_ensemble, tmp_path):
    page = write_report(bagged_ensemble, tmp_path / "out" / "ensemble.html").read_text()
    assert section_ids(page) == [*SECTIONS[:4], "members", *SECTIONS[4:]]
    assert external_references(page) == []
    for name in PICTURES:
        assert (tmp_path / "out" / name).is_file(), name
    members = re.search(r'<section id="members">.*?</section>', page, re.DOTALL).group(0)
    for member in ("01", "02"):
        # each member on the rows it held out: the accuracy its own training measured there
        recorded = json.loads((bagged_ensemble / "members" / member / "metrics.json").read_text())
        assert f"<td>{member}</td>" in members
        assert f'{recorded["final"]["val_accuracy"]:.4f}</td></tr>' in members
    assert '<tr class="total"><td>ensemble</td>' in members
    assert "out-of-bag rows" in page


def test_out_of_bag_rows_are_predicted_only_by_members_that_held_them_out(bagged_ensemble):
    held_out = find_held_out(read_run(bagged_ensemble))
    assert held_out.kind == "out-of-bag"
    union = sorted({int(i) for rows in held_out.member_rows for i in rows})
    assert union == list(range(len(held_out.data)))  # every row held out by at least one member
    evaluation = evaluate(held_out)
    assert evaluation.proba.sum(axis=1) == pytest.approx(1.0, abs=1e-5)
    assert len(evaluation.member_accuracy) == 2


def test_a_scored_submission_puts_its_score_and_the_test_set_in_the_report(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    trained = cli("train", "--model", "softmax", "--data", kaggle_dir, "--epochs", "1", "--out", run)
    assert trained.code == 0, trained.err
    assert "Confusion matrix on the validation rows" in (run / "report" / "report.html").read_text()
    assert cli("predict", run, "--data", kaggle_dir).code == 0
    scored = cli("score", run / "submission.csv", "--solution", kaggle_dir / "solution.csv")
    assert scored.code == 0 and f"recorded  {run / 'score.json'}" in scored.out
    score = json.loads((run / "score.json").read_text())["score"]
    reported = cli("report", run)
    assert reported.code == 0, reported.err
    page = (run / "report" / "report.html").read_text()
    assert f'<p class="score">{score:.5f}</p>' in page
    assert page.count(f"{score:.5f}") == 1, "the score is shown once, in its own section"
    assert "Confusion matrix on the scored test set" in page and "(500 rows)" in page
    assert f"Accuracy {score:.4f}." in page  # the model re-predicts the test set as the submission did


def test_no_report_flag_skips_the_report(tmp_path, kaggle_dir, cli):
    run = tmp_path / "run"
    result = cli("train", "--model", "softmax", "--data", kaggle_dir, "--epochs", "1", "--no-report",
                 "--out", run)
    assert result.code == 0, result.err
    assert (run / "model.safetensors").is_file() and not (run / "report").exists()
    assert "report:" not in result.out


@needs_chromium
def test_report_opens_in_chromium_with_every_image_loaded_and_no_console_errors(run_dir, tmp_path):
    page_path = write_report(run_dir, tmp_path / "browser" / "report.html")
    errors: list[str] = []
    requests: list[str] = []
    with chromium(tmp_path / "chromium-profile", viewport={"width": 1200, "height": 900}) as browser:
        page = browser.new_page()
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        images = page.evaluate("Array.from(document.images, i => [i.alt, i.complete, i.naturalWidth])")
        headings = page.evaluate("Array.from(document.querySelectorAll('h2'), h => h.textContent)")
    assert len(images) == len(PICTURES)
    assert all(complete and width > 0 for _, complete, width in images), images
    assert errors == []
    assert [url for url in requests if not url.startswith(("data:", "file:"))] == []
    assert "Per-class precision and recall" in headings


def test_compare_sets_runs_side_by_side(run_dir, bagged_ensemble, tmp_path, cli):
    out = tmp_path / "compare"
    result = cli("compare", run_dir, bagged_ensemble, "--out", out)
    assert result.code == 0, result.err
    header = next(line for line in result.out.splitlines() if line.startswith("run"))
    for column in ("model", "parameters", "epochs", "best val acc", "final val acc", "score", "time"):
        assert column in header
    rows = {line.split()[0]: line for line in result.out.splitlines() if line.strip()}
    assert "mlp" in rows["run"] and "2 × mlp" in rows["ensemble"] and "(mean)" in rows["ensemble"]
    page = (out / "compare.html").read_text()
    assert external_references(page) == []
    assert "<td>run</td>" in page and "<td>ensemble</td>" in page and "<td>2 × mlp</td>" in page
    assert (out / "val-curves.png").stat().st_size > 1000


def test_compare_says_which_runs_have_no_validation_curve(run_dir, tmp_path, kaggle_dir, cli):
    bare = tmp_path / "bare"
    assert cli("train", "--data", kaggle_dir, "--epochs", "2", "--val-split", "0", "--no-report",
               "--out", bare, "-q").code == 0
    result = cli("compare", run_dir, bare, "--out", tmp_path / "compare")
    assert result.code == 0, result.err
    assert "no validation curve (no validation rows): bare" in result.out
    page = (tmp_path / "compare" / "compare.html").read_text()
    assert "Not drawn, having no validation rows: bare." in page


def _unfinished_run(root: Path) -> Path:
    run = root / "unfinished"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": TINY.to_dict(), "data": {}}))
    return run


@pytest.mark.parametrize("command", ["report", "compare"])
@pytest.mark.parametrize("case, message", [
    ("missing", "no such run directory"),
    ("not a run", "not a run directory (expected the config.json or ensemble.json"),
    ("unfinished", "no metrics.json, so the run did not finish"),
])
def test_a_directory_that_is_not_a_finished_run_is_a_one_line_error(tmp_path, run_dir, cli, command, case,
                                                                   message):
    bad = {"missing": lambda: tmp_path / "nowhere", "not a run": lambda: tmp_path,
           "unfinished": lambda: _unfinished_run(tmp_path)}[case]()
    out = tmp_path / "out"
    args = [run_dir, bad] if command == "compare" else [bad]
    result = cli(command, *args, "--out", out / ("report.html" if command == "report" else ""))
    assert result.code == 2
    assert result.err.startswith("digits: error: ") and result.err.count("\n") == 1
    assert str(bad) in result.err and message in result.err
    assert not out.exists(), "nothing half-written"
    assert not (Path(bad) / "report").exists()
