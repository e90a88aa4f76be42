"""Many selections in one place (delpyro.selections): the wide table, and the DELT-Hit folder written by
write_delt from simulated screens and read back by read_delt."""

from __future__ import annotations

import dataclasses
import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem

import delpyro
from delpyro.data import DELDataError
from delpyro.selections import read_delt, read_selections, write_delt


def _screen(**renames) -> delpyro.DELData:
    """A simulated screen of 36 members, sparse enough that some members have no reads in any replicate;
    its replicates renamed, as the layout names selection folders after them."""
    screen = delpyro.simulate_del(seed=0, n_per_cycle=(4, 3, 3), reads_per_compound=0.05)
    names = {"target_names": ["kin_1", "kin_2", "kin_3"], "control_names": ["sa_1", "sa_2"], **renames}
    return dataclasses.replace(screen, **names)


def _shuffled(screen: delpyro.DELData, seed: int, **renames) -> delpyro.DELData:
    """A second target made from the first by permuting its target counts over the compounds (not a
    simulation of another protein: only a different set of counts on the same library)."""
    order = np.random.default_rng(seed).permutation(screen.n_compounds)
    return dataclasses.replace(screen, target_counts=screen.target_counts[order], **renames)


def _original_ids(read: delpyro.DELData) -> np.ndarray:
    """The simulated compound ids of a screen read back: its codes mapped through the block_id columns."""
    names = read.attrs["building_block_ids"]
    parts = [read.building_blocks[cycle].map(names[cycle]) for cycle in read.cycles]
    return (parts[0] + "-" + parts[1] + "-" + parts[2]).to_numpy(dtype=object)


def _by_id(screen: delpyro.DELData, ids: np.ndarray, arm: str) -> np.ndarray:
    """The rows of ``screen``'s target or control counts for the compounds ``ids``."""
    position = pd.Series(np.arange(screen.n_compounds), index=screen.compound_id)
    counts = screen.target_counts if arm == "target" else screen.control_counts
    return counts[position[ids].to_numpy()]


# ----------------------------------------------------------------------------------------------------
# the DELT folder: a round trip


