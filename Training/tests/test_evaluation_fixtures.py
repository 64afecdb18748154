"""The committed scikit-learn fixture of the Swift metric code is what scikit-learn gives, and the
Python evaluation's pooled_metrics agrees with scikit-learn on the same random data."""
import json
from pathlib import Path

import numpy as np
import pytest

import evaluation_fixtures
from mimood_train import evaluate

FIXTURE = Path(__file__).resolve().parents[2] / "Tests/Fixtures/evaluation/sklearn.json"


def test_committed_fixture_is_what_sklearn_gives():
    committed = json.loads(FIXTURE.read_text())
    assert committed == json.loads(json.dumps({"seed": evaluation_fixtures.SEED, "cases": evaluation_fixtures.cases()}))


@pytest.mark.parametrize("case", evaluation_fixtures.cases(), ids=lambda case: case["name"])
def test_pooled_metrics_agree_with_sklearn(case):
    measured = evaluate.pooled_metrics(np.array(case["scores"], dtype=np.float32), np.array(case["labels"], dtype=bool))
    assert measured["ap"] == pytest.approx(case["average_precision"], abs=1e-12)
    assert measured["auroc"] == pytest.approx(case["auroc"], abs=1e-12)
    assert measured["dice"] == pytest.approx(case["best_dice"], abs=1e-12)
    assert measured["threshold"] == pytest.approx(case["best_threshold"], abs=0)
