import sweep_plot


def test_draws_one_panel_per_axis(tmp_path):
    csv = tmp_path / "sweep.csv"
    csv.write_text("axis,restorations,steps,lambda,best_dice,mean_volume_dice,ap,auroc\n"
                   "R,1,4,0.02,0.1,0.09,0.05,0.7\nR,4,4,0.02,0.2,0.18,0.1,0.8\n"
                   "T,4,1,0.02,0.15,0.1,0.05,0.7\nlambda,4,4,0.01,0.2,0.2,0.1,0.8\nlambda,4,4,0.1,0.1,0.1,0.1,0.8\n")
    out = tmp_path / "sweep.png"
    assert sweep_plot.main([str(csv), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
