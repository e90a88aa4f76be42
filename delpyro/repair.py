"""Repairing SMILES that write a charged atom without its charge: :func:`repair_smiles`.

Some published DEL tables write a quaternary ammonium as ``C[N](C)(C)C``: a neutral nitrogen with four
bonds, which RDKit refuses. The charge is implied by the bonds, so the repair is unambiguous: give the atom
its charge, add no hydrogens, and check that RDKit then accepts the whole molecule. Only these atoms are
repaired, each a neutral, non-aromatic atom with exactly one bond more than its neutral valence:

====  =====  ===========================================
atom  bonds  read as
====  =====  ===========================================
N     4      ``[N+]`` (quaternary ammonium, iminium)
O     3      ``[O+]`` (oxonium)
B     4      ``[B-]`` (borate, e.g. a trifluoroborate)
====  =====  ===========================================

Hydrogens written on the atom count as bonds (``[NH](C)(C)C`` becomes ``[NH+](C)(C)C``). Everything else
is left as it was and reported as unfixable: aromatic atoms (the charge could belong elsewhere in the
ring), an atom with a double bond to O or S (``O=[N](O)c1ccccc1`` is a nitro group written with an OH:
the missing charges are a zwitterion's, not a cation's), atoms with two or more bonds too many, radicals, atoms
that already carry a charge, SMILES that do not parse even leniently, and molecules that RDKit still
refuses once the charges are set (they had something else wrong). Missing and empty SMILES, and SMILES
with whitespace inside them (RDKit would read ``"CC O"`` as ethane named ``O``), are unfixable too.

Sulfonium and phosphonium written without their charge are not repaired, because RDKit does not refuse
them: it reads a bracketed ``C[S](C)C`` or ``C[P](C)(C)C`` as a neutral radical and an unbracketed
``CS(C)C`` as ``C[SH](C)C`` (S and P have valences 4 and 5 too), so such a SMILES parses, is never
examined here, and means what RDKit says. Nor is such an atom charged inside a molecule repaired for
another atom: that would read the same text two ways in one table.

A repaired SMILES is RDKit's (canonical) SMILES of the repaired molecule, not the file's text with a
charge inserted; the SMILES RDKit parses as written are never touched.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from delpyro import workers
from delpyro.data import rows_text

__all__ = ["RULES", "Repair", "has_inner_space", "invalid_smiles", "repair_smiles"]

#: (element, bonds including hydrogens) -> the formal charge that makes the atom valid. Sulfonium (S, 3) and
#: phosphonium (P, 4) are not here: RDKit does not refuse them (see the module's text).
RULES: dict[tuple[str, int], int] = {("N", 4): 1, ("O", 3): 1, ("B", 4): -1}

_EXAMPLES = 3  # repaired SMILES shown before -> after in a report


@dataclass(frozen=True, eq=False)
class Repair:
    """What :func:`repair_smiles` did.

    - ``smiles``: array ``[n]``: the repaired SMILES where a repair was made, the input elsewhere (the
      input array itself when nothing was repaired, else a copy).
    - ``as_read``: array ``[n]``: the input, unchanged (an array given is kept, not copied).
    - ``repaired``: int64 positions whose SMILES were repaired.
    - ``unfixable``: int64 positions RDKit still refuses (missing, empty, whitespace inside, or not a
      missing charge).
    - ``charged``: how many atoms were given each charge, e.g. ``(("[N+]", 119),)``.
    """

    smiles: np.ndarray
    as_read: np.ndarray
    repaired: np.ndarray
    unfixable: np.ndarray
    charged: tuple[tuple[str, int], ...] = ()

    def report_lines(self, column: str = "smiles", examples: int = _EXAMPLES) -> list[str]:
        """Lines saying what was repaired: a summary naming the rows, then ``before -> after`` for the first
        ``examples`` repairs. Empty when nothing was repaired."""
        if not self.repaired.size:
            return []
        atoms = ", ".join(f"{count} {label}" for label, count in self.charged)
        lines = [
            f"column {column!r}: repaired {self.repaired.size:,} of {len(self.as_read):,} SMILES that RDKit "
            f"refused, each writing a charged atom without its charge ({atoms} set): {rows_text(self.repaired)}; "
            "kept as RDKit's SMILES of the repaired molecule (the SMILES as read are in smiles_as_read)"
        ]
        for i in self.repaired[:examples].tolist():
            lines.append(f"  row {i}: {self.as_read[i]!r} -> {self.smiles[i]!r}")
        return lines


def repair_smiles(smiles: Sequence[Any] | np.ndarray) -> Repair:
    """Repair the SMILES RDKit refuses only because a charged atom is written without its charge.

    Only the entries that fail a plain ``Chem.MolFromSmiles`` are examined; each is parsed with
    ``sanitize=False``, the atoms in :data:`RULES` (neutral, non-aromatic, exactly one bond too many) are given
    their charge with no hydrogens added, and the molecule is sanitized. It counts as repaired only when that
    succeeds and RDKit parses the SMILES it writes for it; otherwise the entry is left as it was and listed
    in ``unfixable``. RDKit's own log messages are silenced meanwhile.

    >>> result = repair_smiles(["CCO", "C[N](C)(C)CC(=O)O", "C1CC"])
    >>> result.smiles.tolist(), result.repaired.tolist(), result.unfixable.tolist()
    (['CCO', 'C[N+](C)(C)CC(=O)O', 'C1CC'], [1], [2])
    """
    from rdkit import rdBase

    if isinstance(smiles, np.ndarray):
        values = smiles
    else:
        values = np.empty(len(smiles), dtype=object)
        values[:] = list(smiles)
    fixes: dict[int, str] = {}
    unfixable: list[int] = []
    charged: Counter[str] = Counter()
    with rdBase.BlockLogs():
        for i in invalid_smiles(values):
            text = values[i]
            missing = not isinstance(text, str) or not text.strip() or has_inner_space(text)
            result = None if missing else _repair_one(text.strip())
            if result is None:
                unfixable.append(int(i))
                continue
            fixes[int(i)], labels = result
            charged.update(labels)
    fixed = values  # a copy only when something was repaired (a column of 10^7 SMILES)
    if fixes:
        fixed = values.copy()
        fixed[list(fixes)] = list(fixes.values())
    repaired = sorted(fixes)
    return Repair(
        smiles=fixed,
        as_read=values,
        repaired=np.asarray(repaired, dtype=np.int64),
        unfixable=np.asarray(unfixable, dtype=np.int64),
        charged=tuple(sorted(charged.items())),
    )


def invalid_smiles(smiles: Sequence[Any], n_jobs: int | None = None) -> np.ndarray:
    """Positions of entries RDKit cannot parse: missing and empty strings, and SMILES with whitespace inside
    them (RDKit reads ``"CC O"`` as ethane named ``O``: the rest would be lost without a word). Inputs above
    :data:`~delpyro.workers.PARALLEL_THRESHOLD` are parsed in chunks by ``n_jobs`` worker processes (None:
    every CPU)."""
    n = len(smiles)
    processes = workers.n_workers(n_jobs)
    if processes == 1 or n <= workers.PARALLEL_THRESHOLD:
        return _invalid_in((0, smiles))
    size = workers.chunk_size(n, processes)
    chunks = ((start, smiles[start : start + size]) for start in range(0, n, size))
    with workers.pool_context().Pool(processes=min(processes, math.ceil(n / size))) as pool:
        parts = list(pool.imap(_invalid_in, chunks))
    return np.concatenate(parts)


def _invalid_in(chunk: tuple[int, Sequence[Any]]) -> np.ndarray:
    """Positions (counted from ``start``) of the entries of ``(start, smiles)`` RDKit cannot parse; runs in
    worker processes too."""
    from rdkit import Chem, rdBase

    start, smiles = chunk
    bad = []
    with rdBase.BlockLogs():  # RDKit's own complaints, one per bad SMILES, are summarized by the caller
        for i, s in enumerate(smiles):
            if not isinstance(s, str) or not s.strip() or has_inner_space(s) or Chem.MolFromSmiles(s) is None:
                bad.append(start + i)
    return np.asarray(bad, dtype=np.int64)


def has_inner_space(text: str) -> bool:
    """Whether a SMILES holds whitespace inside it (not at its ends), which RDKit takes for a name."""
    return any(ch.isspace() for ch in text.strip())


def _repair_one(text: str) -> tuple[str, list[str]] | None:
    """RDKit's SMILES of ``text`` with its missing charges set, and the charges set; None when that is not
    the only thing wrong with it."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(text, sanitize=False)
    if mol is None:
        return None
    labels = []
    for atom in mol.GetAtoms():
        charge = _missing_charge(atom)
        if charge:
            atom.SetFormalCharge(charge)
            atom.SetNoImplicit(True)  # the hydrogens stay those written: an over-bonded atom has no implicit ones
            labels.append(f"[{atom.GetSymbol()}{'+' if charge > 0 else '-'}]")
    if not labels:
        return None
    try:
        Chem.SanitizeMol(mol)
    except (ValueError, RuntimeError):  # RDKit's sanitization errors derive from ValueError
        return None
    Chem.AssignStereochemistry(mol, cleanIt=True, force=True)  # as a plain parse does
    out = Chem.MolToSmiles(mol)
    if Chem.MolFromSmiles(out) is None:
        return None
    return out, labels


def _missing_charge(atom: Any) -> int:
    """The charge ``atom`` is missing by :data:`RULES`, or 0 when it misses none or the reading is ambiguous."""
    from rdkit import Chem

    if atom.GetFormalCharge() or atom.GetIsAromatic() or atom.GetNumRadicalElectrons():
        return 0
    orders = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
    valence = atom.GetNumExplicitHs()
    for bond in atom.GetBonds():
        order = orders.get(bond.GetBondType())
        if order is None:  # aromatic, dative, ...: not a plain count of bonds
            return 0
        other = bond.GetOtherAtom(atom)
        if order == 2 and other.GetSymbol() in ("O", "S") and not other.GetFormalCharge():
            return 0  # N(=O), P(=O): a charge-separated group written without its anion
        valence += order
    return RULES.get((atom.GetSymbol(), valence), 0)
