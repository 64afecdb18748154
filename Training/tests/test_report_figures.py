import json

import numpy as np
import pytest
from matplotlib.image import imread

import report_figures
from mimood_train.evaluate import load_split, run_method

pytestmark = pytest.mark.usefixtures("one_thread")


def test_running_mean_averages_the_last_values():
    assert np.allclose(report_figures.running_mean(np.array([2.0, 4.0, 6.0, 8.0]), 2), [2.0, 3.0, 5.0, 7.0])


def test_curves_one_png_per_logged_run(runs_dir, tmp_path):
    written = report_figures.plot_curves(runs_dir, tmp_path)
    assert [p.name for p in written] == [f"training_{c}.png" for c in ("vqvae", "atd", "mvtm", "ar", "critic")]
    vqvae = imread(written[0])
    assert vqvae.shape[:2] == (round(3.2 * 110), round(3 * 4.2 * 110))   # loss, mae, code usage


def test_examples_pick_the_largest_lesion_per_subject(caches):
    split = load_split(caches, "val_anomalous", with_lesion=True)
    split.lesion[:] = False
    assert list(split.subject) == [0, 0, 0, 0, 1, 1, 1, 1]
    split.lesion[1, :4, :4] = True          # subject 0, 16 px
    split.lesion[3, :5, :5] = True          # subject 0, 25 px: the larger of subject 0
    split.lesion[5, :3, :3] = True          # subject 1
    assert list(report_figures.pick_examples(split, 4)) == [3, 5]
    assert list(report_figures.pick_examples(split, 1)) == [3]
    split.lesion[:] = False
    with pytest.raises(ValueError, match="no slice with a lesion"):
        report_figures.pick_examples(split, 4)


def test_examples_figure_from_the_command_line(runs_dir, caches, tmp_path, capsys, monkeypatch):
    settings = {}

    def recording_run_method(method, runs, x, tokens, setting, **kwargs):
        settings[method] = setting
        return run_method(method, runs, x, tokens, setting, **kwargs)

    monkeypatch.setattr(report_figures, "run_method", recording_run_method)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"calibrate": {"mim-ood": {"chosen": 0.25}}}))
    out = tmp_path / "img" / "examples.png"
    assert report_figures.main(["examples", "--runs", str(runs_dir), "--caches", str(caches), "--out", str(out),
                                "--slices", "2", "--report", str(report), "--restorations", "2", "--steps", "2",
                                "--threads", "1"]) == 0
    picture = imread(out)
    assert picture.shape[:2] == (round((1.9 * 2 + 0.5) * 120), round(1.9 * 7 * 120))   # 2 rows, 7 columns (AR baseline)
    assert settings == {"mim-ood": 0.25, "ar": 6.0}   # calibrated λ; the AR's checkpoint default
    assert f"wrote {out}" in capsys.readouterr().out
