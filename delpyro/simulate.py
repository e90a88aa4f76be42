"""Simulate a DNA-encoded library (DEL) screen whose truth is known.

:func:`simulate_del` builds a three-cycle (or two-cycle) library from real building blocks joined by real reactions
(RDKit reaction SMARTS), gives every compound a true target and matrix (bead) enrichment that follows from
its structure, and draws sequencing counts from the physical story the models in delpyro assume. Its
docstring tells the whole generative story; the returned :class:`~delpyro.data.DELData` carries the truth
(``truth`` per compound, ``attrs`` for everything per building block or per replicate).

The chemistry, in three steps:

1. cycle 1, amino acids: the carboxylic acid is coupled to the DNA linker, written here as methylamine, so
   the C-terminus appears as a methyl amide (``CNC(=O)...``); the amine stays free;
2. cycle 2, bifunctional amino acids (aminomethyl-aryl acids, cyclic amino acids, piperazinyl acids):
   amide coupling of their acid to the free amine of cycle 1; their own amine stays free;
3. cycle 3, capping blocks on that amine: carboxylic acids (amide), aldehydes (reductive amination),
   sulfonyl chlorides (sulfonamide) and isocyanates (urea).

A two-cycle library skips step 2: its second cycle caps the amine of cycle 1 with a block of step 3.

Every block has exactly one reactive site for its step, so each product is unambiguous. The hand-written
lists hold about fifty blocks a cycle; larger libraries add blocks made by putting one substituent (F, Cl,
Br, Me, OMe, CF3, CN, OCF3) on a free position of a benzene ring of a listed block.
:func:`building_block_pool` shows each cycle's pool and :func:`max_building_blocks` its size.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem import Crippen, rdChemReactions

from delpyro.data import DELData

__all__ = ["PHARMACOPHORE_SMARTS", "building_block_pool", "max_building_blocks", "simulate_del"]

CYCLES = ("cycle1", "cycle2", "cycle3")
_CYCLE_LETTERS = ("A", "B", "C")

#: A primary aryl sulfonamide, the zinc-binding group of carbonic anhydrase inhibitors.
PHARMACOPHORE_SMARTS = "[NX3H2][SX4](=[OX1])(=[OX1])a"

# A primary or secondary aliphatic amine: not an amide, sulfonamide, hydrazine, aniline or amidine nitrogen.
_AMINE = "[NX3;H2,H1;!$(N-[#6]=[#7,#8,#16]);!$(N-[!#6;!#1]);!$(N-a)]"
_MAPPED_AMINE = _AMINE[:-1] + ":9]"
_SITES = {
    "amine": _AMINE,
    "carboxylic acid": "[CX3;$([CX3]-[#6])](=[OX1])[OX2H1]",
    "aldehyde": "[CX3H1;$([CX3]-[#6])]=[OX1]",
    "sulfonyl chloride": "[SX4](=[OX1])(=[OX1])[Cl]",
    "isocyanate": "[NX2]=[CX2]=[OX1]",
}
# Each reaction takes (building block, amine) and joins them at the amine nitrogen.
_REACTIONS = {
    "amide coupling": (f"[CX3;$([CX3]-[#6]):1](=[OX1:2])[OX2H1].{_MAPPED_AMINE}>>[C:1](=[O:2])[N:9]"),
    "reductive amination": f"[CX3H1;$([CX3]-[#6]):1]=[OX1].{_MAPPED_AMINE}>>[CH2:1]-[N:9]",
    "sulfonylation": f"[SX4:1](=[OX1:2])(=[OX1:3])[Cl].{_MAPPED_AMINE}>>[S:1](=[O:2])(=[O:3])[N:9]",
    "urea formation": f"[NX2:1]=[CX2:2]=[OX1:3].{_MAPPED_AMINE}>>[N:1]-[C:2](=[O:3])[N:9]",
}
_CAP_REACTION = {
    "carboxylic acid": "amide coupling",
    "aldehyde": "reductive amination",
    "sulfonyl chloride": "sulfonylation",
    "isocyanate": "urea formation",
}
#: The DNA linker's amine, standing in for the DNA: a cycle-1 product is a methyl amide.
LINKER_SMILES = "CN"

# ----------------------------------------------------------------------------------------------------
# building blocks, hand-written: (name, SMILES)

_CYCLE1 = (  # amino acids: the acid goes to the linker, the amine to cycle 2
    ("glycine", "NCC(=O)O"),
    ("L-alanine", "C[C@H](N)C(=O)O"),
    ("L-valine", "CC(C)[C@H](N)C(=O)O"),
    ("L-leucine", "CC(C)C[C@H](N)C(=O)O"),
    ("L-isoleucine", "CC[C@H](C)[C@H](N)C(=O)O"),
    ("L-norvaline", "CCC[C@H](N)C(=O)O"),
    ("L-norleucine", "CCCC[C@H](N)C(=O)O"),
    ("L-tert-leucine", "CC(C)(C)[C@H](N)C(=O)O"),
    ("L-phenylalanine", "N[C@@H](Cc1ccccc1)C(=O)O"),
    ("L-tyrosine", "N[C@@H](Cc1ccc(O)cc1)C(=O)O"),
    ("O-methyl-L-tyrosine", "COc1ccc(C[C@H](N)C(=O)O)cc1"),
    ("L-tryptophan", "N[C@@H](Cc1c[nH]c2ccccc12)C(=O)O"),
    ("L-methionine", "CSCC[C@H](N)C(=O)O"),
    ("L-serine", "N[C@@H](CO)C(=O)O"),
    ("L-threonine", "C[C@@H](O)[C@H](N)C(=O)O"),
    ("L-proline", "OC(=O)[C@@H]1CCCN1"),
    ("trans-4-hydroxy-L-proline", "O=C(O)[C@@H]1C[C@@H](O)CN1"),
    ("L-histidine", "N[C@@H](Cc1c[nH]cn1)C(=O)O"),
    ("L-asparagine", "NC(=O)C[C@H](N)C(=O)O"),
    ("L-glutamine", "NC(=O)CC[C@H](N)C(=O)O"),
    ("4-fluoro-L-phenylalanine", "N[C@@H](Cc1ccc(F)cc1)C(=O)O"),
    ("4-chloro-L-phenylalanine", "N[C@@H](Cc1ccc(Cl)cc1)C(=O)O"),
    ("4-phenyl-L-phenylalanine", "N[C@@H](Cc1ccc(cc1)-c1ccccc1)C(=O)O"),
    ("L-homophenylalanine", "N[C@@H](CCc1ccccc1)C(=O)O"),
    ("L-phenylglycine", "N[C@@H](c1ccccc1)C(=O)O"),
    ("L-cyclohexylalanine", "N[C@@H](CC1CCCCC1)C(=O)O"),
    ("3-(2-naphthyl)-L-alanine", "N[C@@H](Cc1ccc2ccccc2c1)C(=O)O"),
    ("3-(3-pyridyl)-L-alanine", "N[C@@H](Cc1cccnc1)C(=O)O"),
    ("3-(4-pyridyl)-L-alanine", "N[C@@H](Cc1ccncc1)C(=O)O"),
    ("3-(2-thienyl)-L-alanine", "N[C@@H](Cc1cccs1)C(=O)O"),
    ("2-aminoisobutyric acid", "CC(C)(N)C(=O)O"),
    ("cyclopropylglycine", "NC(C1CC1)C(=O)O"),
    ("1-aminocyclopentanecarboxylic acid", "NC1(CCCC1)C(=O)O"),
    ("sarcosine", "CNCC(=O)O"),
    ("beta-alanine", "NCCC(=O)O"),
    ("4-aminobutanoic acid", "NCCCC(=O)O"),
    ("tranexamic acid", "NC[C@H]1CC[C@H](CC1)C(=O)O"),
    ("4-(aminomethyl)benzoic acid", "NCc1ccc(cc1)C(=O)O"),
    ("3-(aminomethyl)benzoic acid", "NCc1cccc(c1)C(=O)O"),
    ("piperidine-4-carboxylic acid", "OC(=O)C1CCNCC1"),
    ("piperidine-3-carboxylic acid", "OC(=O)C1CCCNC1"),
    ("L-pipecolic acid", "OC(=O)[C@@H]1CCCCN1"),
    ("azetidine-3-carboxylic acid", "OC(=O)C1CNC1"),
    ("piperidin-4-ylacetic acid", "OC(=O)CC1CCNCC1"),
    ("L-tetrahydroisoquinoline-3-carboxylic acid", "OC(=O)[C@@H]1Cc2ccccc2CN1"),
    ("4-sulfamoyl-L-phenylalanine", "N[C@@H](Cc1ccc(cc1)S(N)(=O)=O)C(=O)O"),
    ("3-sulfamoyl-L-phenylalanine", "N[C@@H](Cc1cccc(c1)S(N)(=O)=O)C(=O)O"),
    ("4-sulfamoyl-L-phenylglycine", "N[C@@H](c1ccc(cc1)S(N)(=O)=O)C(=O)O"),
    ("4-sulfamoyl-L-homophenylalanine", "N[C@@H](CCc1ccc(cc1)S(N)(=O)=O)C(=O)O"),
    ("3-amino-3-(4-sulfamoylphenyl)propanoic acid", "NC(CC(=O)O)c1ccc(cc1)S(N)(=O)=O"),
    ("3-(5-sulfamoyl-2-thienyl)-L-alanine", "N[C@@H](Cc1ccc(s1)S(N)(=O)=O)C(=O)O"),
)

_CYCLE2 = (  # bifunctional amino acids: the acid goes to cycle 1's amine, the amine to cycle 3
    ("glycine", "NCC(=O)O"),
    ("D-alanine", "C[C@@H](N)C(=O)O"),
    ("D-phenylalanine", "N[C@H](Cc1ccccc1)C(=O)O"),
    ("D-tryptophan", "N[C@H](Cc1c[nH]c2ccccc12)C(=O)O"),
    ("D-proline", "OC(=O)[C@H]1CCCN1"),
    ("beta-alanine", "NCCC(=O)O"),
    ("N-methyl-beta-alanine", "CNCCC(=O)O"),
    ("5-aminopentanoic acid", "NCCCCC(=O)O"),
    ("6-aminohexanoic acid", "NCCCCCC(=O)O"),
    ("3-amino-3-phenylpropanoic acid", "NC(CC(=O)O)c1ccccc1"),
    ("2-aminoindane-2-carboxylic acid", "NC1(Cc2ccccc2C1)C(=O)O"),
    ("1-(aminomethyl)cyclopropanecarboxylic acid", "NCC1(CC1)C(=O)O"),
    ("4-aminotetrahydropyran-4-carboxylic acid", "NC1(CCOCC1)C(=O)O"),
    ("trans-4-aminocyclohexanecarboxylic acid", "N[C@H]1CC[C@H](CC1)C(=O)O"),
    ("4-(aminomethyl)benzoic acid", "NCc1ccc(cc1)C(=O)O"),
    ("3-(aminomethyl)benzoic acid", "NCc1cccc(c1)C(=O)O"),
    ("2-(aminomethyl)benzoic acid", "NCc1ccccc1C(=O)O"),
    ("4-(aminomethyl)phenylacetic acid", "NCc1ccc(CC(=O)O)cc1"),
    ("3-(aminomethyl)phenylacetic acid", "NCc1cccc(CC(=O)O)c1"),
    ("4-(2-aminoethyl)benzoic acid", "NCCc1ccc(cc1)C(=O)O"),
    ("4'-(aminomethyl)biphenyl-4-carboxylic acid", "NCc1ccc(cc1)-c1ccc(cc1)C(=O)O"),
    ("5-(aminomethyl)furan-2-carboxylic acid", "NCc1ccc(o1)C(=O)O"),
    ("5-(aminomethyl)thiophene-2-carboxylic acid", "NCc1ccc(s1)C(=O)O"),
    ("4-(aminomethyl)thiophene-2-carboxylic acid", "NCc1csc(c1)C(=O)O"),
    ("6-(aminomethyl)pyridine-2-carboxylic acid", "NCc1cccc(n1)C(=O)O"),
    ("6-(aminomethyl)nicotinic acid", "NCc1ccc(cn1)C(=O)O"),
    ("4-(aminomethyl)thiazole-2-carboxylic acid", "NCc1csc(n1)C(=O)O"),
    ("3-(aminomethyl)isoxazole-5-carboxylic acid", "NCc1cc(on1)C(=O)O"),
    ("piperidine-4-carboxylic acid", "OC(=O)C1CCNCC1"),
    ("piperidine-3-carboxylic acid", "OC(=O)C1CCCNC1"),
    ("pyrrolidine-3-carboxylic acid", "OC(=O)C1CCNC1"),
    ("azetidine-3-carboxylic acid", "OC(=O)C1CNC1"),
    ("morpholine-2-carboxylic acid", "OC(=O)C1CNCCO1"),
    ("thiomorpholine-3-carboxylic acid", "OC(=O)C1CSCCN1"),
    ("3-(piperidin-4-yl)propanoic acid", "OC(=O)CCC1CCNCC1"),
    ("piperazin-1-ylacetic acid", "OC(=O)CN1CCNCC1"),
    ("4-(piperazin-1-yl)benzoic acid", "OC(=O)c1ccc(cc1)N1CCNCC1"),
    ("3-(piperazin-1-yl)benzoic acid", "OC(=O)c1cccc(c1)N1CCNCC1"),
    ("6-(piperazin-1-yl)nicotinic acid", "OC(=O)c1ccc(nc1)N1CCNCC1"),
    ("2-(piperazin-1-yl)pyrimidine-5-carboxylic acid", "OC(=O)c1cnc(nc1)N1CCNCC1"),
    ("1,2,3,4-tetrahydroisoquinoline-7-carboxylic acid", "OC(=O)c1ccc2CCNCc2c1"),
    ("isoindoline-5-carboxylic acid", "OC(=O)c1ccc2CNCc2c1"),
    ("3-(aminomethyl)-5-sulfamoylbenzoic acid", "NCc1cc(cc(c1)S(N)(=O)=O)C(=O)O"),
    ("4-(aminomethyl)-3-sulfamoylbenzoic acid", "NCc1ccc(cc1S(N)(=O)=O)C(=O)O"),
    ("2-(piperazin-1-yl)-5-sulfamoylbenzoic acid", "OC(=O)c1cc(ccc1N1CCNCC1)S(N)(=O)=O"),
    ("3-amino-3-(3-sulfamoylphenyl)propanoic acid", "NC(CC(=O)O)c1cccc(c1)S(N)(=O)=O"),
    ("4-sulfamoyl-D-phenylalanine", "N[C@H](Cc1ccc(cc1)S(N)(=O)=O)C(=O)O"),
    ("5-(aminomethyl)-4-sulfamoylthiophene-2-carboxylic acid", "NCc1sc(cc1S(N)(=O)=O)C(=O)O"),
)

_CYCLE3 = (  # capping blocks: one acid, aldehyde, sulfonyl chloride or isocyanate each
    ("acetic acid", "CC(=O)O"),
    ("methoxyacetic acid", "COCC(=O)O"),
    ("pivalic acid", "CC(C)(C)C(=O)O"),
    ("cyclopropanecarboxylic acid", "OC(=O)C1CC1"),
    ("cyclohexanecarboxylic acid", "OC(=O)C1CCCCC1"),
    ("tetrahydrofuran-2-carboxylic acid", "OC(=O)C1CCCO1"),
    ("benzoic acid", "OC(=O)c1ccccc1"),
    ("phenylacetic acid", "OC(=O)Cc1ccccc1"),
    ("3-phenylpropanoic acid", "OC(=O)CCc1ccccc1"),
    ("cinnamic acid", "OC(=O)/C=C/c1ccccc1"),
    ("biphenyl-4-carboxylic acid", "OC(=O)c1ccc(cc1)-c1ccccc1"),
    ("1-naphthoic acid", "OC(=O)c1cccc2ccccc12"),
    ("nicotinic acid", "OC(=O)c1cccnc1"),
    ("isonicotinic acid", "OC(=O)c1ccncc1"),
    ("picolinic acid", "OC(=O)c1ccccn1"),
    ("pyrazine-2-carboxylic acid", "OC(=O)c1cnccn1"),
    ("2-furoic acid", "OC(=O)c1ccco1"),
    ("thiophene-2-carboxylic acid", "OC(=O)c1cccs1"),
    ("5-methylisoxazole-3-carboxylic acid", "Cc1cc(no1)C(=O)O"),
    ("1-methylpyrazole-4-carboxylic acid", "Cn1cc(cn1)C(=O)O"),
    ("indole-2-carboxylic acid", "OC(=O)c1cc2ccccc2[nH]1"),
    ("indole-3-acetic acid", "OC(=O)Cc1c[nH]c2ccccc12"),
    ("benzofuran-2-carboxylic acid", "OC(=O)c1cc2ccccc2o1"),
    ("quinoline-3-carboxylic acid", "OC(=O)c1cnc2ccccc2c1"),
    ("4-sulfamoylbenzoic acid", "NS(=O)(=O)c1ccc(cc1)C(=O)O"),
    ("3-sulfamoylbenzoic acid", "NS(=O)(=O)c1cccc(c1)C(=O)O"),
    ("4-chloro-3-sulfamoylbenzoic acid", "NS(=O)(=O)c1cc(ccc1Cl)C(=O)O"),
    ("4-sulfamoylphenylacetic acid", "NS(=O)(=O)c1ccc(CC(=O)O)cc1"),
    ("isobutyraldehyde", "CC(C)C=O"),
    ("cyclohexanecarbaldehyde", "O=CC1CCCCC1"),
    ("phenylacetaldehyde", "O=CCc1ccccc1"),
    ("benzaldehyde", "O=Cc1ccccc1"),
    ("3-phenoxybenzaldehyde", "O=Cc1cccc(Oc2ccccc2)c1"),
    ("2-naphthaldehyde", "O=Cc1ccc2ccccc2c1"),
    ("pyridine-3-carbaldehyde", "O=Cc1cccnc1"),
    ("quinoline-4-carbaldehyde", "O=Cc1ccnc2ccccc12"),
    ("furfural", "O=Cc1ccco1"),
    ("thiophene-2-carbaldehyde", "O=Cc1cccs1"),
    ("benzofuran-2-carbaldehyde", "O=Cc1cc2ccccc2o1"),
    ("indole-3-carbaldehyde", "O=Cc1c[nH]c2ccccc12"),
    ("1-methylimidazole-2-carbaldehyde", "Cn1ccnc1C=O"),
    ("4-sulfamoylbenzaldehyde", "NS(=O)(=O)c1ccc(C=O)cc1"),
    ("methanesulfonyl chloride", "CS(=O)(=O)Cl"),
    ("cyclopropanesulfonyl chloride", "O=S(=O)(Cl)C1CC1"),
    ("benzenesulfonyl chloride", "O=S(=O)(Cl)c1ccccc1"),
    ("phenylmethanesulfonyl chloride", "O=S(=O)(Cl)Cc1ccccc1"),
    ("naphthalene-2-sulfonyl chloride", "O=S(=O)(Cl)c1ccc2ccccc2c1"),
    ("thiophene-2-sulfonyl chloride", "O=S(=O)(Cl)c1cccs1"),
    ("pyridine-3-sulfonyl chloride", "O=S(=O)(Cl)c1cccnc1"),
    ("1-methylimidazole-4-sulfonyl chloride", "Cn1cnc(c1)S(=O)(=O)Cl"),
    ("isopropyl isocyanate", "CC(C)N=C=O"),
    ("cyclohexyl isocyanate", "O=C=NC1CCCCC1"),
    ("phenyl isocyanate", "O=C=Nc1ccccc1"),
    ("benzyl isocyanate", "O=C=NCc1ccccc1"),
)

_HAND_WRITTEN = (_CYCLE1, _CYCLE2, _CYCLE3)

# Substituents put on a free benzene-ring position to make more blocks: (name, SMILES of the group).
_SUBSTITUENTS = (
    ("fluoro", "F"),
    ("chloro", "Cl"),
    ("bromo", "Br"),
    ("methyl", "C"),
    ("methoxy", "OC"),
    ("trifluoromethyl", "C(F)(F)F"),
    ("cyano", "C#N"),
    ("trifluoromethoxy", "OC(F)(F)F"),
)


@dataclass(frozen=True)
class _Block:
    name: str
    smiles: str  # canonical
    handwritten: bool
    pharmacophore: bool
    chemistry: str  # the reaction this block takes part in at its own step


@functools.cache
def _pattern(smarts: str) -> Chem.Mol:
    pattern = Chem.MolFromSmarts(smarts)
    if pattern is None:
        raise RuntimeError(f"bad SMARTS {smarts!r}")
    return pattern


@functools.cache
def _reaction(name: str) -> rdChemReactions.ChemicalReaction:
    reaction = rdChemReactions.ReactionFromSmarts(_REACTIONS[name])
    reaction.Initialize()
    return reaction


def _site_counts(mol: Chem.Mol) -> dict[str, int]:
    return {site: len(mol.GetSubstructMatches(_pattern(smarts))) for site, smarts in _SITES.items()}


def _check_block(mol: Chem.Mol, cycle: int, name: str) -> str:
    """The block's chemistry at its step; a RuntimeError unless it has exactly the sites its cycle needs."""
    counts = _site_counts(mol)
    if cycle < 2:
        wanted = {"amine": 1, "carboxylic acid": 1}
        chemistry = "amide coupling"
    else:
        present = [site for site in _CAP_REACTION if counts[site]]
        if len(present) != 1:
            raise RuntimeError(f"cycle 3 block {name!r}: expected one capping group, found {present}")
        wanted = {present[0]: 1}
        chemistry = _CAP_REACTION[present[0]]
    expected = {site: wanted.get(site, 0) for site in _SITES}
    if counts != expected:
        raise RuntimeError(f"cycle {cycle + 1} block {name!r}: reactive sites {counts}, expected {expected}")
    return chemistry