def test_a_simulated_screen_written_and_read_back_keeps_its_counts(tmp_path) -> None:
    screen = _screen()
    write_delt({"kinase": screen}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "building_blocks_1.tsv",
        "building_blocks_2.tsv",
        "building_blocks_3.tsv",
        "kin_1",
        "kin_2",
        "kin_3",
        "sa_1",
        "sa_2",
        "selections.tsv",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        screens = read_delt(tmp_path)
    assert list(screens) == ["kinase"]
    read = screens["kinase"]
    assert read.target_names == screen.target_names
    assert read.control_names == screen.control_names
    assert read.attrs["selections"]["control_match"] == "same beads and buffer"

    # members without reads in any selection are absent; the others keep their counts
    reads = screen.target_counts.sum(axis=1) + screen.control_counts.sum(axis=1)
    assert 0 < (reads == 0).sum() < screen.n_compounds
    ids = _original_ids(read)
    assert sorted(ids) == sorted(screen.compound_id[reads > 0])
    np.testing.assert_array_equal(read.target_counts, _by_id(screen, ids, "target"))
    np.testing.assert_array_equal(read.control_counts, _by_id(screen, ids, "control"))
    assert read.observed.all()

    # ids are the codes joined; SMILES are the blocks' SMILES joined by dots, which RDKit reads
    assert re.fullmatch(r"\d+-\d+-\d+", read.compound_id[0])
    first = read.building_blocks.iloc[0]
    blocks = [read.building_block_smiles[cycle][first[cycle]] for cycle in read.cycles]
    assert read.smiles[0] == ".".join(blocks)
    assert all(Chem.MolFromSmiles(s) is not None for s in read.smiles)
    simulated = screen.attrs["building_block_smiles"]
    names = read.attrs["building_block_ids"]
    for cycle in read.cycles:
        assert {names[cycle][code]: s for code, s in read.building_block_smiles[cycle].items()} == simulated[cycle]
    assert (
        read.attrs["building_block_reactions"]["cycle3"]["1"]
        == screen.attrs["building_block_chemistry"]["cycle3"]["C001"]
    )


def test_complete_enumerates_the_library_with_unobserved_members_at_zero(tmp_path) -> None:
    screen = _screen()
    write_delt({"kinase": screen}, tmp_path)
    read = read_delt(tmp_path, complete=True)["kinase"]
    assert read.n_compounds == screen.n_compounds == 36
    # codes follow the simulated block order, and cycle 1 varies slowest in both
    np.testing.assert_array_equal(_original_ids(read), screen.compound_id)
    np.testing.assert_array_equal(read.target_counts, screen.target_counts)
    np.testing.assert_array_equal(read.control_counts, screen.control_counts)
    reads = screen.target_counts.sum(axis=1) + screen.control_counts.sum(axis=1)
    np.testing.assert_array_equal(read.observed, reads > 0)
    assert read.attrs["library"] == {"n_members": 36, "complete": True, "blocks_per_cycle": [4, 3, 3]}


def test_a_read_folder_written_again_is_the_same(tmp_path) -> None:
    write_delt({"kinase": _screen()}, tmp_path / "first")
    read = read_delt(tmp_path / "first")
    write_delt(read, tmp_path / "second")
    for name in ["selections.tsv", "building_blocks_1.tsv", "kin_2/counts.txt", "sa_1/counts.txt"]:
        assert (tmp_path / "first" / name).read_text() == (tmp_path / "second" / name).read_text()
    again = read_delt(tmp_path / "second")["kinase"]
    np.testing.assert_array_equal(again.compound_id, read["kinase"].compound_id)
    np.testing.assert_array_equal(again.target_counts, read["kinase"].target_counts)


def test_two_targets_sharing_a_control_read_back_with_the_same_control(tmp_path) -> None:
    first = _screen()
    second = _shuffled(first, seed=5, target_names=["shuffled_1", "shuffled_2", "shuffled_3"])
    write_delt({"kinase": first, "kinase_shuffled": second}, tmp_path)
    table = pd.read_csv(tmp_path / "selections.tsv", sep="\t", keep_default_na=False)
    assert table["name"].tolist() == [
        "kin_1",
        "kin_2",
        "kin_3",
        "sa_1",
        "sa_2",
        "shuffled_1",
        "shuffled_2",
        "shuffled_3",
    ]

    screens = read_delt(tmp_path)
    assert list(screens) == ["kinase", "kinase_shuffled"]
    a, b = screens["kinase"], screens["kinase_shuffled"]
    assert a.control_names == b.control_names == ["sa_1", "sa_2"]
    common = np.intersect1d(a.compound_id, b.compound_id)
    np.testing.assert_array_equal(_by_id(a, common, "control"), _by_id(b, common, "control"))
    for read, written in ((a, first), (b, second)):
        ids = _original_ids(read)
        np.testing.assert_array_equal(read.target_counts, _by_id(written, ids, "target"))
        np.testing.assert_array_equal(read.control_counts, _by_id(written, ids, "control"))


def test_controls_are_matched_by_beads_and_buffer(tmp_path) -> None:
    first = _screen()
    second = _shuffled(first, seed=3, target_names=["other_1", "other_2", "other_3"], control_names=["ni_1", "ni_2"])
    screens = {"kinase": first, "other": second}
    with pytest.raises(DELDataError, match=r"target 'kinase' would be paired .* controls \['sa_1', 'sa_2', 'ni_1'"):
        write_delt(screens, tmp_path / "unmarked")
    assert not (tmp_path / "unmarked").exists()

    beads = {name: {"beads": "streptavidin"} for name in [*first.target_names, *first.control_names]}
    beads |= {name: {"beads": "Ni-NTA"} for name in [*second.target_names, *second.control_names]}
    write_delt(screens, tmp_path / "marked", selections=beads, buffer="PBS", date="2024-05-01")
    read = read_delt(tmp_path / "marked")
    assert read["kinase"].control_names == ["sa_1", "sa_2"]
    assert read["other"].control_names == ["ni_1", "ni_2"]
    rows = read["other"].attrs["selections"]["rows"]
    assert {(r["name"], r["beads"], r["buffer"], r["date"]) for r in rows if r["role"] == "control"} == {
        ("ni_1", "Ni-NTA", "PBS", "2024-05-01"),
        ("ni_2", "Ni-NTA", "PBS", "2024-05-01"),
    }
    # controls named by hand win over the beads
    with pytest.warns(UserWarning, match="'ni_1', 'ni_2' are paired with no target"):
        swapped = read_delt(tmp_path / "marked", controls={"other": ["sa_2"]})
    assert swapped["other"].control_names == ["sa_2"]
    assert swapped["other"].attrs["selections"]["control_match"] == "the controls argument"


def test_a_target_without_a_matching_control_warns_and_has_no_control_columns(tmp_path) -> None:
    screen = dataclasses.replace(_screen(), control_counts=None, control_names=None)
    write_delt({"kinase": screen}, tmp_path)
    with pytest.warns(UserWarning, match="no no_protein selection .* 'kinase'"):
        read = read_delt(tmp_path)["kinase"]
    assert read.n_control_replicates == 0
    assert "no control replicates" in read.attrs["selections"]["no_control"]


def test_a_hand_written_folder_without_headers_beads_or_buffer(tmp_path) -> None:
    """Two cycles of 200 blocks (40,000 members), counts without a header line, a CSV selections table
    with neither beads nor buffer: every target is paired with every no_protein selection."""
    for k in (1, 2):
        codes = np.arange(1, 201)
        pd.DataFrame(
            {"code": codes, "codon": "", "smiles": ["C" * (1 + c % 5) + "O" for c in codes], "reaction": ""}
        ).to_csv(tmp_path / f"building_blocks_{k}.tsv", sep="\t", index=False)
    pd.DataFrame(
        {
            "Name": ["p1", "p2", "q1", "n1"],
            "Target": ["P", "P", "Q", "-"],
            "Group": ["protein", "Protein", "protein", "no_protein"],
        }
    ).to_csv(tmp_path / "selections.csv", index=False)
    lines = {"p1": "3\t7\t5\n200\t1\t2\n", "p2": "3\t7\t1\n", "q1": "9\t9\t4\n", "n1": "3\t7\t2\n1\t1\t1\n"}
    for name, text in lines.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "counts.txt").write_text(text)

    screens = read_delt(tmp_path)
    p = screens["P"]
    assert p.target_names == ["p1", "p2"] and p.control_names == ["n1"]
    assert p.compound_id.tolist() == ["1-1", "3-7", "200-1"]
    assert p.target_counts.tolist() == [[0, 0], [5, 1], [2, 0]]
    assert p.control_counts[:, 0].tolist() == [1, 2, 0]
    assert screens["Q"].control_names == ["n1"]

    complete = read_delt(tmp_path, complete=True)["Q"]
    assert complete.n_compounds == 40_000
    assert complete.observed.sum() == 3  # 9-9 (q1), 3-7 and 1-1 (n1)
    assert complete.compound_id[0] == "1-1" and complete.compound_id[-1] == "200-200"
    row = int(np.flatnonzero(complete.compound_id == "9-9")[0])
    assert complete.target_counts[row, 0] == 4 and complete.target_counts.sum() == 4


