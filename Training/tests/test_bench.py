import json

import bench

FIXTURE_CHECKPOINT = bench.DEFAULT_INPUT.parent / "checkpoint"


def test_bench_runs_every_step_and_reports_each_stage(capsys):
    assert bench.main(["--model", str(FIXTURE_CHECKPOINT), "--batch", "3", "--restorations", "2",
                       "--steps", "2", "--repeats", "1", "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["seconds"]) == {"tokenize", "restore", "decode", "anomaly_map", "total"}
    assert result["batch"] == 3 and result["restorations"] == 2 and result["steps"] == 2
    assert result["slices_per_second"] > 0


def test_load_batch_tiles_the_input_in_order():
    batch = bench.load_batch(bench.DEFAULT_INPUT, 5)
    assert tuple(batch.shape) == (5, 1, 160, 160)
    assert (batch[2] == batch[0]).all() and (batch[3] == batch[1]).all()