@functools.cache
def _pool(cycle: int) -> tuple[_Block, ...]:
    """Cycle ``cycle`` (0, 1, 2): the hand-written blocks, then the decorated ones, each checked once."""
    pharmacophore = _pattern(PHARMACOPHORE_SMARTS)
    blocks: list[_Block] = []
    seen: set[str] = set()
    names: dict[str, int] = {}

    def add(mol: Chem.Mol, name: str, handwritten: bool) -> None:
        smiles = Chem.MolToSmiles(mol)
        if smiles in seen:
            return
        seen.add(smiles)
        chemistry = _check_block(mol, cycle, name)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name} (isomer {names[name]})"
        blocks.append(_Block(name, smiles, handwritten, mol.HasSubstructMatch(pharmacophore), chemistry))

    parents = []
    for name, smiles in _HAND_WRITTEN[cycle]:
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise RuntimeError(f"cycle {cycle + 1} block {name!r}: SMILES {smiles!r} does not parse")
        add(mol, name, True)
        parents.append((name, mol))
    for name, mol in parents:
        for group_name, group in _SUBSTITUENTS:
            for (product,) in _decoration(group).RunReactants((mol,)):
                Chem.SanitizeMol(product)
                add(product, f"{group_name}-{name}", False)
    return tuple(blocks)


