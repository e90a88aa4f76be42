"""Repairing SMILES that write a charged atom without its charge (delpyro.repair), on the real UNCDEL003
53BP1 table and its enumerated library, and on synthetic cases; and read_counts' use of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem, rdBase
from rdkit.Chem import rdMolDescriptors

import delpyro
from delpyro import DELDataError, read_counts, workers
from delpyro.data import STRINGS
from delpyro.repair import invalid_smiles, repair_smiles

#: Where the UNCDEL003 53BP1 files are: shipped inside the package (delpyro.datasets reads them).
UNCDEL003 = Path(delpyro.__file__).parent / "screens" / "uncdel003_53bp1"
SCREEN = "UNCDEL003_53bp1.csv.gz"
LIBRARY = "DEL003_library_enumerated.csv.gz"
TARGET = ["corrected_D3index1", "corrected_D3index2", "corrected_D3index3"]
N_ROWS, N_BROKEN, N_LIBRARY, N_LIBRARY_BROKEN = 4209, 119, 58080, 1760


def uncdel003(name: str) -> Path:
    """A UNCDEL003 file; a missing one fails the test (these are the real data the repair exists for)."""
    path = UNCDEL003 / name
    assert path.is_file(), f"{path} is missing: the UNCDEL003 53BP1 files are needed by this test"
    return path


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.read_csv(uncdel003(SCREEN), usecols=["DEL_ID", *TARGET, "SMILES"], dtype={"SMILES": str})


@pytest.fixture(scope="module")
def broken(table) -> np.ndarray:
    """The rows of the table RDKit refuses, found without delpyro."""
    with rdBase.BlockLogs():
        rows = [i for i, s in enumerate(table["SMILES"]) if Chem.MolFromSmiles(s) is None]
    return np.asarray(rows, dtype=np.int64)


@pytest.fixture(scope="module")
def repair(table):
    return repair_smiles(table["SMILES"].tolist())


def lenient(smiles: str) -> Chem.Mol:
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    mol.UpdatePropertyCache(strict=False)
    return mol


def formula(mol: Chem.Mol) -> str:
    """The molecular formula, hydrogens included, without the trailing net charge (``C5H14N+`` -> ``C5H14N``)."""
    text = rdMolDescriptors.CalcMolFormula(mol)
    charge = Chem.GetFormalCharge(mol)
    if charge:
        suffix = ("+" if charge > 0 else "-") + (str(abs(charge)) if abs(charge) > 1 else "")
        assert text.endswith(suffix), (text, charge)
        text = text[: -len(suffix)]
    return text


def skeleton(mol: Chem.Mol) -> str:
    """The heavy-atom graph alone: elements joined by bonds, orders, aromaticity, charges and H dropped."""
    rw = Chem.RWMol(mol)
    for atom in rw.GetAtoms():
        atom.SetFormalCharge(0)
        atom.SetIsAromatic(False)
        atom.SetNumExplicitHs(0)
        atom.SetNoImplicit(True)
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    for bond in rw.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
        bond.SetStereo(Chem.BondStereo.STEREONONE)
    return Chem.MolToSmiles(rw.GetMol())


def neutral_four_bonded_n(mol: Chem.Mol) -> int:
    """Neutral, non-aromatic N atoms with four bonds (hydrogens included) in a leniently parsed molecule."""
    count = 0
    for atom in mol.GetAtoms():
        bonds = sum(b.GetBondTypeAsDouble() for b in atom.GetBonds()) + atom.GetTotalNumHs()
        if atom.GetSymbol() == "N" and not atom.GetFormalCharge() and not atom.GetIsAromatic() and bonds == 4:
            count += 1
    return count


# ---------------------------------------------------------------------------------------------------
# the real table


def test_the_real_table_has_the_119_broken_rows(table, broken) -> None:
    assert len(table) == N_ROWS and broken.size == N_BROKEN
    assert all("[N](C)(C)C" in s or "C[N](C)(C)" in s for s in table["SMILES"].iloc[broken])


def test_every_broken_row_is_repaired_and_parses(table, broken, repair) -> None:
    assert np.array_equal(repair.repaired, broken)
    assert repair.unfixable.size == 0
    assert repair.charged == (("[N+]", N_BROKEN),)
    assert repair.as_read.tolist() == table["SMILES"].tolist()
    unchanged = np.setdiff1d(np.arange(N_ROWS), broken)
    assert repair.smiles[unchanged].tolist() == table["SMILES"].iloc[unchanged].tolist()  # untouched, verbatim
    with rdBase.BlockLogs():
        assert all(Chem.MolFromSmiles(s) is not None for s in repair.smiles[broken])


def test_repaired_molecules_carry_the_right_charges_and_the_same_atoms(table, broken, repair) -> None:
    for i in broken.tolist():
        original, fixed = lenient(table["SMILES"][i]), Chem.MolFromSmiles(repair.smiles[i])
        n_quaternary = neutral_four_bonded_n(original)
        assert n_quaternary >= 1
        # each quaternary N carries +1, and those are the only charges added
        for atom in fixed.GetAtoms():
            if atom.GetSymbol() == "N" and not atom.GetIsAromatic() and atom.GetTotalValence() == 4:
                assert atom.GetFormalCharge() == 1, (i, repair.smiles[i])
        added = Chem.GetFormalCharge(fixed) - sum(a.GetFormalCharge() for a in original.GetAtoms())
        assert added == n_quaternary, i
        # the same atoms, hydrogens and heavy-atom connectivity
        assert fixed.GetNumAtoms() == original.GetNumAtoms()
        assert formula(fixed) == formula(original), i
        assert skeleton(fixed) == skeleton(original), i
        # the same molecule as the file's text with the charge written in
        assert repair.smiles[i] == Chem.MolToSmiles(Chem.MolFromSmiles(table["SMILES"][i].replace("[N]", "[N+]")))


def test_the_report_states_the_count_the_rows_and_before_and_after(table, broken, repair) -> None:
    lines = repair.report_lines("SMILES")
    first = ", ".join(str(r) for r in broken[:10].tolist())
    assert f"column 'SMILES': repaired {N_BROKEN} of 4,209 SMILES" in lines[0]
    assert f"rows {first}, ... {N_BROKEN} rows in all" in lines[0]
    assert "119 [N+]" in lines[0] and "smiles_as_read" in lines[0]
    assert len(lines) == 4
    for line, row in zip(lines[1:], broken[:3].tolist(), strict=True):
        assert line == f"  row {row}: {table['SMILES'][row]!r} -> {repair.smiles[row]!r}"
    assert repair.report_lines("SMILES", examples=1)[1:] == lines[1:2]


def test_the_53bp1_table_reads_with_default_settings(table, broken, repair) -> None:
    report: list[str] = []
    with pytest.warns(UserWarning, match=f"repaired {N_BROKEN} of 4,209"):
        data = read_counts(uncdel003(SCREEN), target=TARGET, smiles="SMILES", compound_id="DEL_ID", report=report)
    assert data.n_compounds == N_ROWS
    assert data.compound_id.tolist() == table["DEL_ID"].tolist()
    assert np.array_equal(data.target_counts, table[TARGET].to_numpy())
    assert data.smiles_as_read.tolist() == table["SMILES"].tolist()
    assert np.array_equal(np.flatnonzero(data.smiles != data.smiles_as_read), broken)
    assert data.smiles.tolist() == repair.smiles.tolist()
    assert len(report) == 1 and report[0] == "\n".join(repair.report_lines("SMILES"))
    assert f"SMILES repaired on reading: {N_BROKEN}" in data.summary()
    # drop repairs first: nothing is left to drop
    with pytest.warns(UserWarning, match="repaired") as caught:
        dropped = read_counts(uncdel003(SCREEN), target=TARGET, smiles="SMILES", on_invalid_smiles="drop")
    assert not any("dropped" in str(w.message) for w in caught)
    assert dropped.n_compounds == N_ROWS and dropped.smiles.tolist() == data.smiles.tolist()


def test_error_still_refuses_the_53bp1_table(broken) -> None:
    first = ", ".join(str(r) for r in broken[:10].tolist())
    with pytest.raises(DELDataError, match=rf"column 'SMILES'.*rows {first} .*{N_BROKEN} rows in all") as err:
        read_counts(uncdel003(SCREEN), target=TARGET, smiles="SMILES", on_invalid_smiles="error")
    assert f"{N_BROKEN} of them only write a charged atom without its charge" in str(err.value)
    assert "on_invalid_smiles='repair'" in str(err.value)


def test_the_enumerated_library_repairs_whole() -> None:
    smiles = pd.read_csv(uncdel003(LIBRARY), usecols=["SMILES"], dtype=str)["SMILES"]
    result = repair_smiles(smiles.tolist())
    assert (len(smiles), result.repaired.size, result.unfixable.size) == (N_LIBRARY, N_LIBRARY_BROKEN, 0)


# ---------------------------------------------------------------------------------------------------
# synthetic cases


@pytest.mark.parametrize(
    ("smiles", "expected", "label"),
    [
        ("C[N](C)(C)CC(=O)O", "C[N+](C)(C)CC(=O)O", "[N+]"),  # quaternary ammonium (betaine, protonated)
        ("CN(C)(C)C", "C[N+](C)(C)C", "[N+]"),  # unbracketed: no hydrogens are added either
        ("C[NH](C)C", "C[NH+](C)C", "[N+]"),  # written hydrogens count as bonds
        ("C=[N](C)C", "C=[N+](C)C", "[N+]"),  # iminium
        ("C[O](C)C", "C[O+](C)C", "[O+]"),  # oxonium
        ("CC[O](CC)CC", "CC[O+](CC)CC", "[O+]"),
        ("F[B](F)(F)c1ccccc1", "F[B-](F)(F)c1ccccc1", "[B-]"),  # trifluoroborate
        (" C[N](C)(C)C ", "C[N+](C)(C)C", "[N+]"),  # whitespace at the edges is fine, as for parsing
    ],
)
def test_an_atom_written_without_its_charge_is_repaired(smiles, expected, label) -> None:
    result = repair_smiles(["CCO", smiles])
    assert result.repaired.tolist() == [1] and result.unfixable.size == 0
    assert result.smiles.tolist() == ["CCO", Chem.MolToSmiles(Chem.MolFromSmiles(expected))]
    assert result.charged == ((label, 1),)
    fixed = Chem.MolFromSmiles(result.smiles[1])
    assert Chem.GetFormalCharge(fixed) == (-1 if label == "[B-]" else 1)
    assert formula(fixed) == formula(lenient(smiles.strip()))  # no hydrogens added or lost


def test_two_atoms_in_one_molecule_are_both_charged() -> None:
    result = repair_smiles(["C[N](C)(C)CCCC[N](C)(C)C"])
    assert result.smiles.tolist() == ["C[N+](C)(C)CCCC[N+](C)(C)C"]
    assert result.charged == (("[N+]", 2),)
    assert Chem.GetFormalCharge(Chem.MolFromSmiles(result.smiles[0])) == 2


@pytest.mark.parametrize("smiles", ["C[S](C)C", "C[P](C)(C)C", "CS(C)C", "CP(C)(C)C"])
def test_sulfonium_and_phosphonium_without_charge_are_left_as_rdkit_reads_them(smiles) -> None:
    # RDKit does not refuse these (a radical, or an S / P with a hydrogen more): nothing to repair
    assert Chem.MolFromSmiles(smiles) is not None
    result = repair_smiles([smiles])
    assert result.smiles.tolist() == [smiles]
    assert result.repaired.size == 0 and result.unfixable.size == 0
    # nor are they charged in a molecule repaired for its nitrogen: one text, one reading, in a table
    mixed = repair_smiles([f"C[N](C)(C)CC{smiles[1:]}"])
    fixed = Chem.MolFromSmiles(mixed.smiles[0])
    assert mixed.charged == (("[N+]", 1),)
    assert [a.GetFormalCharge() for a in fixed.GetAtoms() if a.GetSymbol() in "SP"] == [0]


@pytest.mark.parametrize(
    "smiles",
    [
        "C[n]1ccccc1",  # aromatic N with three bonds: which atom carries the charge is not said
        "Cn1cccc1=C",  # aromatic, kekulization fails for another reason
        "O=[N](O)c1ccccc1",  # nitro written with OH: the missing charge is an anion's as well
        "C[N](C)=O",  # N=O with four bonds: the missing charge is a zwitterion's (an anion on O as well)
        "C[N](C)(C)(C)C",  # two bonds too many
        "C[N](C)(C)C.C[C](C)(C)(C)C",  # something else wrong too: pentavalent carbon
        "C[N](C)(C)CC1CC",  # and an unclosed ring
        "C[N+](C)(C)(C)C",  # already charged
        "C1CC",
        "not a molecule",
        "CC O",  # whitespace inside: RDKit would read ethane named 'O'
        "C[N](C)(C)C O",
        "",
        "   ",
    ],
)
def test_ambiguous_or_otherwise_broken_smiles_stay_unfixable(smiles) -> None:
    result = repair_smiles(["CCO", smiles])
    assert result.unfixable.tolist() == [1] and result.repaired.size == 0
    assert result.smiles.tolist() == ["CCO", smiles]
    assert result.report_lines() == []


def test_missing_values_are_unfixable() -> None:
    result = repair_smiles([None, float("nan"), "C[N](C)(C)C"])
    assert result.unfixable.tolist() == [0, 1] and result.repaired.tolist() == [2]
    assert result.smiles[0] is None and np.isnan(result.smiles[1])


def test_parseable_smiles_are_never_rewritten() -> None:
    smiles = ["OCC", "C[N+](C)(C)C", "c1ccccc1", "N[C@@H](C)C(=O)O", " CCC "]
    result = repair_smiles(smiles)
    assert result.smiles.tolist() == smiles and result.repaired.size == 0 and result.unfixable.size == 0


def test_smiles_are_checked_in_worker_processes_with_the_same_answer(monkeypatch) -> None:
    """Above the threshold the rows go to worker processes in chunks; the positions found are the rows'
    own, in order, whichever chunk they fell in (bad rows in the first, a middle and the last chunk)."""
    monkeypatch.setattr(workers, "PARALLEL_THRESHOLD", 10)
    monkeypatch.setattr(workers, "MIN_CHUNK_SIZE", 7)
    smiles = np.array(["CCO", "c1ccccc1", "CC(=O)N"] * 20, dtype=STRINGS)
    for row in (0, 8, 29, 33, 59):
        smiles[row] = ["C1CC", "", "CC O", "C(", "C[N](C)(C)C"][(0, 8, 29, 33, 59).index(row)]
    pools = []
    real = workers.pool_context
    monkeypatch.setattr(workers, "pool_context", lambda: pools.append(1) or real())
    found = invalid_smiles(smiles, n_jobs=2)
    assert pools == [1]
    assert found.tolist() == [0, 8, 29, 33, 59] == invalid_smiles(smiles, n_jobs=1).tolist()
    repaired = repair_smiles(smiles)
    assert repaired.repaired.tolist() == [59] and repaired.unfixable.tolist() == [0, 8, 29, 33]


# ---------------------------------------------------------------------------------------------------
# read_counts


def synthetic(smiles: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"smiles": smiles, "t1": range(len(smiles)), "c1": [0] * len(smiles)})


def test_read_counts_repairs_by_default_and_keeps_the_smiles_as_read() -> None:
    smiles = ["CCO", "C[N](C)(C)CC", "c1ccccc1", "F[B](F)(F)C"]
    report: list[str] = []
    with pytest.warns(UserWarning, match=r"column 'smiles': repaired 2 of 4 SMILES.*rows 1, 3"):
        data = read_counts(synthetic(smiles), target="t1", control="c1", report=report)
    assert data.smiles.tolist() == ["CCO", "CC[N+](C)(C)C", "c1ccccc1", "C[B-](F)(F)F"]
    assert data.smiles_as_read.tolist() == smiles
    assert len(report) == 1 and "row 1: 'C[N](C)(C)CC' -> 'CC[N+](C)(C)C'" in report[0]
    # nothing to repair: no smiles_as_read, no warning, no note
    report.clear()
    plain = read_counts(synthetic(["CCO", "CCN"]), target="t1", report=report)
    assert plain.smiles_as_read is None and report == []


def test_read_counts_round_trips_a_repaired_screen(tmp_path) -> None:
    with pytest.warns(UserWarning, match="repaired 1 of 3"):
        data = read_counts(synthetic(["CCO", "C[N](C)(C)C", "CCN"]), target="t1", control="c1")
    path = data.save(tmp_path / "screen.csv")
    again = read_counts(path, preset="delpyro")
    assert again.equals(data)
    assert again.smiles_as_read.tolist() == ["CCO", "C[N](C)(C)C", "CCN"]


def test_read_counts_refuses_what_repair_cannot_fix_naming_the_rows() -> None:
    table = synthetic(["CCO", "C[N](C)(C)C", "CC O", "C1CC"])
    with (
        pytest.warns(UserWarning, match="repaired 1 of 4"),
        pytest.raises(
            DELDataError,
            match=r"column 'smiles'.*rows 2, 3 \('CC O', 'C1CC'\) cannot be parsed; 1 hold whitespace inside.*"
            r"repair fixes only a charged atom.*\(1 other row was repaired\).*on_invalid_smiles='drop'",
        ),
    ):
        read_counts(table, target="t1")
    with pytest.raises(DELDataError, match=r"row 0 \('CC O'\) cannot be parsed; 1 hold whitespace inside"):
        read_counts(synthetic(["CC O", "CCO"]), target="t1")


def test_read_counts_drop_repairs_first_and_drops_the_rest_reporting_both() -> None:
    table = synthetic(["CCO", "C[N](C)(C)C", "CC O", "C1CC", "C[O](C)C"])
    report: list[str] = []
    with pytest.warns(UserWarning) as caught:
        data = read_counts(table, target="t1", on_invalid_smiles="drop", report=report)
    assert len(caught) == 2 and len(report) == 2
    assert "repaired 2 of 5" in report[0] and "rows 1, 4" in report[0]
    assert "dropped 2 of 5 rows" in report[1] and "rows 2, 3 ('CC O', 'C1CC')" in report[1]
    assert data.compound_id.tolist() == ["row0", "row1", "row4"]  # the table's own row numbers
    assert data.smiles.tolist() == ["CCO", "C[N+](C)(C)C", "C[O+](C)C"]
    assert data.smiles_as_read.tolist() == ["CCO", "C[N](C)(C)C", "C[O](C)C"]
    assert data.target_counts[:, 0].tolist() == [0, 1, 4]


def test_read_counts_error_repairs_nothing() -> None:
    with pytest.raises(DELDataError, match=r"row 1 \('C\[N\]\(C\)\(C\)C'\) cannot be parsed; 1 of them only write"):
        read_counts(synthetic(["CCO", "C[N](C)(C)C"]), target="t1", on_invalid_smiles="error")
    with pytest.raises(DELDataError, match=r"row 1 \('C1CC'\) cannot be parsed \(on_invalid_smiles='drop'"):
        read_counts(synthetic(["CCO", "C1CC"]), target="t1", on_invalid_smiles="error")
    with pytest.raises(ValueError, match="'repair', 'error' or 'drop'"):
        read_counts(synthetic(["CCO"]), target="t1", on_invalid_smiles="fix")
