"""Rank budgets: allocate_ranks on weights with known singular values, the budget invariants on
real architectures, and the experiment wiring (ExperimentConfig.rank_budget, tiny CLI run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import (
    bert_config,
    conv_config,
    gpt2_config,
    make_bert,
    make_convnet,
    make_gpt2,
)
from torch import nn

import decaylora as dl
from decaylora.budget import budget_params, dense_weight_count, format_ranks
from decaylora.experiment import ExperimentConfig
from decaylora.layers import geometry


# ----- a model with known spectra -------------------------------------------------------------
def _orthonormal(rows: int, cols: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return q  # (rows, cols), orthonormal columns


def _with_spectrum(n_in: int, n_out: int, s2: list[float], seed: int) -> nn.Linear:
    """Linear(n_in -> n_out) whose weight U diag(s) V^T has singular values sqrt(s2)."""
    k = min(n_in, n_out)
    assert len(s2) == k
    u, v = _orthonormal(n_out, k, seed), _orthonormal(n_in, k, seed + 1)
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.copy_(u @ torch.diag(torch.tensor(s2, dtype=torch.float64).sqrt()) @ v.T)
    return layer


# enc: Linear(16 -> 8): one rank costs 16 + 8 = 24 parameters; dense 128; shrinks for r <= 5
#   (24 r < 128); full rank 8. Energies s^2 = 64,14.5,8,4,2,1,1,0 (sum 94.5): steep.
# dec: Linear(12 -> 16): one rank costs 28; dense 192; shrinks for r <= 6 (28 r < 192); full
#   rank 12. Energies 9 x4, 4 x4, 1 x4 (sum 56): a flat spectrum.
ENC_S2 = [64.0, 14.5, 8.0, 4.0, 2.0, 1.0, 1.0, 0.0]
DEC_S2 = [9.0] * 4 + [4.0] * 4 + [1.0] * 4
DENSE = 16 * 8 + 12 * 16  # 320 weights


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = _with_spectrum(16, 8, ENC_S2, seed=0)
        self.dec = _with_spectrum(12, 16, DEC_S2, seed=2)


def two_config(**kw) -> dl.DecayConfig:
    return dl.DecayConfig(target_modules=["enc", "dec"], **kw)


# Scores (next normalised energy / cost of one rank), worked out by hand:
#   enc rank k -> k+1: ENC_S2[k] / 94.5 / 24:  k=1 .00639, k=2 .00353, k=3 .00176, k=4 .00088
#   dec rank k -> k+1: DEC_S2[k] / 56 / 28:  k=1..3 .00574, k=4..7 .00255, k>=8 .00064
# Starting from rank 1 each (24 + 28 = 52 parameters), the greedy order of increments is
#   enc->2 (76), dec->2 (104), dec->3 (132), dec->4 (160), enc->3 (184), dec->5 (212),
#   dec->6 (240), [dec capped at 6] enc->4 (264), enc->5 (288) [enc capped at 5].
@pytest.mark.parametrize("budget, expected", [
    (52, {"enc": 1, "dec": 1}),          # only the minimum fits
    # enc->2 first although its energy share (14.5/94.5 = .153) is below dec's (9/56 = .161):
    # per parameter it is worth more (.00639 > .00574); then dec->2 (104) does not fit 80
    (80, {"enc": 2, "dec": 1}),
    (75, {"enc": 1, "dec": 1}),          # enc->2 would need 76
    # 160 parameters, spent exactly. Raw (unnormalised) energies would rank enc->3 (8 / 24)
    # above dec->2 (9 / 28) and end at enc 3, dec 3.
    (0.5, {"enc": 2, "dec": 4}),
    (170, {"enc": 2, "dec": 4}),         # 10 left: nothing fits
    # 210: after dec->5 is refused (212 > 210), the cheaper, lower-scoring enc->4 still fits
    # (184 + 24 = 208) - stopping at the first refusal would have left enc at 3.
    (210, {"enc": 4, "dec": 4}),
    (1.0, {"enc": 5, "dec": 6}),         # 288 <= 320: every layer is at its size limit
])
def test_allocation_follows_energy_per_parameter(budget, expected):
    assert dl.allocate_ranks(TwoLayers(), two_config(), budget) == expected


def test_allocation_respects_min_max_rank_and_allow_larger():
    # max_rank=3: enc->2, dec->2, dec->3, enc->3, then both capped (156 <= 320)
    assert dl.allocate_ranks(TwoLayers(), two_config(), 1.0, max_rank=3) == {"enc": 3, "dec": 3}
    # min_rank=2 starts at 48 + 56 = 104; dec->3 (132) fits 150, then dec->4 (160) and
    # enc->3 (156) do not
    assert dl.allocate_ranks(TwoLayers(), two_config(), 150, min_rank=2) == {"enc": 2, "dec": 3}
    # allow_larger lifts the size limits (only the full ranks 8 / 12 remain): after dec->6 (240)
    # dec->7 (268) and dec->8 (296) score .00255 and beat enc->4 (.00174), which then fills the
    # budget exactly (320); dec->9 would need 28 more
    assert dl.allocate_ranks(TwoLayers(), two_config(allow_larger=True), 1.0) == \
        {"enc": 4, "dec": 8}


def test_allocation_is_deterministic_and_ignores_r():
    a = dl.allocate_ranks(TwoLayers(), two_config(r=2), 0.5)
    b = dl.allocate_ranks(TwoLayers(), two_config(r=7, allow_larger=True), 0.5)
    assert a == b == {"enc": 2, "dec": 4}


def test_budgeted_config_wraps_with_the_allocated_ranks():
    model = TwoLayers()
    cfg = dl.budgeted_config(model, two_config(c_init="none"), 0.5)
    assert cfg.rank_pattern == {"enc": 2, "dec": 4}
    dl.wrap(model, cfg)
    assert model.enc.lora_A.weight.shape == (2, 16) and model.enc.lora_B.weight.shape == (8, 2)
    assert model.dec.lora_A.weight.shape == (4, 12) and model.dec.lora_B.weight.shape == (16, 4)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 160  # = A + B


def _limit(g, allow_larger: bool) -> int:
    """Largest rank wrap() accepts for a layer (computed here from the shapes)."""
    r = g.max_rank
    while not allow_larger and r > 0 and r * g.fan_in + g.out_features * r // g.groups >= \
            g.out_features * g.fan_in:
        r -= g.groups
    return r


@pytest.mark.parametrize("build, config", [
    (make_bert, bert_config), (make_gpt2, gpt2_config), (make_convnet, conv_config)])
@pytest.mark.parametrize("budget", [0.2, 0.5])
def test_budget_invariants_on_real_models(build, config, budget):
    """Spent <= budget; no layer can take one more rank (groups ranks for a grouped conv)
    without exceeding it or its size limit; wrap accepts the ranks."""
    model, cfg = build(), config()
    ranks = dl.allocate_ranks(model, cfg, budget)
    modules = dict(model.named_modules())
    assert list(ranks) == dl.find_targets(model, cfg)
    geoms = {n: geometry(modules[n]) for n in ranks}
    dense = sum(g.out_features * g.fan_in for g in geoms.values())
    total = int(budget * dense)
    cost = {n: g.fan_in + g.out_features // g.groups for n, g in geoms.items()}  # per rank
    spent = sum(cost[n] * r for n, r in ranks.items())
    assert spent <= total
    for n, r in ranks.items():
        g = geoms[n]
        assert r >= 1 and r % g.groups == 0
        can_grow = r + g.groups <= _limit(g, False)
        assert not can_grow or spent + cost[n] * g.groups > total, (n, r)
    assert len(set(ranks.values())) > 1 or len(ranks) == 1  # real spectra differ
    dl.wrap(model, dl.budgeted_config(build(), cfg, budget))
    assert {n: layer.r for n, layer in dl.decay_layers(model)} == ranks


def test_grouped_conv_gets_ranks_in_steps_of_its_groups():
    # conv "0" of make_convnet has 2 groups: its rank must stay a multiple of 2
    ranks = dl.allocate_ranks(make_convnet(), conv_config(), 0.5, min_rank=1)
    assert ranks["0"] % 2 == 0 and ranks["0"] >= 2


def test_more_budget_never_lowers_a_rank():
    model, cfg = make_bert(), bert_config()
    small, large = (dl.allocate_ranks(model, cfg, b) for b in (0.1, 0.2))
    assert all(large[n] >= small[n] for n in small)
    assert sum(large.values()) > sum(small.values())


def test_dense_weight_count_and_budget_params():
    model = TwoLayers()
    assert dense_weight_count(model, two_config()) == DENSE
    assert budget_params(0.5, DENSE) == 160
    assert budget_params(0.126, DENSE) == 40  # 40.32 rounded down
    assert budget_params(77, DENSE) == 77     # an int is absolute


@pytest.mark.parametrize("budget, match", [
    (0.0, r"fraction in \(0, 1\]"), (1.5, r"fraction in \(0, 1\]"), (-0.2, r"fraction"),
    (float("nan"), r"fraction"), (0, r"positive number of parameters"),
    (True, r"must be a fraction"), ("1/8", r"must be a fraction"),
])
def test_error_bad_budget(budget, match):
    with pytest.raises(dl.ConfigError, match=match):
        dl.allocate_ranks(TwoLayers(), two_config(), budget)


def test_error_budget_below_minimum():
    with pytest.raises(dl.ConfigError, match=r"budget of 51 parameters is smaller than the 52"):
        dl.allocate_ranks(TwoLayers(), two_config(), 51)


def test_error_min_rank_above_size_limit():
    with pytest.raises(dl.ConfigError, match=r"enc: cannot give it min_rank=6.*largest rank it "
                                             r"allows is 5"):
        dl.allocate_ranks(TwoLayers(), two_config(), 1.0, min_rank=6)


@pytest.mark.parametrize("kw, match", [
    (dict(min_rank=0), "min_rank"), (dict(max_rank=0), "max_rank"),
    (dict(min_rank=3, max_rank=2), "max_rank"),
])
def test_error_bad_min_max_rank(kw, match):
    with pytest.raises(dl.ConfigError, match=match):
        dl.allocate_ranks(TwoLayers(), two_config(), 0.5, **kw)


def test_error_wrapped_model_and_bad_targets():
    model = dl.wrap(TwoLayers(), two_config(r=2))
    with pytest.raises(dl.ConfigError, match="unwrapped model"):
        dl.allocate_ranks(model, two_config(), 0.5)
    with pytest.raises(dl.InjectionError, match="matched no module"):
        dl.allocate_ranks(TwoLayers(), dl.DecayConfig(target_modules=["encc"]), 0.5)


def test_format_ranks_groups_layers():
    ranks = {f"bert.encoder.layer.{i}.attention.self.query": r
             for i, r in enumerate([8, 8, 8, 8, 12, 16])}
    ranks.update({"features.0": 4, "features.3": 4, "classifier": 3})
    assert format_ranks(ranks) == [
        "bert.encoder.layer.*.attention.self.query: r=8 (* = 0-3), r=12 (* = 4), r=16 (* = 5)",
        "features.*: r=4 (* = 0,3)",
        "classifier: r=3",
    ]


# ----- experiment wiring -------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, 0.0, 1.01, -0.5])
def test_experiment_rank_budget_validated(value):
    with pytest.raises(dl.ConfigError, match=r"rank_budget must be a fraction in \(0, 1\]"):
        ExperimentConfig(rank_budget=value)


def test_experiment_rank_budget_int_one_is_the_whole_budget():
    assert ExperimentConfig(rank_budget=1).rank_budget == 1.0


def test_cli_tiny_run_with_rank_budget(tmp_path: Path) -> None:
    from decaylora.cli import main

    root = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "budget"
    assert main(["run", "--config", str(root / "configs" / "tiny.yaml"), "--run-dir",
                 str(run_dir), "--rank-budget", "0.125", "--steps", "4", "--eval-every", "4"]) == 0
    res = json.loads((run_dir / "results.json").read_text())
    ranks, info = res["ranks"], res["rank_budget"]
    assert len(ranks) == 12  # tiny BERT: 2 layers x 6 Linears
    assert info["budget"] == 0.125
    assert info["allocated_params"] <= info["budget_params"] == int(0.125 * info["dense_weights"])
    assert res["decay_config"]["rank_pattern"] == ranks
    # the export holds exactly these ranks and reproduces the run
    manifest = json.loads((run_dir / "export" / "decaylora.json").read_text())
    assert {n: s["r"] for n, s in manifest["modules"].items()} == ranks
    assert res["export"]["matches"]
    report = (run_dir / "report.md").read_text()
    assert "## Ranks" in report and "layer.*.attention.self.query: r=" in report


@pytest.mark.parametrize("value", [0, -2, 1.5, True])
def test_experiment_rank_budget_min_rank_validated(value):
    with pytest.raises(dl.ConfigError,
                       match="rank_budget_min_rank.* must be (a positive integer|int)"):
        ExperimentConfig(rank_budget=0.125, rank_budget_min_rank=value)


def test_cli_rank_budget_min_rank_is_a_floor(tmp_path: Path, capsys) -> None:
    from decaylora.cli import main

    root = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "budget-floor"
    assert main(["run", "--config", str(root / "configs" / "tiny.yaml"), "--run-dir",
                 str(run_dir), "--rank-budget", "0.5", "--rank-budget-min-rank", "4",
                 "--steps", "2", "--eval-every", "2"]) == 0
    res = json.loads((run_dir / "results.json").read_text())
    assert min(res["ranks"].values()) >= 4
    assert res["rank_budget"]["allocated_params"] <= res["rank_budget"]["budget_params"]
    # a floor the budget cannot pay for is refused before training, naming both fixes
    assert main(["run", "--config", str(root / "configs" / "tiny.yaml"), "--run-dir",
                 str(tmp_path / "too-high"), "--rank-budget", "0.05", "--rank-budget-min-rank",
                 "7", "--steps", "2"]) == 2
    assert "min_rank=7" in capsys.readouterr().err
    assert not (tmp_path / "too-high" / "results.json").exists()