@functools.cache
def _decoration(group: str) -> rdChemReactions.ChemicalReaction:
    reaction = rdChemReactions.ReactionFromSmarts(f"[cH;$(c1ccccc1):1]>>[c:1]-{group}")
    reaction.Initialize()
    return reaction


def max_building_blocks() -> tuple[int, int, int]:
    """How many building blocks each cycle of a three-cycle library can have (hand-written plus decorated).
    A two-cycle library draws its cycles from the pools of cycles 1 and 3: at most the first and the last."""
    first, second, third = (len(_pool(cycle)) for cycle in range(3))
    return first, second, third


def _pools(n_cycles: int) -> tuple[int, ...]:
    """The pool each cycle draws from: (1, 2, 3) for three cycles, (1, 3) for two (amino acid, then cap)."""
    return (0, 1, 2) if n_cycles == 3 else (0, 2)


def building_block_pool(cycle: int) -> pd.DataFrame:
    """Every building block cycle ``cycle`` (1, 2 or 3) can draw from, in a fixed order.

    Columns: ``name``, ``smiles`` (canonical), ``handwritten`` (False for decorated blocks),
    ``pharmacophore`` (has a primary aryl sulfonamide), ``chemistry`` (the reaction of its step).
    """
    if cycle not in (1, 2, 3):
        raise ValueError(f"cycle: expected 1, 2 or 3, got {cycle!r}")
    return pd.DataFrame([vars(block) for block in _pool(cycle - 1)])


