"""Real screens as labs publish them: the UNCDEL003 53BP1 table (shipped), its library, its building blocks,
and a pre/post table (MAP_DNN's example, MIT, tests/data)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator
from scipy.stats import spearmanr

import delpyro
from delpyro import DELDataError, Encoding, ModelConfig, fit, read_counts, split

UNCDEL003 = Path(delpyro.__file__).parent / "screens" / "uncdel003_53bp1"
TABLE = UNCDEL003 / "UNCDEL003_53bp1.csv.gz"
MAP_DNN = Path(__file__).parent / "data" / "map_dnn_example.csv"


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return pd.read_csv(TABLE)


@pytest.fixture(scope="module")
def completed() -> delpyro.DELData:
    return delpyro.datasets.uncdel003_53bp1()


def test_the_published_table_reads_whole_with_the_deli_layout(published) -> None:
    report: list[str] = []
    with pytest.warns(UserWarning, match="repaired 119 of 4,209"):
        screen = read_counts(TABLE, preset="deli", report=report)
    assert screen.n_compounds == 4209 and screen.target_names == [f"corrected_D3index{k}" for k in (1, 2, 3)]
    assert screen.n_control_replicates == 0 and screen.cycles == ["ID_A", "ID_B", "ID_C"]
    np.testing.assert_array_equal(screen.target_counts, published[screen.target_names].to_numpy())
    assert (screen.smiles != screen.smiles_as_read).sum() == 119
    assert {c: len(v) for c, v in screen.building_block_smiles.items()} == {"ID_A": 33, "ID_B": 40, "ID_C": 44}
    raw = read_counts(TABLE, preset="deli", target="raw_*", on_invalid_smiles="repair")  # the reads instead
    assert raw.target_counts.sum(0).tolist() == [118065, 119202, 55417]
    assert screen.target_counts.sum(0).tolist() == [9954, 9845, 5922]
    with pytest.raises(DELDataError, match=r"read them with delpyro\.selections\.read_delt"):
        read_counts(UNCDEL003, preset="delt")


def test_completion_adds_exactly_the_members_without_reads(published, completed) -> None:
    assert completed.n_compounds == 58080
    assert int(completed.observed.sum()) == 4209 and int((~completed.observed).sum()) == 53871
    assert (completed.target_counts[~completed.observed] == 0).all()
    listed = pd.Series(np.arange(completed.n_compounds), index=completed.compound_id)[published["DEL_ID"]]
    columns = [f"corrected_D3index{k}" for k in (1, 2, 3)]
    np.testing.assert_array_equal(completed.target_counts[listed.to_numpy()], published[columns].to_numpy())
    assert completed.observed[listed.to_numpy()].all()
    library = pd.read_csv(UNCDEL003 / "DEL003_library_enumerated.csv.gz")
    assert completed.compound_id.tolist() == library["DEL_ID"].tolist()  # the library's order
    assert (completed.smiles_as_read == library["SMILES"].to_numpy()).all()
    assert (completed.smiles != completed.smiles_as_read).sum() == 1760  # the library's uncharged ammoniums
    assert completed.attrs["notes"][0].endswith("53,871 members without reads added with zero counts to the 4,209 "
                                                "the table lists")  # fmt: skip
    assert "observed: 4,209 members listed" in completed.summary()


def test_completion_refuses_members_the_library_does_not_hold(published) -> None:
    table = published.head(5).copy()
    table.loc[2, "DEL_ID"] = "A999-B001-C001"
    library = UNCDEL003 / "DEL003_library_enumerated.csv.gz"
    with pytest.raises(DELDataError, match=r"column 'DEL_ID': row 2 \('A999-B001-C001'\) are not members of"):
        read_counts(table, preset="deli", library=library)
    with pytest.raises(DELDataError, match="needs the compound id column"):
        read_counts(published.head(5), target="corrected_*", smiles="SMILES", library=library)


def test_block_features_equal_the_blocks_fingerprints_computed_another_way() -> None:
    screen = delpyro.simulate_del(seed=0, n_per_cycle=(4, 3, 3))
    config = ModelConfig(features="building_blocks", fingerprint_bits=256, fingerprint_radius=2)
    encoding = Encoding.fit(screen, config)
    assert encoding.feature_cycles == ["cycle1", "cycle2", "cycle3"] and encoding.n_feature_bits == 768
    features = encoding.encode(screen)["fingerprints"]
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=256, includeChirality=True)
    for row in (0, 17, 35):
        blocks = [screen.building_block_smiles[c][screen.building_blocks[c][row]] for c in encoding.feature_cycles]
        bits = [generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in blocks]
        np.testing.assert_array_equal(features[row], np.packbits(np.concatenate(bits)))


def test_building_block_features_read_a_real_library_without_products_and_score_unseen_combinations() -> None:
    """The 53BP1 blocks (with DELi's attachment markers, one of them an uncharged ammonium) give features;
    on the simulator a network on block features ranks held-out compounds (unseen combinations of seen
    blocks) as well as one on product fingerprints."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        real = read_counts(TABLE, preset="deli")
    encoding = Encoding.fit(real, ModelConfig(features="building_blocks", fingerprint_bits=512))
    assert encoding.encode(real, counts=False)["fingerprints"].shape == (4209, 3 * 512 // 8)
    screen = delpyro.simulate_del(seed=0, n_per_cycle=(12, 12, 12))
    train, val, test = split(screen, "random", seed=0)
    scores = {}
    for features in ("products", "building_blocks"):
        config = ModelConfig(features=features, epochs=10, hidden_size=32, fingerprint_bits=512)
        result = fit(train, val, config, seed=0, progress="none")
        prediction = result.predict(test)["log_enrichment_mean"]
        scores[features] = spearmanr(prediction, test.truth["log_target_enrichment"]).statistic
    print(f"held-out Spearman: product fingerprints {scores['products']:.3f}, blocks {scores['building_blocks']:.3f}")
    assert scores["building_blocks"] > 0.5 and scores["building_blocks"] > scores["products"] - 0.1
    with pytest.raises(DELDataError, match="needs building-block ids and each block's SMILES"):
        Encoding.fit(read_counts(TABLE, target="corrected_*", smiles="SMILES", compound_id="DEL_ID"),
                     ModelConfig(features="building_blocks"))  # fmt: skip


def test_the_shipped_screen_fits_as_published_and_completed(completed) -> None:
    config = ModelConfig(terms=("building_blocks", "compound"), epochs=2, batch_size=2048)
    as_published = delpyro.datasets.uncdel003_53bp1(complete=False)
    result = fit(as_published, None, ModelConfig(**{**config.to_dict(), "observed_only": "target"}), progress="none")
    assert np.isfinite(result.history["train_loss"]).all()
    effects = result.building_block_effects()
    assert set(effects["cycle"]) == {"ID_A", "ID_B", "ID_C"} and "C006" in set(effects["building_block"])
    whole = fit(completed, None, config, progress="none")
    assert np.isfinite(whole.history["train_loss"]).all()


def test_a_pre_post_table_reads_with_a_column_map_and_fits() -> None:
    """MAP_DNN's example: pre-selection reads are the load, post-selection reads the target; no control."""
    screen = read_counts(MAP_DNN, target="Post", load="Pre", smiles="smiles",
                         building_blocks=["CodeA", "CodeB", "CodeC"])  # fmt: skip
    table = pd.read_csv(MAP_DNN)
    assert screen.n_compounds == 500 and screen.n_control_replicates == 0
    np.testing.assert_array_equal(screen.load, table["Pre"].to_numpy(dtype=float))
    np.testing.assert_array_equal(screen.target_counts[:, 0], table["Post"].to_numpy())
    result = fit(screen, None, ModelConfig(hidden_size=16, fingerprint_bits=256, epochs=3), progress="none")
    assert result.model.encoding.uses_load and np.isfinite(result.history["train_loss"]).all()
    prediction = result.predict(screen)
    enrichment = np.log((table["Post"] + 0.5) / (table["Pre"] + 0.5))
    rho = spearmanr(prediction["log_enrichment_mean"], enrichment).statistic
    print(f"MAP_DNN example: Spearman of the fit with log(post / pre) on its own compounds: {rho:.3f}")
    assert rho > 0.3
