"""Real screens shipped with delpyro, read in one line and without a network.

:func:`uncdel003_53bp1`: the DELi project's analysis example, UNCDEL003 selected against 53BP1 (MIT
license; the files and their LICENSE are in ``delpyro/screens/uncdel003_53bp1/``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from delpyro.data import DELData
from delpyro.reading import read_counts

__all__ = ["SCREENS", "uncdel003_53bp1"]

#: Where the shipped screens' files are.
SCREENS = Path(__file__).parent / "screens"


def uncdel003_53bp1(complete: bool = True, counts: str = "corrected", report: list[str] | None = None) -> DELData:
    """UNCDEL003 selected against 53BP1, as published (Popov lab, UNC; the DELi project's example).

    UNCDEL003 is a three-cycle library of 58,080 members (33 x 40 x 44 building blocks) focused on
    methyl-lysine readers; 53BP1 reads methylated lysine. It was selected against 53BP1 in triplicate and
    sequenced on Illumina; there is no no-target control and no pre-selection count. The published table
    lists only the 4,209 members that got reads. Building block C006 (a methyl piperazine) is
    experimentally validated for 53BP1.

    Args:
        complete: add the 53,871 members without reads from the enumerated library, with zero counts
            (``observed`` marks the 4,209 the table lists); False gives the table as published, to fit
            with ``ModelConfig(observed_only="target")``.
        counts: "corrected" (UMI-corrected counts, the ones to model) or "raw" (reads).
        report: a list that collects what reading did (the SMILES repaired, the members added).

    The table and the library write 119 and 1,760 product SMILES with a quaternary ammonium without its
    charge (the trimethyl-lysine mimics this library is built around); they are repaired on reading
    (``smiles_as_read`` keeps them as written). The table is read with the ``deli`` layout: compound ids
    are DELi's ``DEL_ID`` (``A028-B038-C010``), building blocks the cycles ``ID_A``, ``ID_B``, ``ID_C``, and
    each block's SMILES (with DELi's attachment markers ``[Z1]``, ``[R1]``, ...) is in
    ``building_block_smiles``. ``attrs["notes"]`` says what reading did.

    >>> screen = uncdel003_53bp1()
    >>> screen.n_compounds, int(screen.observed.sum()), screen.n_target_replicates, screen.n_control_replicates
    (58080, 4209, 3, 0)

    References: Wellnitz et al., the DELi project (MIT license, Copyright (c) 2025 James Wellnitz and
    contributors); J. Med. Chem. 2023, doi 10.1021/acs.jmedchem.3c01192.
    """
    if counts not in ("corrected", "raw"):
        raise ValueError(f"counts must be 'corrected' or 'raw', got {counts!r}")
    folder = SCREENS / "uncdel003_53bp1"
    notes: list[str] = []
    with warnings.catch_warnings():  # what reading did goes to ``report`` and ``attrs["notes"]``
        warnings.simplefilter("ignore", UserWarning)
        screen = read_counts(
            folder / "UNCDEL003_53bp1.csv.gz",
            preset="deli",
            target=f"{counts}_D3index*",
            library=folder / "DEL003_library_enumerated.csv.gz" if complete else None,
            report=notes,
        )
    screen.attrs.update(name="UNCDEL003 vs 53BP1", counts=counts, completed=complete, notes=notes)
    if report is not None:
        report.extend(notes)
    return screen