def _pick(rng: np.random.Generator, blocks: list[_Block], k: int) -> list[_Block]:
    """``k`` blocks: hand-written ones first (a random subset when they are enough), then decorated ones."""
    if k <= 0:
        return []
    listed = [block for block in blocks if block.handwritten]
    made = [block for block in blocks if not block.handwritten]
    if k <= len(listed):
        return [listed[i] for i in np.sort(rng.choice(len(listed), size=k, replace=False))]
    extra = np.sort(rng.choice(len(made), size=k - len(listed), replace=False))
    return listed + [made[i] for i in extra]


def _choose_blocks(
    rng: np.random.Generator, cycle: int, n: int, pharmacophore_fraction: float, pool_index: int
) -> list[_Block]:
    pool = _pool(pool_index)
    if n > len(pool):
        raise ValueError(
            f"n_per_cycle[{cycle}] = {n}: cycle {cycle + 1} can have at most {len(pool)} building blocks "
            f"(the maximum per cycle is {max_building_blocks()} for three cycles, "
            f"{max_building_blocks()[::2]} for two)"
        )
    with_pharmacophore = [block for block in pool if block.pharmacophore]
    without = [block for block in pool if not block.pharmacophore]
    wanted = 0 if pharmacophore_fraction <= 0 else max(1, round(pharmacophore_fraction * n))
    n_plain = min(n - min(wanted, len(with_pharmacophore), n), len(without))
    chosen = _pick(rng, with_pharmacophore, n - n_plain) + _pick(rng, without, n_plain)
    return [chosen[i] for i in rng.permutation(len(chosen))]


# ----------------------------------------------------------------------------------------------------
# enumeration


def _react(reaction: rdChemReactions.ChemicalReaction, block: Chem.Mol, amine: Chem.Mol) -> Chem.Mol:
    """The one product of ``block`` and ``amine``, sanitized; a RuntimeError if there is none or several."""
    outcomes = {}
    for (product,) in reaction.RunReactants((block, amine)):
        Chem.SanitizeMol(product)
        outcomes.setdefault(Chem.MolToSmiles(product), product)
    if len(outcomes) != 1:
        reactants = f"{Chem.MolToSmiles(block)} + {Chem.MolToSmiles(amine)}"
        raise RuntimeError(f"{reactants}: expected one product, got {sorted(outcomes)}")
    return next(iter(outcomes.values()))