# ----------------------------------------------------------------------------------------------------
# the wide table


def _wide() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two targets, each in duplicate, and one no-protein control on each target's beads."""
    screen = _screen()
    second = _shuffled(screen, seed=9)
    control = screen.control_counts
    table = pd.DataFrame(
        {
            "smiles": screen.smiles,
            "id": screen.compound_id,
            "A_1": screen.target_counts[:, 0],
            "A_2": screen.target_counts[:, 1],
            "B_1": second.target_counts[:, 0],
            "B_2": second.target_counts[:, 1],
            "beads_sa": control[:, 0],
            "beads_ni": control[:, 1],
            **{cycle: screen.building_blocks[cycle] for cycle in screen.cycles},
        }
    )
    selections = pd.DataFrame(
        {
            "name": ["A_1", "A_2", "B_1", "B_2", "beads_sa", "beads_ni"],
            "target": ["CA2", "CA2", "HSA", "HSA", "", ""],
            "group": ["protein", "protein", "protein", "protein", "no_protein", "no_protein"],
            "beads": ["streptavidin", "streptavidin", "Ni-NTA", "Ni-NTA", "streptavidin", "Ni-NTA"],
            "buffer": ["PBS"] * 6,
            "date": ["2024-05-01"] * 6,
        }
    )
    return table, selections


