"""benchmarks/growth.py: one-line setup errors, the K x L table, and one tiny grid on the demo
model in which a configuration that cannot run is recorded as failed beside the others."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from latro.demo import MODEL_DIR

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "growth.py"
spec = importlib.util.spec_from_file_location("growth", SCRIPT)
growth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(growth)

DEMO = ["--model", str(MODEL_DIR), "--task", "arithmetic", "--questions-per-step", "2", "--lr", "1e-4"]


@pytest.mark.parametrize("flags, message", [
    (["--samples", "4,x"], "growth: --samples '4,x': expected distinct comma-separated integers >= 1"),
    (["--rationale-tokens", "8,8"], "growth: --rationale-tokens '8,8': expected distinct"),
    (["--samples", "1"], "growth: K=1, L=100: num_samples: got 1, expected an integer >= 2"),
    (["--latro-option", "num_samples=3"], "growth: --latro-option num_samples: set by"),
    (["--latro-option", "dtype=int8"], "growth: K=4, L=100: dtype: got 'int8'"),
])
def test_a_bad_setting_is_one_line_before_anything_runs(flags, message, tmp_path, capsys):
    assert growth.main([*DEMO, *flags, "--output", str(tmp_path / "g.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "g.json").exists()


def test_table_has_a_row_per_k_and_a_column_per_l():
    ok = {"status": "ok", "median_step_s": 12.34, "peak_rss_gib": 3.216}
    table = growth.markdown_table([4, 8], [100, 200], {(4, 100): ok, (4, 200): {"status": "failed"}})
    assert table.splitlines() == ["| K \\ L | 100 | 200 |", "|---|---|---|",
                                  "| 4 | 12.3 s, 3.22 GiB | failed |", "| 8 | not run | not run |"]


def test_grid_on_the_demo_model_keeps_the_results_of_a_failed_config(tmp_path):
    """L = 1000 leaves no demo question room in the model's 512-token context: those runs fail
    (after loading the model, as an out-of-memory shape would), the others are measured."""
    out, png = tmp_path / "growth.json", tmp_path / "growth.png"
    proc = subprocess.run([sys.executable, str(SCRIPT), *DEMO, "--samples", "2,4", "--rationale-tokens", "8,1000",
                           "--steps", "1", "--output", str(out), "--plot", str(png)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "growth: 2 of 4 configurations failed: K=2, L=1000; K=4, L=1000" in proc.stderr
    result = json.loads(out.read_text())
    assert result["finished"] and result["settings"]["num_samples"] == [2, 4]
    configs = {(c["num_samples"], c["max_rationale_tokens"]): c for c in result["configs"]}
    assert set(configs) == {(2, 8), (4, 8), (2, 1000), (4, 1000)}
    for k in (2, 4):
        done, failed = configs[k, 8], configs[k, 1000]
        assert done["status"] == "ok" and done["median_step_s"] > 0 and done["peak_rss_gib"] > 0
        assert all(done["phases_median_s"][p] > 0 for p in ("generate", "score", "update"))
        assert 0 < done["median_sampled_tokens"] <= 2 * k * (8 + 32)  # questions x K x (L + answer tokens)
        assert done["median_sampling_tokens_per_s"] > 0
        assert failed["status"] == "failed" and "fewer than one step's 2" in failed["error"]
    assert configs[4, 8]["median_sampled_tokens"] > configs[2, 8]["median_sampled_tokens"]
    assert "| K \\ L | 8 | 1000 |" in proc.stdout and "| 4 | " in proc.stdout and "failed |" in proc.stdout
    assert png.stat().st_size > 0
