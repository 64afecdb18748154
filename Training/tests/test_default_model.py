"""The shipped default model (Models/default): a valid checkpoint whose hashes match, whose λ is the one
calibrated in the training report, and whose VQ-VAE reconstructs an unseen healthy validation volume
about as well as the report says."""
import json
from pathlib import Path

import numpy as np
import torch

from mimood_train.checkpoint import verify_checkpoint
from mimood_train.preprocessing import preprocess_volume
from mimood_train.synthetic import generate_subject, load_template, subject_seed

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "Models" / "default"
REPORT_DATA = json.loads((REPO / "docs" / "training-report-data" / "evaluation-small.json").read_text())
# λ of the shipped ATD (fine-tuned on the proxy mix), from Training/tools/pixel_calibration.py
CALIBRATION = json.loads((REPO / "docs" / "training-report-data" / "calibration-v2.json").read_text())


def test_default_model_verifies_with_every_component():
    loaded = verify_checkpoint(DEFAULT_MODEL)   # hashes, headers, names, shapes, method components
    assert set(loaded.models) == {"vqvae", "atd", "mvtm", "ar", "critic", "prior"}
    assert loaded.manifest["inference"]["method"] == "mim-ood"
    assert sum(path.stat().st_size for path in DEFAULT_MODEL.iterdir()) < 30 * 2**20


def test_lambda_is_the_one_calibrated_on_the_glioma_validation_set():
    assert CALIBRATION["split"] == "val_anomalous"
    best = max(CALIBRATION["rows"], key=lambda row: row["input"]["dice"])
    manifest = json.loads((DEFAULT_MODEL / "model.json").read_text())
    assert manifest["inference"]["lambda"] == CALIBRATION["chosen"] == best["lambda"]


@torch.no_grad()
def test_reconstruction_error_of_a_healthy_validation_volume_is_near_the_reported_one():
    template = load_template()
    subject = generate_subject(template, subject_seed(0, "val", 0), anomalous=False)
    volume = preprocess_volume(subject["t2"].astype(np.float32), template.affine, subject["brainmask"])
    keep = volume.brain.sum(axis=(1, 2)) >= 1500          # the slices a validation cache holds
    x = torch.from_numpy(volume.slices[keep][::4].astype(np.float32)).unsqueeze(1)
    vqvae = verify_checkpoint(DEFAULT_MODEL).models["vqvae"]
    mae = float((vqvae(x)[0] - x).abs().mean())
    reported = REPORT_DATA["vqvae"]["mae"]                # mean over all 30 validation volumes
    assert mae < 1.5 * reported, f"MAE {mae:.4f} on val_0000, report says {reported:.4f} over the split"