def test_a_wide_table_gives_each_target_the_control_on_its_beads(tmp_path) -> None:
    table, selections = _wide()
    table.to_csv(tmp_path / "counts.csv", index=False)
    selections.to_csv(tmp_path / "selections.tsv", sep="\t", index=False)
    screens = read_selections(
        tmp_path / "counts.csv", tmp_path / "selections.tsv", compound_id="id", building_blocks="cycle*"
    )
    assert list(screens) == ["CA2", "HSA"]
    ca2, hsa = screens["CA2"], screens["HSA"]
    assert (ca2.target_names, ca2.control_names) == (["A_1", "A_2"], ["beads_sa"])
    assert (hsa.target_names, hsa.control_names) == (["B_1", "B_2"], ["beads_ni"])
    np.testing.assert_array_equal(ca2.target_counts, table[["A_1", "A_2"]].to_numpy())
    np.testing.assert_array_equal(hsa.control_counts[:, 0], table["beads_ni"].to_numpy())
    np.testing.assert_array_equal(hsa.compound_id, table["id"].to_numpy(dtype=object))
    assert hsa.cycles == ["cycle1", "cycle2", "cycle3"]
    assert hsa.attrs["selections"]["rows"][-1] == {
        "name": "beads_ni",
        "role": "control",
        "target": "",
        "group": "no_protein",
        "beads": "Ni-NTA",
        "buffer": "PBS",
        "date": "2024-05-01",
    }


def test_a_wide_table_target_without_a_control_warns(tmp_path) -> None:
    table, selections = _wide()
    selections.loc[selections["name"] == "beads_ni", "buffer"] = "HEPES"
    with pytest.warns(UserWarning) as caught:
        screens = read_selections(table, selections)
    messages = [str(w.message) for w in caught]
    assert any("target 'HSA'" in m and "beads 'Ni-NTA', buffer 'PBS'" in m for m in messages)
    assert any("'beads_ni' are paired with no target" in m for m in messages)
    assert screens["HSA"].n_control_replicates == 0
    assert screens["HSA"].control_counts.shape == (36, 0)
    assert "no_control" in screens["HSA"].attrs["selections"]
    assert screens["CA2"].control_names == ["beads_sa"]
    # paired by hand instead
    paired = read_selections(table, selections, controls={"HSA": ["beads_ni"]})
    assert paired["HSA"].control_names == ["beads_ni"]


def test_a_wide_table_refuses_a_selection_without_its_column(tmp_path) -> None:
    table, selections = _wide()
    table.drop(columns="B_2").to_csv(tmp_path / "counts.csv", index=False)
    selections.to_csv(tmp_path / "selections.csv", index=False)
    with pytest.raises(
        DELDataError,
        match=r"selections\.csv: column 'name': no count column in .*counts\.csv for the selections of row 3 \('B_2'\)",
    ):
        read_selections(tmp_path / "counts.csv", tmp_path / "selections.csv")
    with pytest.raises(DELDataError, match=r"controls: selection 'A_1' .* is a 'protein' selection"):
        read_selections(table, selections, controls={"HSA": ["A_1"]})
    with pytest.raises(DELDataError, match=r"controls: target 'XYZ' has no protein selection"):
        read_selections(table, selections, controls={"XYZ": []})
    table.loc[4, "A_2"] = -2
    table.to_csv(tmp_path / "negative.csv", index=False)
    with pytest.raises(DELDataError, match=r"negative\.csv: column 'A_2': .* row 4 \(-2\) are negative"):
        read_selections(tmp_path / "negative.csv", selections)


# ----------------------------------------------------------------------------------------------------
# malformed folders: each error names the file, the column and the rows


@pytest.fixture
def folder(tmp_path):
    write_delt({"kinase": _screen()}, tmp_path / "delt")
    return tmp_path / "delt"