def _enumerate(blocks: Sequence[list[_Block]], shortcuts: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Products of every combination of one block per cycle, cycle 1 slowest (two or three cycles).

    Returns SMILES (object array), has-pharmacophore (bool) and Crippen logP per compound. The intermediates
    of every cycle but the last (cycle 1 on the linker, then cycle 2 coupled to it) are made once; each is
    then capped by every block of the last cycle.

    Two shortcuts keep a million compounds within minutes, each checked on a sample of products:

    - A capped product is checked for valences (``UpdatePropertyCache``) rather than fully sanitized: its
      rings and aromaticity come from sanitized blocks and the new bond joins two non-aromatic atoms. A
      sample is fully sanitized and must give the same SMILES.
    - Crippen logP is a sum of atom contributions typed by their immediate neighbours, so
      logP(dimer d + cap c) = logP(d + c0) + logP(d0 + c) - logP(d0 + c0); it is computed exactly for those
      products and for the sample, which must agree.

    When a check fails, or with ``shortcuts=False``, the slow path is taken for every compound.
    """
    amide = _reaction("amide coupling")
    linker = Chem.MolFromSmiles(LINKER_SMILES)
    attached = [_react(amide, Chem.MolFromSmiles(block.smiles), linker) for block in blocks[0]]
    dimers = attached
    for middle in blocks[1:-1]:
        second = [Chem.MolFromSmiles(block.smiles) for block in middle]
        dimers = [_react(amide, block, amine) for amine in dimers for block in second]
    caps = [Chem.MolFromSmiles(block.smiles) for block in blocks[-1]]
    cap_reactions = [_reaction(block.chemistry) for block in blocks[-1]]
    pharmacophore = _pattern(PHARMACOPHORE_SMARTS)

    n_dimers, n_caps = len(dimers), len(caps)
    n = n_dimers * n_caps
    is_checked = np.zeros(n, dtype=bool)
    is_checked[np.linspace(0, n - 1, num=min(n, 64)).astype(np.int64)] = True

    def run(full: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        smiles = np.empty(n, dtype=object)
        has_pharmacophore = np.zeros(n, dtype=bool)
        logp = np.full(n, np.nan)
        logp_first_cap = np.empty(n_dimers)
        logp_first_dimer = np.empty(n_caps)
        same_smiles = True
        index = 0
        for d, dimer in enumerate(dimers):
            for c in range(n_caps):
                product = cap_reactions[c].RunReactants((caps[c], dimer))[0][0]
                if full:
                    Chem.SanitizeMol(product)
                else:
                    product.UpdatePropertyCache(strict=True)
                smiles[index] = Chem.MolToSmiles(product)
                has_pharmacophore[index] = product.HasSubstructMatch(pharmacophore)
                if full or c == 0 or d == 0 or is_checked[index]:
                    if not full:
                        Chem.SanitizeMol(product)
                        same_smiles &= Chem.MolToSmiles(product) == smiles[index]
                    logp[index] = Crippen.MolLogP(product)
                    if c == 0:
                        logp_first_cap[d] = logp[index]
                    if d == 0:
                        logp_first_dimer[c] = logp[index]
                index += 1
        if full:
            return smiles, has_pharmacophore, logp, True
        added = (logp_first_cap[:, None] + logp_first_dimer[None, :] - logp_first_cap[0]).reshape(-1)
        same_logp = np.allclose(added[is_checked], logp[is_checked], rtol=0.0, atol=1e-6)
        return smiles, has_pharmacophore, added, bool(same_smiles and same_logp)

    smiles, has_pharmacophore, logp, ok = run(full=not shortcuts)
    if not ok:
        smiles, has_pharmacophore, logp, ok = run(full=True)
    return smiles, has_pharmacophore, logp


# ----------------------------------------------------------------------------------------------------
# the simulation


def _per_cycle(value: float | Sequence[float], name: str, n_cycles: int) -> list[float]:
    if np.ndim(value) == 0:
        return [float(value)] * n_cycles
    values = [float(v) for v in value]
    if len(values) != n_cycles:
        raise ValueError(f"{name}: expected one number or {n_cycles} (one per cycle), got {value!r}")
    return values


def _plain(value: Any) -> Any:
    """``value`` with tuples, arrays and numpy scalars turned into lists and Python numbers (for JSON)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _sparse_effects(rng: np.random.Generator, n: int, fraction: float, scale: float, negative: float) -> np.ndarray:
    """``n`` effects, a ``fraction`` of them non-zero with size about ``scale`` (gamma, shape 4)."""
    active = rng.random(n) < fraction
    size = rng.gamma(4.0, scale / 4.0, size=n)
    sign = np.where(rng.random(n) < negative, -1.0, 1.0)
    return np.where(active, sign * size, 0.0)


def _check_probability(value: float, name: str) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {value!r}")


def _check_arguments(
    *,
    n_per_cycle: tuple[int, ...],
    n_target_replicates: int,
    n_control_replicates: int,
    n_poses: int,
    n_pose_features: int,
    combine: str,
    pose_dtype: str,
    target_gate: float,
    control_gate: float,
    matrix_logp_fraction: float,
    nb_concentration: float | None,
    yield_mean: float,
    yield_concentration: float,
    reads_per_compound: float,
) -> None:
    """A ValueError naming the first argument of :func:`simulate_del` that is out of range."""
    if len(n_per_cycle) not in (2, 3) or min(n_per_cycle) < 1:
        raise ValueError(f"n_per_cycle: expected two or three positive sizes, got {n_per_cycle!r}")
    if n_target_replicates < 1 or n_control_replicates < 0:
        raise ValueError("n_target_replicates must be at least 1 and n_control_replicates at least 0")
    if n_poses < 0 or (n_poses > 0 and n_pose_features < 2):
        raise ValueError("n_poses must be >= 0, and with poses n_pose_features must be at least 2")
    if combine not in ("additive", "multiplicative"):
        raise ValueError(f"combine: expected 'additive' or 'multiplicative', got {combine!r}")
    if pose_dtype not in ("float32", "float16"):
        raise ValueError(f"pose_dtype: expected 'float32' or 'float16', got {pose_dtype!r}")
    _check_probability(target_gate, "target_gate")
    _check_probability(control_gate, "control_gate")
    _check_probability(matrix_logp_fraction, "matrix_logp_fraction")
    if nb_concentration is not None and not nb_concentration > 0:
        raise ValueError(f"nb_concentration: expected a positive number or None, got {nb_concentration!r}")
    if not 0.0 < yield_mean < 1.0 or yield_concentration <= 0:
        raise ValueError("yield_mean must lie in (0, 1) and yield_concentration be positive")
    if reads_per_compound <= 0:
        raise ValueError(f"reads_per_compound: expected a positive number, got {reads_per_compound!r}")


# What each stage of simulate_del hands on. Every stage that draws takes the one generator, and the stages run
# in a fixed order (library, target, matrix, load, counts, poses): that order is the random stream.


@dataclass(frozen=True, eq=False)
class _Library:
    """The chosen blocks and every compound made from them (stage 1)."""

    n_per_cycle: tuple[int, ...]
    blocks: list[list[_Block]]  # per cycle k: [n_per_cycle[k]]
    block_ids: list[np.ndarray]  # per cycle k: object [n_per_cycle[k]], "A001", "B013", ...
    index: np.ndarray  # int [n_cycles, n_compounds]: each compound's block position in each cycle
    compound_id: np.ndarray  # object [n_compounds], "A001-B013-C021"
    smiles: np.ndarray  # object [n_compounds]
    has_pharmacophore: np.ndarray  # bool [n_compounds]
    logp: np.ndarray  # float64 [n_compounds], Crippen logP
    building_blocks: pd.DataFrame  # [n_compounds, n_cycles]: block ids, one column per cycle

    @property
    def n_compounds(self) -> int:
        return int(np.prod(self.n_per_cycle))


@dataclass(frozen=True, eq=False)
class _TargetEnrichment:
    """log t per compound and its parts, with the block and disynthon effects drawn (stage 2)."""

    log_target: np.ndarray  # float64 [n_compounds]: log t
    pharmacophore: np.ndarray  # [n_compounds]: pharmacophore_effect where the product has the pharmacophore
    building_blocks: np.ndarray  # float64 [n_compounds]: sum of the compound's block effects
    disynthons: np.ndarray  # float64 [n_compounds]: sum of the compound's disynthon effects
    noise: np.ndarray  # float64 [n_compounds]
    bb_effects: list[np.ndarray]  # per cycle k: float64 [n_per_cycle[k]]
    disynthon_effects: list[dict[str, Any]]  # one entry per active pair: cycles, building_blocks, effect


@dataclass(frozen=True, eq=False)
class _MatrixEnrichment:
    """log m per compound and its parts, with the sticky-block effects drawn (stage 3)."""

    log_matrix: np.ndarray  # float64 [n_compounds]: log m
    lipophilicity: np.ndarray  # float64 [n_compounds]
    building_blocks: np.ndarray  # float64 [n_compounds]: sum of the compound's sticky-block effects
    noise: np.ndarray  # float64 [n_compounds]
    bb_effects: list[np.ndarray]  # per cycle k: float64 [n_per_cycle[k]]
    logp_threshold: float | None  # None when matrix_logp_fraction is 0


@dataclass(frozen=True, eq=False)
class _Load:
    """Block yields and each compound's relative amount (stage 4)."""

    yields: list[np.ndarray]  # per cycle k: float64 [n_per_cycle[k]], synthesis yield of each block
    relative: np.ndarray  # float64 [n_compounds]: relative amount, mean 1


@dataclass(frozen=True, eq=False)
class _Counts:
    """The counts of both arms, the load reads and the replicate depths (stage 5)."""

    target: np.ndarray  # int64 [n_compounds, n_target_replicates]
    control: np.ndarray  # int64 [n_compounds, n_control_replicates]
    load: np.ndarray  # float64 [n_compounds]: pre-selection reads
    target_scale: np.ndarray  # float64 [n_target_replicates]: reads per compound of each replicate
    control_scale: np.ndarray  # float64 [n_control_replicates]


@dataclass(frozen=True, eq=False)
class _Poses:
    """Docked-pose features, with the true pose and the two directions that mark it (stage 6)."""

    features: np.ndarray  # pose_dtype [n_compounds, n_poses, n_pose_features]
    true_pose: np.ndarray  # int [n_compounds]: index of the real pose
    directions: np.ndarray  # float64 [2, n_pose_features]: signal and marker directions, orthonormal


def _library(rng: np.random.Generator, n_per_cycle: tuple[int, ...], pharmacophore_fractions: list[float]) -> _Library:
    """Choose the blocks of each cycle, name them and enumerate every compound, cycle 1 varying slowest.

    Takes the cycle sizes (two or three) and each cycle's pharmacophore block fraction; returns a
    :class:`_Library`: blocks and ids per cycle ``[n_per_cycle[k]]``, and per compound the block positions
    ``[n_cycles, n_compounds]``, ids, SMILES, has-pharmacophore and logP ``[n_compounds]``, block ids
    ``[n_compounds, n_cycles]``. Draws only in :func:`_choose_blocks`, cycle by cycle.
    """
    n_cycles = len(n_per_cycle)
    pools = _pools(n_cycles)
    blocks = [_choose_blocks(rng, k, n_per_cycle[k], pharmacophore_fractions[k], pools[k]) for k in range(n_cycles)]
    width = max(3, len(str(max(n_per_cycle))))
    block_ids = [
        np.array([f"{letter}{j + 1:0{width}d}" for j in range(n)], dtype=object)
        for letter, n in zip(_CYCLE_LETTERS[:n_cycles], n_per_cycle, strict=True)
    ]
    smiles, has_pharmacophore, logp = _enumerate(blocks)
    index = np.indices(n_per_cycle).reshape(n_cycles, -1)
    compound_id = np.array(["-".join(ids) for ids in itertools.product(*block_ids)], dtype=object)
    building_blocks = pd.DataFrame({CYCLES[k]: block_ids[k][index[k]] for k in range(n_cycles)})
    return _Library(
        n_per_cycle=n_per_cycle,
        blocks=blocks,
        block_ids=block_ids,
        index=index,
        compound_id=compound_id,
        smiles=smiles,
        has_pharmacophore=has_pharmacophore,
        logp=logp,
        building_blocks=building_blocks,
    )


def _disynthons(
    rng: np.random.Generator, library: _Library, fraction: float, scale: float
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Disynthon effects for every pair of cycles: (1, 2), (1, 3), (2, 3) in that order, or (1, 2).

    In each pair of cycles a ``fraction`` of the block pairs (at least one when above zero) is active, with
    an effect gamma distributed (shape 9) around ``scale``. Returns the sum of a compound's effects
    ``[n_compounds]`` and one record per active pair (cycles, block ids, effect).
    """
    n_per_cycle, index, block_ids = library.n_per_cycle, library.index, library.block_ids
    total = np.zeros(library.n_compounds)
    records: list[dict[str, Any]] = []
    for first, second in itertools.combinations(range(len(n_per_cycle)), 2):
        n_pairs = n_per_cycle[first] * n_per_cycle[second]
        n_active = 0 if fraction <= 0 else min(n_pairs, max(1, round(fraction * n_pairs)))
        pairs = np.sort(rng.choice(n_pairs, size=n_active, replace=False))
        effects = rng.gamma(9.0, scale / 9.0, size=n_active)
        pair_effect = np.zeros((n_per_cycle[first], n_per_cycle[second]))
        for pair, effect in zip(pairs, effects, strict=True):
            i, j = divmod(int(pair), n_per_cycle[second])
            pair_effect[i, j] = effect
            records.append(
                {
                    "cycles": [CYCLES[first], CYCLES[second]],
                    "building_blocks": [str(block_ids[first][i]), str(block_ids[second][j])],
                    "effect": float(effect),
                }
            )
        total += pair_effect[index[first], index[second]]
    return total, records


def _target_enrichment(
    rng: np.random.Generator,
    library: _Library,
    *,
    inert_log_target: float,
    pharmacophore_effect: float,
    bb_effect_fraction: float,
    bb_effect_scale: float,
    disynthon_fraction: float,
    disynthon_effect_scale: float,
    target_noise: float,
) -> _TargetEnrichment:
    """log t per compound ``[n_compounds]`` and its parts: pharmacophore, blocks, disynthons and noise.

    Draws the block effects of each cycle (``[n_per_cycle[k]]``, a quarter of the active ones negative), then
    the disynthons (:func:`_disynthons`), then the per-compound noise. log t = ``inert_log_target`` + the
    four parts, added in that order.
    """
    n_per_cycle, index = library.n_per_cycle, library.index
    bb_effects = [_sparse_effects(rng, m, bb_effect_fraction, bb_effect_scale, 0.25) for m in n_per_cycle]
    building_blocks = sum(bb_effects[k][index[k]] for k in range(len(n_per_cycle)))
    disynthons, disynthon_effects = _disynthons(rng, library, disynthon_fraction, disynthon_effect_scale)
    pharmacophore = pharmacophore_effect * library.has_pharmacophore
    noise = rng.normal(0.0, target_noise, size=library.n_compounds)
    log_target = inert_log_target + pharmacophore + building_blocks + disynthons + noise
    return _TargetEnrichment(
        log_target=log_target,
        pharmacophore=pharmacophore,
        building_blocks=building_blocks,
        disynthons=disynthons,
        noise=noise,
        bb_effects=bb_effects,
        disynthon_effects=disynthon_effects,
    )


def _matrix_enrichment(
    rng: np.random.Generator,
    library: _Library,
    *,
    matrix_logp_fraction: float,
    matrix_logp_slope: float,
    matrix_bb_fraction: float,
    matrix_bb_scale: float,
    matrix_noise: float,
) -> _MatrixEnrichment:
    """log m per compound ``[n_compounds]``, independent of the target, and its parts.

    Draws the sticky-block effects of each cycle (``[n_per_cycle[k]]``, none negative), then the
    per-compound noise. The lipophilicity part is ``matrix_logp_slope`` x the logP in excess of the
    ``1 - matrix_logp_fraction`` quantile of the library's logP (no draw). log m = lipophilicity + blocks
    + noise.
    """
    n_per_cycle, index, logp = library.n_per_cycle, library.index, library.logp
    bb_effects = [_sparse_effects(rng, m, matrix_bb_fraction, matrix_bb_scale, 0.0) for m in n_per_cycle]
    building_blocks = sum(bb_effects[k][index[k]] for k in range(len(n_per_cycle)))
    logp_threshold = None
    lipophilicity = np.zeros(library.n_compounds)
    if matrix_logp_fraction > 0:
        logp_threshold = float(np.quantile(logp, 1.0 - matrix_logp_fraction))
        lipophilicity = matrix_logp_slope * np.maximum(0.0, logp - logp_threshold)
    noise = rng.normal(0.0, matrix_noise, size=library.n_compounds)
    return _MatrixEnrichment(
        log_matrix=lipophilicity + building_blocks + noise,
        lipophilicity=lipophilicity,
        building_blocks=building_blocks,
        noise=noise,
        bb_effects=bb_effects,
        logp_threshold=logp_threshold,
    )


def _load(
    rng: np.random.Generator, library: _Library, *, yield_mean: float, yield_concentration: float, load_noise: float
) -> _Load:
    """Each block's synthesis yield ``[n_per_cycle[k]]`` and each compound's relative amount ``[n_compounds]``.

    Yields are Beta with mean ``yield_mean`` and concentration ``yield_concentration``, cycle by cycle; a
    compound's amount is the product of its blocks' yields times lognormal noise (sd ``load_noise``), scaled
    to mean 1.
    """
    index = library.index
    alpha, beta = yield_mean * yield_concentration, (1.0 - yield_mean) * yield_concentration
    yields = [rng.beta(alpha, beta, size=m) for m in library.n_per_cycle]
    relative = np.prod([cycle_yields[index[k]] for k, cycle_yields in enumerate(yields)], axis=0)
    relative = relative * np.exp(rng.normal(0.0, load_noise, size=library.n_compounds))
    relative /= relative.mean()
    return _Load(yields=yields, relative=relative)


def _draw_counts(
    rng: np.random.Generator,
    rate: np.ndarray,
    load: np.ndarray,
    scale: np.ndarray,
    gate: float,
    nb_concentration: float | None,
) -> np.ndarray:
    """One arm's counts, int64 ``[n_compounds, n_replicates]``.

    The mean is rate ``[n_compounds]`` x load ``[n_compounds]`` x scale ``[n_replicates]``; a count is
    gamma-Poisson around it (Poisson when ``nb_concentration`` is None), then zeroed with probability ``gate``.
    """
    mean = rate[:, None] * load[:, None] * scale[None, :]
    if nb_concentration is not None:
        mean = rng.gamma(nb_concentration, mean / nb_concentration)
    counts = rng.poisson(mean).astype(np.int64)
    counts[rng.random(counts.shape) < gate] = 0
    return counts


def _counts(
    rng: np.random.Generator,
    target: _TargetEnrichment,
    matrix: _MatrixEnrichment,
    load: _Load,
    *,
    combine: str,
    n_target_replicates: int,
    n_control_replicates: int,
    reads_per_compound: float,
    replicate_depth_sd: float,
    target_gate: float,
    control_gate: float,
    nb_concentration: float | None,
    load_reads_per_compound: float,
) -> _Counts:
    """The sequencing counts of both arms ``[n_compounds, n_replicates]`` and the load reads ``[n_compounds]``.

    Draws the replicate depths (target, then control), the target counts (rate m + t, or m x t), the
    control counts (rate m), and last the pre-selection load reads, Poisson with mean
    ``load_reads_per_compound`` x relative load, which are drawn whether or not the screen keeps them.
    """
    target_scale = reads_per_compound * np.exp(rng.normal(0.0, replicate_depth_sd, size=n_target_replicates))
    control_scale = reads_per_compound * np.exp(rng.normal(0.0, replicate_depth_sd, size=n_control_replicates))
    m, t = np.exp(matrix.log_matrix), np.exp(target.log_target)
    combined = m + t if combine == "additive" else m * t
    target_counts = _draw_counts(rng, combined, load.relative, target_scale, target_gate, nb_concentration)
    control_counts = _draw_counts(rng, m, load.relative, control_scale, control_gate, nb_concentration)
    load_counts = rng.poisson(load_reads_per_compound * load.relative).astype(np.float64)
    return _Counts(
        target=target_counts,
        control=control_counts,
        load=load_counts,
        target_scale=target_scale,
        control_scale=control_scale,
    )


def _poses(
    rng: np.random.Generator,
    log_target: np.ndarray,
    *,
    n_poses: int,
    n_pose_features: int,
    pose_signal: float,
    pose_marker: float,
    pose_dtype: str,
) -> _Poses:
    """Pose features ``[n_compounds, n_poses, n_pose_features]`` from log t ``[n_compounds]`` (``n_poses`` > 0).

    Draws two orthonormal directions, the true pose of each compound, then standard normal features in
    chunks of compounds (float32, about 2**22 numbers a chunk); the true pose adds ``pose_signal`` x the
    standardized log t along the first direction and ``pose_marker`` along the second.
    """
    n = len(log_target)
    directions = np.linalg.qr(rng.standard_normal((n_pose_features, 2)))[0].T  # two orthonormal rows
    true_pose = rng.integers(n_poses, size=n)
    spread = log_target.std()
    standardized = (log_target - log_target.mean()) / (spread if spread > 0 else 1.0)
    features = np.empty((n, n_poses, n_pose_features), dtype=pose_dtype)
    chunk = max(1, 2**22 // (n_poses * n_pose_features))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = rng.standard_normal((stop - start, n_poses, n_pose_features), dtype=np.float32)
        rows = np.arange(stop - start)
        real = pose_signal * standardized[start:stop, None] * directions[0] + pose_marker * directions[1]
        block[rows, true_pose[start:stop]] += real.astype(np.float32)
        features[start:stop] = block
    return _Poses(features=features, true_pose=true_pose, directions=directions)


def _truth(
    library: _Library,
    target: _TargetEnrichment,
    matrix: _MatrixEnrichment,
    load: _Load,
    poses: _Poses | None,
    binder_log_threshold: float,
) -> pd.DataFrame:
    """The truth table ``[n_compounds, ...]``: log t, log m, load, binder flag, the parts, logP, true pose."""
    truth = pd.DataFrame(
        {
            "log_target_enrichment": target.log_target,
            "log_matrix_enrichment": matrix.log_matrix,
            "load": load.relative,
            "is_binder": target.log_target >= binder_log_threshold,
            "has_pharmacophore": library.has_pharmacophore,
            "target_pharmacophore": target.pharmacophore.astype(np.float64),
            "target_building_blocks": target.building_blocks,
            "target_disynthons": target.disynthons,
            "target_noise": target.noise,
            "matrix_lipophilicity": matrix.lipophilicity,
            "matrix_building_blocks": matrix.building_blocks,
            "matrix_noise": matrix.noise,
            "logp": library.logp,
        }
    )
    if poses is not None:
        truth["true_pose"] = poses.true_pose.astype(np.int64)
    return truth


def _attrs(
    parameters: dict[str, Any],
    library: _Library,
    target: _TargetEnrichment,
    matrix: _MatrixEnrichment,
    load: _Load,
    counts: _Counts,
    poses: _Poses | None,
    *,
    combine: str,
    inert_log_target: float,
    binder_log_threshold: float,
    target_gate: float,
    control_gate: float,
    nb_concentration: float | None,
) -> dict[str, Any]:
    """The screen's JSON-ready metadata: the parameters, depths, gates, and per cycle the blocks and effects."""
    attrs_poses: dict[str, Any] = {}
    if poses is not None:
        attrs_poses = {
            "pose_signal_direction": poses.directions[0].tolist(),
            "pose_marker_direction": poses.directions[1].tolist(),
        }
    attrs: dict[str, Any] = {
        "simulator": "delpyro.simulate.simulate_del",
        "parameters": {key: _plain(value) for key, value in parameters.items()},
        "combine": combine,
        "inert_log_target": float(inert_log_target),
        "matrix_logp_threshold": matrix.logp_threshold,
        "binder_log_threshold": float(binder_log_threshold),
        "target_scale": counts.target_scale.tolist(),
        "control_scale": counts.control_scale.tolist(),
        "target_gate": float(target_gate),
        "control_gate": float(control_gate),
        "nb_concentration": None if nb_concentration is None else float(nb_concentration),
        "pharmacophore_smarts": PHARMACOPHORE_SMARTS,
        "linker_smiles": LINKER_SMILES,
        "reactions": dict(_REACTIONS),
        "building_block_smiles": {},
        "building_block_names": {},
        "building_block_chemistry": {},
        "building_block_yields": {},
        "pharmacophore_building_blocks": {},
        "bb_target_effects": {},
        "bb_matrix_effects": {},
        "disynthon_effects": target.disynthon_effects,
        **attrs_poses,
    }
    for k, cycle in enumerate(CYCLES[: len(library.n_per_cycle)]):
        ids = [str(i) for i in library.block_ids[k]]
        blocks = library.blocks[k]
        attrs["building_block_smiles"][cycle] = {i: b.smiles for i, b in zip(ids, blocks, strict=True)}
        attrs["building_block_names"][cycle] = {i: b.name for i, b in zip(ids, blocks, strict=True)}
        attrs["building_block_chemistry"][cycle] = {i: b.chemistry for i, b in zip(ids, blocks, strict=True)}
        attrs["building_block_yields"][cycle] = dict(zip(ids, load.yields[k].tolist(), strict=True))
        attrs["pharmacophore_building_blocks"][cycle] = [i for i, b in zip(ids, blocks, strict=True) if b.pharmacophore]
        attrs["bb_target_effects"][cycle] = dict(zip(ids, target.bb_effects[k].tolist(), strict=True))
        attrs["bb_matrix_effects"][cycle] = dict(zip(ids, matrix.bb_effects[k].tolist(), strict=True))
    return attrs


def simulate_del(
    seed: int = 0,
    n_per_cycle: Sequence[int] = (30, 30, 30),
    n_target_replicates: int = 3,
    n_control_replicates: int = 2,
    with_load: bool = True,
    n_poses: int = 0,
    n_pose_features: int = 224,
    *,
    reads_per_compound: float = 0.4,
    replicate_depth_sd: float = 0.3,
    combine: str = "multiplicative",
    target_gate: float = 0.3,
    control_gate: float = 0.15,
    nb_concentration: float | None = 2.0,
    inert_log_target: float | None = None,
    pharmacophore_effect: float = 4.5,
    pharmacophore_block_fraction: float | Sequence[float] = 0.04,
    bb_effect_fraction: float = 0.1,
    bb_effect_scale: float = 1.0,
    disynthon_fraction: float = 0.005,
    disynthon_effect_scale: float = 2.5,
    target_noise: float = 0.3,
    matrix_logp_fraction: float = 0.1,
    matrix_logp_slope: float = 1.0,
    matrix_bb_fraction: float = 0.03,
    matrix_bb_scale: float = 1.5,
    matrix_noise: float = 0.2,
    binder_log_threshold: float | None = None,
    yield_mean: float = 0.7,
    yield_concentration: float = 8.0,
    load_noise: float = 0.8,
    load_reads_per_compound: float = 30.0,
    pose_signal: float = 2.0,
    pose_marker: float = 3.0,
    pose_dtype: str = "float32",
) -> DELData:
    """Simulate a three-cycle (or two-cycle) DEL screen from real building blocks, with its truth.

    ``n_per_cycle`` gives the number of building blocks of each cycle, three numbers or two (at most
    :func:`max_building_blocks`: a ValueError beyond), so the screen has their product of compounds. A
    two-cycle library couples cycle 1 (amino acids) to the linker and caps it with cycle 2, drawn from the
    capping pool (the third cycle's: at most 488 x 885 compounds); ``n_target_replicates`` and
    ``n_control_replicates`` (which may be 0) the replicates of each arm; ``with_load`` whether pre-selection
    counts come with it; ``n_poses`` and ``n_pose_features`` the docked-pose features (none by default).
    Returns a :class:`~delpyro.data.DELData` with ``truth`` and ``attrs``. The defaults make 27,000
    compounds in a few seconds; 100 blocks a cycle (a million compounds) takes a few minutes.

    **The library.** ``n_per_cycle[k]`` building blocks are drawn for cycle ``k`` from that cycle's pool
    (:func:`building_block_pool`): hand-written blocks first, chosen at random, and decorated ones only when
    more are asked for than are listed. Of each cycle's blocks, ``pharmacophore_block_fraction`` (at least
    one when above zero; a number or one per cycle) carry a primary aryl sulfonamide. Block ids are the cycle
    letter and a number (``A001``, ``B013``, ``C021``); a compound's id joins its blocks (``A001-B013-C021``).
    Every combination is made with RDKit reactions (cycle 1 on the linker, amide coupling of cycle 2, then
    the cycle-3 cap: amide, reductive amination, sulfonamide or urea), cycle 1 varying slowest.

    **Target enrichment** (natural logs), ``log t_i`` = ``inert_log_target``
    + ``pharmacophore_effect`` if the product has a primary aryl sulfonamide (RDKit substructure match)
    + the sum of the compound's building-block effects (each block is active with probability
    ``bb_effect_fraction``; an active block's effect is gamma distributed with mean ``bb_effect_scale``,
    and negative, a block that hurts binding, one time in four)
    + disynthon effects (a ``disynthon_fraction`` of all pairs of blocks from two cycles, at least one pair
    per pair of cycles, act together with an effect gamma distributed around ``disynthon_effect_scale``)
    + per-compound noise, normal with sd ``target_noise``.
    ``inert_log_target`` is -2.5 for ``combine="additive"`` (an inert compound's target reads come from the
    beads: t is small beside m = 1) and 0 for ``"multiplicative"`` (t is a fold change over the beads).
    A compound is a binder (``truth["is_binder"]``) when ``log t_i >= binder_log_threshold``, by default
    ``inert_log_target + 2.5`` (t >= 1 when additive: the target adds at least the bead reads).

    **Matrix (bead) enrichment**, independent of the target: ``log m_i`` = ``matrix_logp_slope`` x
    max(0, Crippen logP - threshold), where the threshold is the logP exceeded by a ``matrix_logp_fraction``
    of the library (``attrs["matrix_logp_threshold"]``: greasy compounds stick to beads) + sticky blocks
    (active with probability ``matrix_bb_fraction``, gamma distributed around ``matrix_bb_scale``)
    + normal noise with sd ``matrix_noise``. Most compounds have m near 1.

    **Load.** Each block has a synthesis yield, Beta distributed with mean ``yield_mean`` and concentration
    ``yield_concentration``; a compound's relative amount is the product of its blocks' yields times lognormal
    noise (sd ``load_noise``), scaled to mean 1 (``truth["load"]``): at the defaults 95% of compounds lie
    within a factor of about 30 of each other (one and a half orders of magnitude, as synthesis and
    amplification spread real libraries), shared by every selection. With ``with_load`` the screen's
    ``load`` is a pre-selection sequencing count, Poisson with mean ``load_reads_per_compound`` x load.

    **Counts.** Replicate r of an arm has a depth ``scale_r`` = ``reads_per_compound`` x lognormal(0,
    ``replicate_depth_sd``) (``attrs["target_scale"]``, ``attrs["control_scale"]``). The expected counts are

        target  replicate r:  scale_r * load_i * m_i * t_i   ("multiplicative", the default; m_i + t_i for "additive")
        control replicate r:  scale_r * load_i * m_i

    A count is negative binomial around its expectation (gamma-Poisson with shape ``nb_concentration``:
    variance mu + mu^2 / concentration; ``None`` for Poisson), then set to zero with the arm's gate
    probability (``target_gate``, ``control_gate``). At the defaults roughly 65-80% of target counts and
    70-80% of control counts are zero (a replicate sequenced less deeply has more); libraries of a few
    blocks a cycle have fewer zeros in the target arm, as their pharmacophore blocks (at least one a cycle)
    make a larger share of binders.

    **Poses** (``n_poses > 0``): features ``[n_compounds, n_poses, n_pose_features]``, standard normal
    noise for every pose. One pose per compound, at a random index (``truth["true_pose"]``), is the real
    one: it adds ``pose_signal`` x (standardized log t) along a fixed unit direction and ``pose_marker``
    along a second, orthogonal one (``attrs["pose_signal_direction"]``, ``attrs["pose_marker_direction"]``);
    the others are decoys. ``pose_dtype`` is "float32" or "float16".

    **Truth** (one row per compound): ``log_target_enrichment`` (log t), ``log_matrix_enrichment`` (log m),
    ``load``, ``is_binder``, ``has_pharmacophore``, the parts of log t (``target_pharmacophore``,
    ``target_building_blocks``, ``target_disynthons``, ``target_noise``; log t = ``inert_log_target`` + their
    sum), the parts of log m (``matrix_lipophilicity``, ``matrix_building_blocks``, ``matrix_noise``), the
    Crippen ``logp``, and ``true_pose`` with poses. ``attrs`` holds the parameters, the depths, gates and
    concentration, the block SMILES, names, yields and effects per cycle, and the disynthon effects.

    Everything random comes from ``numpy.random.default_rng(seed)``: the same arguments give the same
    screen, and the counts do not depend on ``with_load``, ``n_poses`` or ``pose_dtype``.
    """
    parameters = dict(locals())
    n_per_cycle = tuple(int(n) for n in n_per_cycle)
    _check_arguments(
        n_per_cycle=n_per_cycle,
        n_target_replicates=n_target_replicates,
        n_control_replicates=n_control_replicates,
        n_poses=n_poses,
        n_pose_features=n_pose_features,
        combine=combine,
        pose_dtype=pose_dtype,
        target_gate=target_gate,
        control_gate=control_gate,
        matrix_logp_fraction=matrix_logp_fraction,
        nb_concentration=nb_concentration,
        yield_mean=yield_mean,
        yield_concentration=yield_concentration,
        reads_per_compound=reads_per_compound,
    )
    if inert_log_target is None:
        inert_log_target = -2.5 if combine == "additive" else 0.0
    if binder_log_threshold is None:
        binder_log_threshold = inert_log_target + 2.5
    pharmacophore_fractions = _per_cycle(pharmacophore_block_fraction, "pharmacophore_block_fraction", len(n_per_cycle))

    # One generator for everything, drawn from stage by stage in this order.
    rng = np.random.default_rng(seed)
    library = _library(rng, n_per_cycle, pharmacophore_fractions)
    target = _target_enrichment(
        rng,
        library,
        inert_log_target=inert_log_target,
        pharmacophore_effect=pharmacophore_effect,
        bb_effect_fraction=bb_effect_fraction,
        bb_effect_scale=bb_effect_scale,
        disynthon_fraction=disynthon_fraction,
        disynthon_effect_scale=disynthon_effect_scale,
        target_noise=target_noise,
    )
    matrix = _matrix_enrichment(
        rng,
        library,
        matrix_logp_fraction=matrix_logp_fraction,
        matrix_logp_slope=matrix_logp_slope,
        matrix_bb_fraction=matrix_bb_fraction,
        matrix_bb_scale=matrix_bb_scale,
        matrix_noise=matrix_noise,
    )
    load = _load(rng, library, yield_mean=yield_mean, yield_concentration=yield_concentration, load_noise=load_noise)
    counts = _counts(
        rng,
        target,
        matrix,
        load,
        combine=combine,
        n_target_replicates=n_target_replicates,
        n_control_replicates=n_control_replicates,
        reads_per_compound=reads_per_compound,
        replicate_depth_sd=replicate_depth_sd,
        target_gate=target_gate,
        control_gate=control_gate,
        nb_concentration=nb_concentration,
        load_reads_per_compound=load_reads_per_compound,
    )
    poses = None
    if n_poses > 0:  # last, so the counts do not depend on the poses
        poses = _poses(
            rng,
            target.log_target,
            n_poses=n_poses,
            n_pose_features=n_pose_features,
            pose_signal=pose_signal,
            pose_marker=pose_marker,
            pose_dtype=pose_dtype,
        )

    attrs = _attrs(
        parameters,
        library,
        target,
        matrix,
        load,
        counts,
        poses,
        combine=combine,
        inert_log_target=inert_log_target,
        binder_log_threshold=binder_log_threshold,
        target_gate=target_gate,
        control_gate=control_gate,
        nb_concentration=nb_concentration,
    )
    return DELData(
        target_counts=counts.target,
        control_counts=counts.control,
        smiles=library.smiles,
        compound_id=library.compound_id,
        load=counts.load if with_load else None,
        building_blocks=library.building_blocks,
        poses=None if poses is None else poses.features,
        truth=_truth(library, target, matrix, load, poses, binder_log_threshold),
        target_names=[f"r{r + 1}" for r in range(n_target_replicates)],
        control_names=[f"r{r + 1}" for r in range(n_control_replicates)],
        attrs=attrs,
        building_block_smiles=attrs["building_block_smiles"],
    )
