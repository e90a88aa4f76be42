"""The simulated screen: real chemistry, reproducible draws, and a truth that explains the counts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import Crippen, rdChemReactions

from delpyro.data import STRINGS, DELData
from delpyro.simulate import building_block_pool, max_building_blocks, simulate_del

# The reactions written out again, independently of the module, to redo a few syntheses by hand.
AMINE = "[N;!H0;!$(N-C=[O,N,S]);!$(N-S);!$(N-a)"
BY_HAND = {
    "acid": f"[C:1](=[O:2])[OH].{AMINE}:3]>>[C:1](=[O:2])[N:3]",
    "aldehyde": f"[CH1:1](=O)[#6:2].{AMINE}:3]>>[CH2:1]([#6:2])[N:3]",
    "sulfonyl chloride": f"[S:1](=[O:2])(=[O:3])Cl.{AMINE}:4]>>[S:1](=[O:2])(=[O:3])[N:4]",
    "isocyanate": f"[N:1]=[C:2]=[O:3].{AMINE}:4]>>[N:1][C:2](=[O:3])[N:4]",
}
CAP_GROUPS = {
    "acid": "C(=O)[OH]",
    "aldehyde": "[CH1](=O)[#6]",
    "sulfonyl chloride": "S(=O)(=O)Cl",
    "isocyanate": "N=C=O",
}
SULFONAMIDE = Chem.MolFromSmarts("[NH2]S(=O)(=O)c")
METHYL_AMIDE = Chem.MolFromSmarts("[CH3][NH]C(=O)")


def canonical(smiles: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def react_by_hand(kind: str, block: str, amine: str) -> str:
    reaction = rdChemReactions.ReactionFromSmarts(BY_HAND[kind])
    outcomes = set()
    for (product,) in reaction.RunReactants((Chem.MolFromSmiles(block), Chem.MolFromSmiles(amine))):
        Chem.SanitizeMol(product)
        outcomes.add(Chem.MolToSmiles(product))
    assert len(outcomes) == 1, (kind, block, amine, outcomes)
    return outcomes.pop()


@pytest.fixture(scope="module")
def screen() -> DELData:
    return simulate_del(seed=5, n_per_cycle=(10, 8, 6), n_poses=3, n_pose_features=16)


def test_shapes_dtypes_and_ids(screen: DELData) -> None:
    n = 10 * 8 * 6
    assert screen.target_counts.shape == (n, 3) and screen.target_counts.dtype == np.int64
    assert screen.control_counts.shape == (n, 2) and screen.control_counts.dtype == np.int64
    assert screen.load.shape == (n,) and screen.load.dtype == np.float64
    assert np.array_equal(screen.load, np.round(screen.load))  # pre-selection read counts
    assert screen.poses.shape == (n, 3, 16) and screen.poses.dtype == np.float32
    assert screen.smiles.dtype == STRINGS and screen.compound_id.dtype == STRINGS  # no Python object per compound
    assert len(set(screen.compound_id)) == n
    assert screen.target_names == ["r1", "r2", "r3"] and screen.control_names == ["r1", "r2"]
    assert list(screen.building_blocks.columns) == ["cycle1", "cycle2", "cycle3"]
    assert [screen.building_blocks[c].nunique() for c in screen.cycles] == [10, 8, 6]
    first = screen.building_blocks.iloc[0].tolist()
    assert first == ["A001", "B001", "C001"] and screen.compound_id[0] == "A001-B001-C001"
    assert screen.compound_id[-1] == "A010-B008-C006"
    for column in [
        "log_target_enrichment",
        "log_matrix_enrichment",
        "load",
        "is_binder",
        "has_pharmacophore",
        "target_pharmacophore",
        "target_building_blocks",
        "target_disynthons",
        "target_noise",
        "true_pose",
    ]:
        assert column in screen.truth.columns
    assert screen.truth["is_binder"].dtype == bool and screen.truth["has_pharmacophore"].dtype == bool
    assert len(screen.attrs["target_scale"]) == 3 and len(screen.attrs["control_scale"]) == 2
    json.dumps(screen.attrs)


def test_same_seed_same_screen_and_another_seed_differs() -> None:
    first = simulate_del(seed=11, n_per_cycle=(6, 5, 4), n_poses=2, n_pose_features=8)
    again = simulate_del(seed=11, n_per_cycle=(6, 5, 4), n_poses=2, n_pose_features=8)
    other = simulate_del(seed=12, n_per_cycle=(6, 5, 4), n_poses=2, n_pose_features=8)
    assert np.array_equal(first.target_counts, again.target_counts)
    assert np.array_equal(first.control_counts, again.control_counts)
    assert np.array_equal(first.smiles, again.smiles) and np.array_equal(first.load, again.load)
    assert np.array_equal(first.poses, again.poses)
    pd.testing.assert_frame_equal(first.truth, again.truth)
    assert first.attrs == again.attrs
    assert first.equals(again)
    assert not np.array_equal(first.target_counts, other.target_counts)
    assert not np.allclose(first.truth["log_target_enrichment"], other.truth["log_target_enrichment"])


def test_counts_do_not_depend_on_load_or_poses() -> None:
    plain = simulate_del(seed=2, n_per_cycle=(5, 4, 4), with_load=False)
    assert plain.load is None and plain.poses is None
    posed = simulate_del(seed=2, n_per_cycle=(5, 4, 4), n_poses=2, n_pose_features=4, pose_dtype="float16")
    assert posed.poses.dtype == np.float16
    assert np.array_equal(plain.target_counts, posed.target_counts)
    assert np.array_equal(plain.control_counts, posed.control_counts)


def test_every_smiles_is_the_product_of_its_building_blocks() -> None:
    data = simulate_del(seed=3, n_per_cycle=(5, 4, 8), pharmacophore_block_fraction=0.3)
    block_smiles = data.attrs["building_block_smiles"]
    kinds_seen = set()
    for i in range(data.n_compounds):
        a, b, c = data.building_blocks.iloc[i].tolist()
        assert data.compound_id[i] == f"{a}-{b}-{c}"
        assert data.smiles[i] == canonical(data.smiles[i])
        on_linker = react_by_hand("acid", block_smiles["cycle1"][a], "CN")
        dimer = react_by_hand("acid", block_smiles["cycle2"][b], on_linker)
        cap = block_smiles["cycle3"][c]
        kinds = [
            k for k, group in CAP_GROUPS.items() if Chem.MolFromSmiles(cap).HasSubstructMatch(Chem.MolFromSmarts(group))
        ]
        assert len(kinds) == 1, cap
        kinds_seen.add(kinds[0])
        assert data.smiles[i] == react_by_hand(kinds[0], cap, dimer)
        assert Chem.MolFromSmiles(data.smiles[i]).HasSubstructMatch(METHYL_AMIDE)  # the linker
    assert len(kinds_seen) >= 2


def test_a_two_cycle_library_caps_cycle_1_on_the_linker() -> None:
    data = simulate_del(seed=4, n_per_cycle=(6, 9), pharmacophore_block_fraction=0.3, load_noise=0.15)
    assert data.n_compounds == 54 and list(data.building_blocks.columns) == ["cycle1", "cycle2"]
    block_smiles = data.attrs["building_block_smiles"]
    assert sorted(block_smiles) == ["cycle1", "cycle2"]
    for i in range(data.n_compounds):
        a, b = data.building_blocks.iloc[i].tolist()
        assert data.compound_id[i] == f"{a}-{b}"
        cap = block_smiles["cycle2"][b]
        kinds = [
            k for k, group in CAP_GROUPS.items() if Chem.MolFromSmiles(cap).HasSubstructMatch(Chem.MolFromSmarts(group))
        ]
        assert len(kinds) == 1, cap
        assert data.smiles[i] == react_by_hand(kinds[0], cap, react_by_hand("acid", block_smiles["cycle1"][a], "CN"))
    assert [record["cycles"] for record in data.attrs["disynthon_effects"]] == [["cycle1", "cycle2"]]
    truth = data.truth
    parts = truth[["target_pharmacophore", "target_building_blocks", "target_disynthons", "target_noise"]].sum(axis=1)
    np.testing.assert_allclose(truth["log_target_enrichment"], data.attrs["inert_log_target"] + parts)
    yields = data.attrs["building_block_yields"]
    product = np.array([yields["cycle1"][a] * yields["cycle2"][b] for a, b in data.building_blocks.to_numpy()])
    # the load is the product of the two yields times lognormal noise: its log tracks the yields' closely
    assert np.corrcoef(np.log(product), np.log(truth["load"]))[0, 1] > 0.8


def test_pharmacophore_is_found_on_the_product_and_drives_binding(screen: DELData) -> None:
    truth = screen.truth
    matched = np.array([Chem.MolFromSmiles(s).HasSubstructMatch(SULFONAMIDE) for s in screen.smiles])
    assert np.array_equal(truth["has_pharmacophore"].to_numpy(), matched)
    carriers = screen.attrs["pharmacophore_building_blocks"]
    by_block = np.zeros(screen.n_compounds, dtype=bool)
    for cycle in screen.cycles:
        assert len(carriers[cycle]) >= 1
        by_block |= screen.building_blocks[cycle].isin(carriers[cycle]).to_numpy()
    assert np.array_equal(by_block, matched)
    assert 0.05 < matched.mean() < 0.6
    log_t = truth["log_target_enrichment"]
    assert log_t[matched].mean() - log_t[~matched].mean() > 3.0
    assert truth.loc[matched, "is_binder"].mean() > 0.8
    assert truth.loc[~matched, "is_binder"].mean() < 0.3


def test_truth_parts_add_up_to_the_enrichments(screen: DELData) -> None:
    truth, attrs = screen.truth, screen.attrs
    total = attrs["inert_log_target"] + truth[
        ["target_pharmacophore", "target_building_blocks", "target_disynthons", "target_noise"]
    ].sum(axis=1)
    np.testing.assert_allclose(truth["log_target_enrichment"], total, atol=1e-12)
    assert attrs["inert_log_target"] == 0.0  # the default truth is multiplicative: t is a fold over the beads
    np.testing.assert_allclose(
        truth["log_matrix_enrichment"],
        truth[["matrix_lipophilicity", "matrix_building_blocks", "matrix_noise"]].sum(axis=1),
        atol=1e-12,
    )
    assert np.array_equal(truth["is_binder"], truth["log_target_enrichment"] >= attrs["binder_log_threshold"])

    bb_target = np.zeros(screen.n_compounds)
    bb_matrix = np.zeros(screen.n_compounds)
    for cycle in screen.cycles:
        ids = screen.building_blocks[cycle]
        assert set(ids) == set(attrs["bb_target_effects"][cycle]) == set(attrs["bb_matrix_effects"][cycle])
        assert set(ids) == set(attrs["building_block_smiles"][cycle])
        bb_target += ids.map(attrs["bb_target_effects"][cycle]).to_numpy()
        bb_matrix += ids.map(attrs["bb_matrix_effects"][cycle]).to_numpy()
    np.testing.assert_allclose(truth["target_building_blocks"], bb_target, atol=1e-12)
    np.testing.assert_allclose(truth["matrix_building_blocks"], bb_matrix, atol=1e-12)
    assert (bb_target != 0).any()

    disynthon = np.zeros(screen.n_compounds)
    assert len(attrs["disynthon_effects"]) >= 3  # at least one per pair of cycles
    for record in attrs["disynthon_effects"]:
        (first, second), (x, y) = record["cycles"], record["building_blocks"]
        hit = (screen.building_blocks[first] == x) & (screen.building_blocks[second] == y)
        assert hit.sum() > 0
        disynthon += np.where(hit, record["effect"], 0.0)
    np.testing.assert_allclose(truth["target_disynthons"], disynthon, atol=1e-12)

    logp = np.array([Crippen.MolLogP(Chem.MolFromSmiles(s)) for s in screen.smiles])
    np.testing.assert_allclose(truth["logp"], logp, atol=1e-6)
    threshold, slope = attrs["matrix_logp_threshold"], attrs["parameters"]["matrix_logp_slope"]
    np.testing.assert_allclose(truth["matrix_lipophilicity"], slope * np.maximum(0.0, logp - threshold), atol=1e-6)
    assert abs(truth["load"].mean() - 1.0) < 1e-9
    assert np.corrcoef(truth["load"], screen.load)[0, 1] > 0.8


@pytest.mark.parametrize("combine", ["additive", "multiplicative"])
def test_expected_counts_follow_the_truth(combine: str) -> None:
    data = simulate_del(
        seed=7,
        n_per_cycle=(6, 5, 4),
        combine=combine,
        reads_per_compound=1e6,
        target_gate=0.0,
        control_gate=0.0,
        nb_concentration=None,
    )
    truth = data.truth
    load = truth["load"].to_numpy()[:, None]
    log_t, log_m = truth["log_target_enrichment"].to_numpy(), truth["log_matrix_enrichment"].to_numpy()
    target_scale, control_scale = np.array(data.attrs["target_scale"]), np.array(data.attrs["control_scale"])
    assert len(set(target_scale.round(6))) == 3  # replicate depths differ
    expected = np.logaddexp(log_m, log_t) if combine == "additive" else log_m + log_t
    recovered = np.log(np.mean(data.target_counts / (target_scale * load), axis=1))
    np.testing.assert_allclose(recovered, expected, atol=0.03)
    recovered_matrix = np.log(np.mean(data.control_counts / (control_scale * load), axis=1))
    np.testing.assert_allclose(recovered_matrix, log_m, atol=0.03)
    assert data.attrs["inert_log_target"] == (-2.5 if combine == "additive" else 0.0)


def test_defaults_give_mostly_zero_counts_and_overdispersion() -> None:
    data = simulate_del(seed=0, n_per_cycle=(20, 20, 20))
    target_zeros = (data.target_counts == 0).mean(axis=0)
    control_zeros = (data.control_counts == 0).mean(axis=0)
    assert 0.6 <= target_zeros.mean() <= 0.85, target_zeros
    assert 0.6 <= control_zeros.mean() <= 0.85, control_zeros
    assert len(set(data.target_counts.sum(axis=0))) == 3
    # abundant inert compounds, of a narrow band of abundance: more zeros and more spread than Poisson counts
    # with the same mean (gates, dispersion); the abundance itself would spread counts further
    log_load = np.log(data.truth["load"].to_numpy())
    band = (log_load > np.quantile(log_load, 0.8)) & (log_load < np.quantile(log_load, 0.9))
    inert = ~data.truth["is_binder"].to_numpy() & (data.truth["log_matrix_enrichment"].to_numpy() < 0.5) & band
    counts = data.control_counts[inert, 0]
    assert (counts == 0).mean() > np.exp(-counts.mean()) + 0.03
    assert counts.var() > 1.3 * counts.mean()
    poisson = simulate_del(seed=0, n_per_cycle=(20, 20, 20), nb_concentration=None, control_gate=0.0)
    plain = poisson.control_counts[inert, 0]
    assert plain.var() < 1.2 * plain.mean() and (counts == 0).mean() > (plain == 0).mean() + 0.05
    assert 0.02 < data.truth["is_binder"].mean() < 0.4


def test_true_pose_carries_the_signal(screen: DELData) -> None:
    truth, attrs = screen.truth, screen.attrs
    signal, marker = np.array(attrs["pose_signal_direction"]), np.array(attrs["pose_marker_direction"])
    assert abs(signal @ marker) < 1e-9 and abs(signal @ signal - 1) < 1e-9
    true_pose = truth["true_pose"].to_numpy()
    assert set(true_pose) <= {0, 1, 2} and len(set(true_pose)) == 3
    rows = np.arange(screen.n_compounds)
    poses = screen.poses.astype(np.float64)
    log_t = truth["log_target_enrichment"].to_numpy()
    assert np.corrcoef(poses[rows, true_pose] @ signal, log_t)[0, 1] > 0.8
    decoy = (true_pose + 1) % 3
    assert abs(np.corrcoef(poses[rows, decoy] @ signal, log_t)[0, 1]) < 0.2
    assert (poses[rows, true_pose] @ marker).mean() - (poses[rows, decoy] @ marker).mean() > 2.5


def test_more_blocks_than_listed_are_decorated_real_blocks() -> None:
    pool = building_block_pool(1)
    assert pool["handwritten"].sum() >= 40 and len(pool) > 100
    assert pool["smiles"].is_unique
    assert all(Chem.MolFromSmiles(s) is not None for s in pool["smiles"])
    matched = [Chem.MolFromSmiles(s).HasSubstructMatch(SULFONAMIDE) for s in pool["smiles"]]
    assert pool["pharmacophore"].tolist() == matched
    for cycle in (2, 3):
        assert building_block_pool(cycle)["handwritten"].sum() >= 40
    assert set(building_block_pool(3)["chemistry"]) == {
        "amide coupling",
        "reductive amination",
        "sulfonylation",
        "urea formation",
    }
    n_listed = int(pool["handwritten"].sum())
    data = simulate_del(seed=1, n_per_cycle=(n_listed + 5, 2, 2), n_target_replicates=1, n_control_replicates=0)
    chosen = data.attrs["building_block_smiles"]["cycle1"]
    assert len(set(chosen.values())) == n_listed + 5
    handwritten = pool.set_index("smiles")["handwritten"]
    made = [i for i, smiles in chosen.items() if not handwritten[smiles]]
    assert len(made) >= 5
    groups = {
        "fluoro",
        "chloro",
        "bromo",
        "methyl",
        "methoxy",
        "trifluoromethyl",
        "cyano",
        "trifluoromethoxy",
    }
    assert all(data.attrs["building_block_names"]["cycle1"][i].split("-")[0] in groups for i in made)
    assert data.control_counts.shape == (data.n_compounds, 0)


def test_too_many_blocks_or_bad_arguments_raise() -> None:
    largest = max_building_blocks()
    with pytest.raises(ValueError, match=str(largest[1])):
        simulate_del(n_per_cycle=(3, largest[1] + 1, 3))
    with pytest.raises(ValueError, match="combine"):
        simulate_del(n_per_cycle=(2, 2, 2), combine="sum")
    with pytest.raises(ValueError, match="n_per_cycle"):
        simulate_del(n_per_cycle=(2, 2, 2, 2))
    with pytest.raises(ValueError, match=f"at most {largest[2]} building blocks"):  # a two-cycle library caps
        simulate_del(n_per_cycle=(2, largest[2] + 1))
    with pytest.raises(ValueError, match="target_gate"):
        simulate_del(n_per_cycle=(2, 2, 2), target_gate=1.5)


def test_enumeration_shortcuts_match_the_slow_path() -> None:
    from delpyro.simulate import _choose_blocks, _enumerate

    rng = np.random.default_rng(4)
    for sizes, pools in (((4, 5, 12), (0, 1, 2)), ((6, 11), (0, 2))):
        blocks = [_choose_blocks(rng, k, n, 0.2, pool) for k, (n, pool) in enumerate(zip(sizes, pools, strict=True))]
        fast = _enumerate(blocks)
        slow = _enumerate(blocks, shortcuts=False)
        assert len(fast[0]) == np.prod(sizes)
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
        np.testing.assert_allclose(fast[2], slow[2], atol=1e-6)