def _edit_line(path, index: int, text: str | None) -> None:
    """Replace (or, with None, repeat) line ``index`` of a file, counting the header as line 0."""
    lines = path.read_text().splitlines()
    lines[index : index + 1] = [lines[index], lines[index]] if text is None else [text]
    path.write_text("\n".join(lines) + "\n")


def test_a_code_outside_the_building_block_table_is_refused(folder) -> None:
    _edit_line(folder / "kin_2" / "counts.txt", 3, "1\t9\t2\t4")
    with pytest.raises(DELDataError, match=r"kin_2/counts\.txt: column 'code_2': row 2 \(9\) .*building_blocks_2\.tsv"):
        read_delt(folder)


def test_a_selection_without_its_folder_is_refused(folder) -> None:
    shutil.rmtree(folder / "sa_1")
    with pytest.raises(
        DELDataError, match=r"selections\.tsv: column 'name': no folder in .* for the selections of row 3 \('sa_1'\)"
    ):
        read_delt(folder)


def test_a_negative_count_is_refused(folder) -> None:
    _edit_line(folder / "sa_2" / "counts.txt", 2, "1\t1\t2\t-3")
    with pytest.raises(DELDataError, match=r"sa_2/counts\.txt: column 'count': .*row 1 \(-3\.0\) are negative"):
        read_delt(folder)


def test_a_member_listed_twice_is_refused(folder) -> None:
    _edit_line(folder / "kin_1" / "counts.txt", 2, None)
    with pytest.raises(DELDataError, match=r"kin_1/counts\.txt: columns \['code_1', 'code_2', 'code_3'\]: .*rows 1, 2"):
        read_delt(folder)


def test_an_unknown_group_is_refused(folder) -> None:
    _edit_line(folder / "selections.tsv", 4, "sa_1\t\tbeads only\tunspecified\tunspecified\t")
    with pytest.raises(DELDataError, match=r"selections\.tsv: column 'group': .*row 3 \('beads only'\) are neither"):
        read_delt(folder)


def test_other_damage_is_named_too(folder) -> None:
    _edit_line(folder / "kin_3" / "counts.txt", 1, "1\t1\t4")
    with pytest.raises(
        DELDataError, match=r"kin_3/counts\.txt: columns \['code_1', .*'count'\]: row 0 leave fields empty"
    ):
        read_delt(folder)
    _edit_line(folder / "kin_3" / "counts.txt", 1, "1\t1\t1\t4")
    (folder / "building_blocks_3.tsv").rename(folder / "building_blocks_4.tsv")
    with pytest.raises(DELDataError, match=r"building_blocks_4\.tsv.* without a gap"):
        read_delt(folder)
    (folder / "building_blocks_4.tsv").rename(folder / "building_blocks_3.tsv")
    _edit_line(folder / "building_blocks_1.tsv", 2, "2\t\tnot a smiles\t\tA002")
    with pytest.raises(DELDataError, match=r"building_blocks_1\.tsv: column 'smiles': .*row 1 \('not a smiles'\)"):
        read_delt(folder)


def test_write_delt_refuses_what_it_cannot_write_faithfully(tmp_path) -> None:
    simulated = delpyro.simulate_del(seed=0, n_per_cycle=(4, 3, 3))
    with pytest.raises(DELDataError, match=r"replicate 'r1' is a no_protein selection .* must differ"):
        write_delt(simulated, tmp_path / "a")
    bare = dataclasses.replace(_screen(), building_block_smiles=None, attrs={})
    with pytest.raises(DELDataError, match="no building-block SMILES"):
        write_delt(bare, tmp_path / "b")
    write_delt(_screen(), tmp_path / "c")
    with pytest.raises(DELDataError, match="not empty"):
        write_delt(_screen(), tmp_path / "c")
    clash = _shuffled(_screen(), seed=1, target_names=["x_1", "x_2", "x_3"])
    clash = dataclasses.replace(clash, control_counts=clash.control_counts[::-1].copy())
    with pytest.raises(DELDataError, match=r"selection 'sa_1' is shared by screens \['kinase', 'other'\]"):
        write_delt({"kinase": _screen(), "other": clash}, tmp_path / "d")
