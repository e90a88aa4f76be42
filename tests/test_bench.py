"""Every benchmark script runs in --quick mode and prints its figures as `name: value` lines.

Benchmarks are not tests: nothing here asserts a speed. What is checked is that each script runs to the
end and reports what bench/README.md says it reports, with values that make sense (positive times,
ratios, memory above the process's baseline).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from delpyro import ModelConfig
from delpyro.config import batch_size_for

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_quick(script: str, *extra: str) -> dict[str, str]:
    completed = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *extra], capture_output=True, text=True, timeout=900
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    values: dict[str, str] = {}
    for row in completed.stdout.splitlines():
        if ": " in row:
            name, value = row.split(": ", 1)
            values.setdefault(name, value)
            if name == "ratio":
                values.setdefault("ratios", "")
                values["ratios"] += value.split()[0] + " "
    return values


def test_throughput_quick() -> None:
    values = run_quick("throughput.py", "--epochs", "1")
    for model in ("default", "del-dock"):
        assert float(values[f"{model}_delpyro_compounds_per_s"]) > 0
        assert float(values[f"{model}_bound_compounds_per_s"]) > 0
    ratios = [float(r) for r in values["ratios"].split()]
    assert len(ratios) == 2 and all(r > 0 for r in ratios)


def test_memory_quick(tmp_path: Path) -> None:
    values = run_quick("memory.py", "--dir", str(tmp_path), "--steps", "3")
    assert int(values["default_compounds"]) == 8000 and int(values["del-dock_compounds"]) == 2000
    assert values["del-dock_poses_memory_mapped"] == "True"
    for model in ("default", "del-dock"):
        assert float(values[f"{model}_peak_rss_mb"]) >= float(values[f"{model}_baseline_mb"])
        assert int(values[f"{model}_steps"]) == 3
        assert float(values[f"{model}_after_training_anon_mb"]) > 0
        # stage peaks lie between the baseline and the whole run's peak; the training stage holds the reading's
        stages = [float(values[f"{model}_stage_{stage}_bytes_per_compound"]) for stage in ("read", "first_step")]
        whole = float(values[f"{model}_anon_bytes_per_compound"])
        assert all(0 < peak <= whole + 1e-9 for peak in stages)
        assert float(values[f"{model}_stage_training_bytes_per_compound"]) <= whole + 1e-9
        trained = int(values[f"{model}_compounds_trained"])
        config = ModelConfig() if model == "default" else ModelConfig.preset("del-dock")
        n = int(values[f"{model}_compounds"])
        assert trained == 3 * (config.batch_size or batch_size_for(n))
        assert float(values[f"{model}_us_per_compound"]) == pytest.approx(
            1e6 * float(values[f"{model}_epoch_s"]) / trained, rel=1e-3
        )


def test_row_scaling_quick() -> None:
    values = run_quick("row_scaling.py", "--steps", "3")
    assert float(values["rows_27000_ratio"]) == 1.0
    assert float(values["rows_1000000_ms_per_step"]) > 0 and "rows_10000000_ms_per_step" not in values


def test_subnormals_quick(tmp_path: Path) -> None:
    values = run_quick("subnormals.py", "--dir", str(tmp_path))
    for name in ("flushed", "kept"):
        assert int(values[f"{name}_steps"]) == 20
        assert len(values[f"{name}_ms_per_step_by_tenth"].split()) == 10
    ratios = [float(r) for r in values["kept_over_flushed_by_tenth"].split()]
    assert len(ratios) == 10 and all(r > 0 for r in ratios)


def test_predict_quick(tmp_path: Path) -> None:
    values = run_quick("predict.py", "--dir", str(tmp_path), "--num-samples", "20", "--train-steps", "2")
    assert int(values["compounds"]) == 8000 and int(values["num_samples"]) == 20
    assert float(values["compounds_per_s"]) > 0
    assert float(values["peak_rss_mb"]) >= float(values["baseline_mb"])


def test_scaling_quick(tmp_path: Path) -> None:
    values = run_quick("scaling.py", "--dir", str(tmp_path))
    assert int(values["three_cycle_8000_compounds"]) == 8000 and int(values["two_cycle_900_compounds"]) == 900
    assert values["two_cycle_8100_families"] == "cycle1, cycle2"  # one compound a pair: no pair family
    assert "cycle1+cycle2" in values["three_cycle_8000_families"]
    for library in ("three_cycle", "two_cycle"):
        assert float(values[f"ratio_{library}"]) > 0
    assert float(values["ratio"]) == max(float(values["ratio_three_cycle"]), float(values["ratio_two_cycle"]))


def test_real_screens_quick(tmp_path: Path) -> None:
    values = run_quick("real_screens.py", "--cache", str(tmp_path))
    assert int(values["compounds"]) == 58080
    for method in ("building_block_average", "default", "no_network", "network_only", "chosen"):
        for part in ("all", "listed"):
            assert -1 <= float(values[f"mean_{method}_{part}"]) <= 1
            assert values[f"mean_{method}_{part}"] == values[f"seed0_{method}_{part}"]  # one seed
    for method in ("default", "no_network", "network_only", "chosen"):
        for part in ("all", "listed"):
            point, interval = values[f"difference_{method}_{part}"].split(" (95% bootstrap interval ")
            low, high = (float(v) for v in interval.rstrip(")").split(" to "))
            difference = float(values[f"mean_{method}_{part}"]) - float(values[f"mean_building_block_average_{part}"])
            assert float(point) == pytest.approx(difference, abs=2e-3) and low <= high
    chosen = values["seed0_chosen"]
    lpd = {name: float(values[f"seed0_{name}_lpd"]) for name in ("default", "no_network", "network_only")}
    assert chosen == max(lpd, key=lpd.get)
    assert values["seed0_chosen_all"] == values[f"seed0_{chosen}_all"]
    for replicate in ("corrected_D3index1", "corrected_D3index2", "corrected_D3index3"):
        for method in ("default", "naive"):
            assert -1 <= float(values[f"replicate_{replicate}_{method}_spearman"]) <= 1
            # a log density of counts per compound: negative, and for sparse counts not far below zero
            assert -5.0 < float(values[f"replicate_{replicate}_{method}_lpd"]) < 0.0


@pytest.mark.parametrize("script", ["featurize.py"])
def test_featurize_quick(script: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--repeat", "1", "--n", "2000"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "identical: True" in completed.stdout


def test_batch_size_quick(tmp_path: Path) -> None:
    values = run_quick("batch_size.py", "--cache", str(tmp_path))
    assert int(values["compounds"]) == 3375 and int(values["epochs"]) == 3
    for batch in (256, 1024):
        assert float(values[f"seed0_batch{batch}_fit_s"]) > 0
        for name in ("spearman_random", "spearman_building_block"):
            assert -1.0 <= float(values[f"seed0_batch{batch}_{name}"]) <= 1.0
        for name in ("cov50", "cov90"):
            assert 0.0 <= float(values[f"seed0_batch{batch}_{name}"]) <= 1.0


def test_hits_quick(tmp_path: Path) -> None:
    values = run_quick("hits.py", "--cache", str(tmp_path))
    assert int(values["compounds"]) == 1000 and float(values["level"]) == 0.05
    true_hits = float(values["depth5_true_hits"])
    assert 0 < true_hits < 1000
    for method in ("delpyro", "deseq2"):
        called = float(values[f"depth5_{method}_called"])
        found = float(values[f"depth5_{method}_true_hits"])
        assert 0 <= found <= min(called, true_hits)
        assert 0.0 <= float(values[f"depth5_{method}_realized_fdr"]) <= 1.0
        # the oracle cut keeps the realized FDR at 0.05, so it holds at most the true hits there are
        assert 0 <= float(values[f"depth5_{method}_oracle_true_hits"]) <= true_hits
    assert float(values["depth5_delpyro_expected_fdr"]) <= 0.05


def test_abundance_quick(tmp_path: Path) -> None:
    values = run_quick("abundance.py", "--cache", str(tmp_path))
    assert int(values["compounds"]) == 1728
    for truth in ("additive", "multiplicative"):
        for load in ("load", "noload"):
            for method in ("naive", "additive", "multiplicative"):
                for what in ("truth", "abundance"):
                    assert -1.0 <= float(values[f"truth_{truth}_{load}_{method}_spearman_{what}"]) <= 1.0


def test_calibration_quick(tmp_path: Path) -> None:
    values = run_quick("calibration.py", "--cache", str(tmp_path))
    for part in ("screened", "held_out"):
        for level in ("cov90", "cov50"):
            overall = float(values[f"n1000_{part}_{level}"])
            deciles = [float(values[f"n1000_{part}_{level}_d{d}"]) for d in range(1, 11)]
            assert all(0.0 <= c <= 1.0 for c in deciles)
            assert overall == pytest.approx(sum(deciles) / 10, abs=0.02)  # deciles of equal size
        assert float(values[f"n1000_{part}_cov90"]) >= float(values[f"n1000_{part}_cov50"])


def test_model_choice_quick(tmp_path: Path) -> None:
    values = run_quick("model_choice.py", "--cache", str(tmp_path))
    assert int(values["compounds"]) == 3375
    for split in ("random", "building_block"):
        for method in ("naive", "bb_average", "default", "network_without_prior", "no_network", "network_only"):
            assert -1 <= float(values[f"mean_{split}_{method}_spearman"]) <= 1
    for method in ("default", "network_without_prior", "no_network"):  # the models with latent terms
        low, high = float(values[f"mean_random_{method}_coverage50"]), float(values[f"mean_random_{method}_coverage90"])
        assert 0 <= low <= high <= 1
    assert "mean_random_network_only_coverage90" not in values  # a point estimate has no intervals


def test_selectivity_quick() -> None:
    values = run_quick("selectivity.py")
    assert int(values["compounds"]) == 1000
    for method in ("joint", "separate"):
        assert float(values[f"{method}_fit_seconds"]) > 0
        for target in ("CA2", "USP7", "PTP1B"):
            assert -1 <= float(values[f"{method}_{target}_heldout_spearman"]) <= 1
            assert 0 <= float(values[f"{method}_{target}_screened_selective_auc"]) <= 1
            assert float(values[f"{method}_{target}_screened_true_selective"]) > 0
        assert 0 <= float(values[f"{method}_mean_screened_realized_fdr"]) <= 1
