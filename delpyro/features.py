"""Compound features from SMILES: packed Morgan fingerprints and molecular weight.

A Morgan (circular, ECFP-like) fingerprint of radius ``r`` hashes every atom environment of up to
``r`` bonds into ``n_bits`` positions; the models read it as a 0/1 vector.  RDKit's Morgan generator
computes it (``rdFingerprintGenerator.GetMorganGenerator``).

Conventions

- Fingerprints are stored packed, eight bits to a byte, in ``np.packbits`` order: bit ``j`` of the
  fingerprint is bit ``7 - j % 8`` (the most significant bit first) of byte ``j // 8``.  An array of
  fingerprints is uint8 ``[n_compounds, n_bits // 8]``, eight times smaller than the bits themselves;
  :func:`unpack_bits` turns it (numpy or torch, on any device) into float32 ``[n_compounds, n_bits]``.
- Rows keep the order of the SMILES given; nothing is dropped.  A missing, empty or unparseable SMILES
  raises :class:`~delpyro.data.DELDataError` naming the column, the row positions (0-based) and the strings.
- Large inputs are computed in worker processes (``n_jobs``); the result is byte-identical to the
  serial one.
- With ``cache_dir`` the packed array is kept on disk under a name that hashes the parameters, the
  RDKit version and every SMILES in order, so a second call with the same input reads it back.
- Libraries published as building blocks (codes per cycle and one SMILES table per cycle) get features
  from the blocks: :func:`block_fingerprints` fingerprints each cycle's blocks (attachment markers such as
  ``[Z1]`` or ``[R2]`` turned into dummy atoms by :func:`attachment_points_to_dummies`) and
  :func:`combine_block_fingerprints` concatenates each compound's block fingerprints in cycle order.

Example::

    >>> from delpyro.features import fingerprints, unpack_bits, molecular_weight
    >>> packed = fingerprints(["CCO", "c1ccccc1"], radius=2, n_bits=1024)
    >>> packed.shape, packed.dtype
    ((2, 128), dtype('uint8'))
    >>> unpack_bits(packed).shape
    (2, 1024)
    >>> molecular_weight(["c1ccccc1"]).round(2)
    array([78.11])
"""

from __future__ import annotations

import hashlib
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rdkit
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors, rdFingerprintGenerator

from delpyro import workers
from delpyro.data import STRINGS, DELDataError
from delpyro.files import replacing
from delpyro.repair import has_inner_space

__all__ = [
    "attachment_points_to_dummies",
    "block_fingerprints",
    "combine_block_fingerprints",
    "fingerprints",
    "molecular_weight",
    "unpack_bits",
]

#: Rows turned into bits at once before packing (bounds the temporary unpacked buffer).
_BLOCK_ROWS = 1_024
#: SMILES joined at once when the cache file's name is hashed
_HASH_CHUNK = 1 << 16
#: How many offending rows an error message lists.
_MAX_ROWS_SHOWN = 10
_COLUMN = "smiles"
_EXPECTED = "expected a non-empty SMILES string that RDKit can parse"


# ----------------------------------------------------------------------------------------------------
# input checks


def _smiles_sequence(smiles) -> Sequence:
    """The SMILES as a Python list, after checking that it is a one-dimensional collection; an array of
    :data:`~delpyro.data.STRINGS` (a screen's column) is kept as it is, rather than made one Python string
    per compound (10^7 of them would be a gigabyte)."""
    if isinstance(smiles, (str, bytes)):
        raise TypeError(
            "smiles must be a sequence of SMILES strings (list, numpy array, pandas Series), "
            f"not a single string; wrap it in a list: [{smiles!r}]"
        )
    ndim = getattr(smiles, "ndim", 1)
    if ndim != 1:
        raise DELDataError(
            f"column '{_COLUMN}': expected a one-dimensional collection of SMILES, got an object with "
            f"{ndim} dimensions ({type(smiles).__name__})"
        )
    if isinstance(smiles, np.ndarray) and smiles.dtype == STRINGS:
        return smiles
    if hasattr(smiles, "tolist"):
        return smiles.tolist()
    return list(smiles)


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad_rows_error(smiles: list, positions, problem: str) -> DELDataError:
    """A DELDataError listing the first offending rows, their strings and what was expected."""
    positions = [int(p) for p in positions]
    shown = positions[:_MAX_ROWS_SHOWN]
    rows = ", ".join(f"{p}: {_describe(smiles[p])}" for p in shown)
    note = f"; the first {len(shown)} shown" if len(positions) > len(shown) else ""
    return DELDataError(
        f"column '{_COLUMN}': {len(positions)} of {len(smiles)} rows {problem} "
        f"(row positions, 0-based{note}) {rows}; {_EXPECTED}"
    )


def _check_present(smiles: list) -> None:
    """Raise for entries that are missing (None, NaN), not strings, or blank."""
    missing = [i for i, s in enumerate(smiles) if not isinstance(s, str) or not s.strip()]
    if missing:
        raise _bad_rows_error(smiles, missing, "are missing, empty or not strings")


def _parse(text: str):
    """RDKit molecule for one SMILES, or None when it does not parse or has no atoms, or holds whitespace
    inside it (which RDKit takes for the start of a name, dropping the rest)."""
    if has_inner_space(text):
        return None
    mol = Chem.MolFromSmiles(text)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


# ----------------------------------------------------------------------------------------------------
# fingerprints


def _compute_packed(smiles: list, radius: int, n_bits: int, use_chirality: bool):
    """Packed fingerprints of ``smiles`` and the positions that failed to parse.

    Returns ``(packed, bad)``: uint8 ``[len(smiles), n_bits // 8]`` (rows of bad SMILES are zero) and
    int64 ``[n_bad]``.  Runs in worker processes too, so it reports bad rows instead of raising.
    """
    options = {"radius": radius, "fpSize": n_bits, "includeChirality": use_chirality}
    generator = rdFingerprintGenerator.GetMorganGenerator(**options)
    n = len(smiles)
    packed = np.zeros((n, n_bits // 8), dtype=np.uint8)
    block = np.zeros((min(n, _BLOCK_ROWS), n_bits), dtype=np.uint8)
    bad = []
    with rdBase.BlockLogs():
        for start in range(0, n, _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, n)
            for row, position in enumerate(range(start, stop)):
                mol = _parse(smiles[position])
                if mol is None:
                    bad.append(position)
                    block[row] = 0
                else:
                    block[row] = generator.GetFingerprintAsNumPy(mol)
            packed[start:stop] = np.packbits(block[: stop - start], axis=1)
    return packed, np.asarray(bad, dtype=np.int64)


def _compute_chunk(task):
    """Worker entry point: ``(start, smiles, radius, n_bits, use_chirality) -> (start, packed, bad)``."""
    start, smiles, radius, n_bits, use_chirality = task
    packed, bad = _compute_packed(smiles, radius, n_bits, use_chirality)
    return start, packed, bad


def _compute_parallel(
    smiles: list, radius: int, n_bits: int, use_chirality: bool, n_workers: int, out: np.ndarray | None = None
):
    """Same result as :func:`_compute_packed`, computed in chunks by ``n_workers`` processes, each chunk
    written into ``out`` (a memory-mapped file, say) as it comes, else into a new array."""
    n = len(smiles)
    size = workers.chunk_size(n, n_workers)
    starts = range(0, n, size)
    tasks = ((start, smiles[start : start + size], radius, n_bits, use_chirality) for start in starts)
    packed = np.empty((n, n_bits // 8), dtype=np.uint8) if out is None else out
    bad_parts = []
    with workers.pool_context().Pool(processes=min(n_workers, len(starts))) as pool:
        for start, chunk_packed, chunk_bad in pool.imap_unordered(_compute_chunk, tasks):
            packed[start : start + len(chunk_packed)] = chunk_packed
            bad_parts.append(chunk_bad + start)
    bad = np.sort(np.concatenate(bad_parts)) if bad_parts else np.zeros(0, dtype=np.int64)
    return packed, bad


def _cache_path(cache_dir, smiles: list, radius: int, n_bits: int, use_chirality: bool) -> Path:
    """``<cache_dir>/morgan_r{radius}_{n_bits}{_chiral}_{hash[:20]}.npy`` for these SMILES and settings."""
    digest = hashlib.sha256()
    header = (
        f"delpyro.features.fingerprints/1;morgan;radius={radius};n_bits={n_bits};"
        f"chirality={use_chirality};rdkit={rdkit.__version__};n={len(smiles)}\n"
    )
    digest.update(header.encode())
    # The lengths and the concatenation together fix the sequence exactly (no separator ambiguity).
    digest.update(np.fromiter(map(len, smiles), dtype=np.int64, count=len(smiles)).tobytes())
    for start in range(0, len(smiles), _HASH_CHUNK):  # the text in chunks: the same bytes as joined whole
        digest.update("".join(smiles[start : start + _HASH_CHUNK]).encode("utf-8", errors="surrogatepass"))
    chiral = "_chiral" if use_chirality else ""
    return Path(cache_dir) / f"morgan_r{radius}_{n_bits}{chiral}_{digest.hexdigest()[:20]}.npy"


def _read_cache(path: Path, shape: tuple):
    """The cached array, memory-mapped read-only (its pages are read as batches need them, and the kernel
    may drop them), or None when the file is absent or does not hold what is expected."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    if array.dtype != np.uint8 or array.shape != shape:
        return None
    return array


def _compute_into_cache(path: Path, smiles: list, radius: int, n_bits: int, use_chirality: bool, n_workers: int):
    """Compute the fingerprints chunk by chunk into the cache file (a ``.npy`` written through a memory map,
    atomically, see :func:`delpyro.files.replacing`), so the whole array is never held in memory; return
    ``(packed, bad)`` with ``packed`` the file memory-mapped read-only, or None when the file cannot be
    written (a read-only folder, a full disk: a warning says so, and the caller computes in memory)."""
    shape = (len(smiles), n_bits // 8)
    try:
        with replacing(path) as temporary:
            out = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
            if n_workers > 1 and len(smiles) > workers.PARALLEL_THRESHOLD:
                _, bad = _compute_parallel(smiles, radius, n_bits, use_chirality, n_workers, out)
            else:
                bad = _compute_into(out, smiles, radius, n_bits, use_chirality)
            out.flush()
            del out
            if len(bad):  # nothing is cached; the caller raises
                raise _BadRows(bad)
    except _BadRows as err:
        return None, err.rows
    except OSError as err:
        warnings.warn(f"fingerprint cache not written ({err}); the fingerprints were computed without it", stacklevel=3)
        return None, None
    return _read_cache(path, shape), np.zeros(0, dtype=np.int64)


class _BadRows(Exception):
    """Rows RDKit could not parse (carried out of the cache writer, which then leaves no file)."""

    def __init__(self, rows: np.ndarray) -> None:
        super().__init__(f"{len(rows)} rows")
        self.rows = rows


def _compute_into(out: np.ndarray, smiles: list, radius: int, n_bits: int, use_chirality: bool) -> np.ndarray:
    """Compute in this process, ``MAX_CHUNK_SIZE`` SMILES at a time, into ``out``; return the bad rows."""
    bad_parts = []
    for start in range(0, len(smiles), workers.MAX_CHUNK_SIZE):
        packed, bad = _compute_packed(smiles[start : start + workers.MAX_CHUNK_SIZE], radius, n_bits, use_chirality)
        out[start : start + len(packed)] = packed
        bad_parts.append(bad + start)
    return np.sort(np.concatenate(bad_parts)) if bad_parts else np.zeros(0, dtype=np.int64)


def fingerprints(
    smiles,
    radius: int = 3,
    n_bits: int = 2048,
    use_chirality: bool = True,
    cache_dir=None,
    n_jobs: int | None = None,
) -> np.ndarray:
    """Packed Morgan fingerprints of a collection of SMILES.

    Parameters
    ----------
    smiles:
        Sequence, numpy array or pandas Series of SMILES strings, ``[n_compounds]``.
    radius:
        Morgan radius (3 gives ECFP6-like environments).
    n_bits:
        Fingerprint length; a positive multiple of 8.
    use_chirality:
        Let tetrahedral stereo (``@``/``@@``) change the hashed environments, so enantiomers differ.
    cache_dir:
        Folder for an on-disk cache (created if missing).  The file name hashes the parameters, the
        RDKit version and every SMILES in order.  With a cache the fingerprints are computed chunk by
        chunk straight into the file, and the array returned is the file memory-mapped read-only (the
        screen's fingerprints need not fit in memory; batches read their rows); a second call with the
        same input maps the file without computing.
    n_jobs:
        Worker processes for inputs larger than :data:`~delpyro.workers.PARALLEL_THRESHOLD`; ``None`` uses
        every CPU this process may run on, ``1`` computes in this process.

    Returns
    -------
    np.ndarray
        uint8 ``[n_compounds, n_bits // 8]`` in ``np.packbits`` order: bit ``j`` is bit ``7 - j % 8`` of
        byte ``j // 8``.  Unpack with :func:`unpack_bits`.

    Raises
    ------
    DELDataError
        A SMILES is missing, empty or unparseable; the message lists the row positions and strings.

    Example::

        >>> packed = fingerprints(["CC(=O)Oc1ccccc1C(=O)O", "C[C@@H](N)C(=O)O"], radius=2, n_bits=512)
        >>> packed.shape
        (2, 64)
    """
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or n_bits <= 0 or n_bits % 8:
        raise ValueError(f"n_bits must be a positive multiple of 8, got {n_bits!r}")
    radius, n_bits, use_chirality = int(radius), int(n_bits), bool(use_chirality)
    n_workers = workers.n_workers(n_jobs)

    smiles = _smiles_sequence(smiles)
    _check_present(smiles)
    shape = (len(smiles), n_bits // 8)
    if not len(smiles):
        return np.zeros(shape, dtype=np.uint8)

    if cache_dir is not None:
        path = _cache_path(cache_dir, smiles, radius, n_bits, use_chirality)
        cached = _read_cache(path, shape)
        if cached is not None:
            return cached
        packed, bad = _compute_into_cache(path, smiles, radius, n_bits, use_chirality, n_workers)
        if bad is not None and len(bad):
            raise _bad_rows_error(smiles, bad, "are not SMILES that RDKit can parse")
        if packed is not None:
            return packed

    if n_workers > 1 and len(smiles) > workers.PARALLEL_THRESHOLD:
        packed, bad = _compute_parallel(smiles, radius, n_bits, use_chirality, n_workers)
    else:
        packed, bad = _compute_packed(smiles, radius, n_bits, use_chirality)
    if len(bad):
        raise _bad_rows_error(smiles, bad, "are not SMILES that RDKit can parse")
    return packed


# ----------------------------------------------------------------------------------------------------
# unpacking


def unpack_bits(packed, n_bits: int | None = None):
    """Unpack ``np.packbits``-ordered bytes into float32 0/1 bits.

    Parameters
    ----------
    packed:
        uint8 numpy array or torch tensor ``[..., n_bytes]``, e.g. ``[n_compounds, n_bits // 8]`` from
        :func:`fingerprints`.
    n_bits:
        How many leading bits to keep (default ``n_bytes * 8``).

    Returns
    -------
    float32 ``[..., n_bits]`` of 0.0 and 1.0: a torch tensor on the same device for torch input, a numpy
    array for numpy input.

    Example::

        >>> unpack_bits(np.array([[0b10000001]], dtype=np.uint8))
        array([[1., 0., 0., 0., 0., 0., 0., 1.]], dtype=float32)
    """
    torch = sys.modules.get("torch")
    is_tensor = torch is not None and isinstance(packed, torch.Tensor)
    if not is_tensor and not isinstance(packed, np.ndarray):
        kind = type(packed).__name__
        raise TypeError(f"packed must be a numpy array or a torch tensor of uint8, got {kind}")
    expected_dtype = torch.uint8 if is_tensor else np.uint8
    if packed.dtype != expected_dtype:
        raise TypeError(f"packed must hold uint8 bytes, got dtype {packed.dtype}")
    if packed.ndim == 0:
        raise ValueError("packed must have at least one dimension: [..., n_bytes]")
    available = packed.shape[-1] * 8
    if n_bits is None:
        n_bits = available
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or not 0 <= n_bits <= available:
        n_bytes = packed.shape[-1]
        raise ValueError(f"n_bits must be an integer in [0, {available}] for {n_bytes} bytes, got {n_bits!r}")

    if not is_tensor:
        return np.unpackbits(packed, axis=-1, count=int(n_bits)).astype(np.float32)
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) >> shifts) & 1  # [..., n_bytes, 8], most significant bit first
    return bits.flatten(-2)[..., : int(n_bits)].to(torch.float32)


# ----------------------------------------------------------------------------------------------------
# descriptors


def molecular_weight(smiles) -> np.ndarray:
    """Average molecular weight (g/mol, RDKit ``Descriptors.MolWt``) of each SMILES.

    Parameters
    ----------
    smiles:
        Sequence, numpy array or pandas Series of SMILES strings, ``[n_compounds]``.

    Returns
    -------
    np.ndarray
        float64 ``[n_compounds]``.

    Raises
    ------
    DELDataError
        A SMILES is missing, empty or unparseable, as for :func:`fingerprints`.

    Example::

        >>> molecular_weight(["c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O"]).round(2)
        array([ 78.11, 180.16])
    """
    smiles = _smiles_sequence(smiles)
    _check_present(smiles)
    weights = np.zeros(len(smiles), dtype=np.float64)
    bad = []
    with rdBase.BlockLogs():
        for position, text in enumerate(smiles):
            mol = _parse(text)
            if mol is None:
                bad.append(position)
            else:
                weights[position] = Descriptors.MolWt(mol)
    if bad:
        raise _bad_rows_error(smiles, bad, "are not SMILES that RDKit can parse")
    return weights


# ----------------------------------------------------------------------------------------------------
# building blocks

#: A DELi-style attachment marker: the bracket atom ``Z`` or ``R`` with an optional number (``[Z1]``, ``[R2]``,
#: ``[Z]``).  Neither letter is an element symbol, and the closing bracket must follow the digits, so elements
#: such as ``[Zn]``, ``[Zr]``, ``[Rb]`` or ``[Ru]`` never match.
_ATTACHMENT_MARKER = re.compile(r"\[([ZR])(\d*)\]")
#: Compounds gathered at once by :func:`combine_block_fingerprints` (bounds its temporary arrays).
_COMBINE_ROWS = 16_384
_BLOCK_EXPECTED = (
    "expected a non-empty SMILES string that RDKit can parse once its attachment markers "
    "([Z1], [R2], *, [*], [*:1]) are dummy atoms"
)


def _marker_to_dummy(match: re.Match) -> str:
    number = match.group(2)
    return f"[*:{int(number)}]" if number else "[*]"


def attachment_points_to_dummies(smiles: str) -> str:
    """A building block's SMILES with its attachment markers written as RDKit dummy atoms.

    Published building-block tables mark where a block joins the rest of the compound.  DELi writes
    ``[Z1]``, ``[Z2]``, ``[R1]``, ``[R2]``, which are not element symbols (RDKit refuses them); other
    tables write ``*``, ``[*]`` or ``[*:1]``, which RDKit reads as dummy atoms (atomic number 0).

    The rule: a bracket atom ``[Z<n>]`` or ``[R<n>]`` (``<n>`` an optional number) becomes ``[*:<n>]``, a
    dummy atom keeping the marker's number as its atom-map number; ``[Z]`` and ``[R]`` become ``[*]``.
    Everything else is left as written: markers that already are dummy atoms (``*``, ``[*]``, ``[*:1]``,
    ``[1*]``) and elements such as ``[Zn]`` or ``[Rb]``.  Applying the function twice changes nothing.
    RDKit's Morgan invariants ignore atom-map numbers, so which letter or number a marker had does not
    change the fingerprint: ``[Z1]``, ``[R2]``, ``*`` and ``[*:1]`` give the same bits.

    Example::

        >>> attachment_points_to_dummies("O=C([C@@H]1CCCN1[R2])[R1]")
        'O=C([C@@H]1CCCN1[*:2])[*:1]'
        >>> attachment_points_to_dummies("[Zn]C[Z]")
        '[Zn]C[*]'
    """
    if not isinstance(smiles, str):
        raise TypeError(f"smiles must be a string, got {type(smiles).__name__}")
    return _ATTACHMENT_MARKER.sub(_marker_to_dummy, smiles)


def _bad_blocks_error(cycle: str, ids: list, smiles: list, converted, positions: list, problem: str):
    """A DELDataError naming the cycle and the first offending blocks with their SMILES."""
    shown = positions[:_MAX_ROWS_SHOWN]
    parts = []
    for k in shown:
        part = f"block {ids[k]!r}: {_describe(smiles[k])}"
        if converted is not None and converted[k] != smiles[k]:
            part += f" (with dummy atoms: {_describe(converted[k])})"
        parts.append(part)
    note = f" (the first {len(shown)} shown)" if len(positions) > len(shown) else ""
    return DELDataError(
        f"building blocks of cycle {cycle!r}: {len(positions)} of {len(ids)} blocks {problem}{note}: "
        f"{'; '.join(parts)}; {_BLOCK_EXPECTED}"
    )


def block_fingerprints(
    block_smiles: dict[str, dict[str, str]],
    radius: int = 3,
    n_bits: int = 2048,
    use_chirality: bool = True,
    cache_dir=None,
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Packed Morgan fingerprints of each cycle's building blocks.

    Each block's SMILES goes through :func:`attachment_points_to_dummies` and then :func:`fingerprints`
    (so the same settings, the same bits and the same on-disk cache, one file per cycle).

    Dummy atoms count: an attachment point is an atom of atomic number 0, as RDKit's Morgan generator
    takes it, so the environments that contain it (the bonds next to the join) and the one centred on it
    set bits.  A block is thus described as it sits in the compound (``CC(=O)[*:1]`` is an acyl group,
    not acetaldehyde), and the fingerprint equals RDKit's Morgan fingerprint of the converted SMILES.
    Every block with a marker shares the bit of the bare dummy atom (radius 0).

    Parameters
    ----------
    block_smiles:
        Per cycle (in the order the caller wants), each building block's SMILES by its id.
    radius, n_bits, use_chirality, cache_dir:
        As for :func:`fingerprints`.

    Returns
    -------
    dict
        Per cycle (keys as strings, in the given order): ``(ids, packed)`` where ``ids`` is the list of
        the cycle's block ids as strings, sorted as strings (``"10"`` before ``"2"``), and ``packed`` is
        uint8 ``[len(ids), n_bits // 8]`` with row ``k`` the fingerprint of block ``ids[k]``.  A
        compound's code in a cycle (for :func:`combine_block_fingerprints`) is its block's position in
        ``ids``, e.g. ``pd.Index(ids).get_indexer(block_id_column)``, which gives -1 for unknown ids.

    Raises
    ------
    DELDataError
        A block's SMILES is missing, empty or unparseable after the marker conversion (the message names
        the cycle, the block ids and their SMILES), or two block ids of a cycle are the same as strings.

    Example::

        >>> blocks = {"A": {"a2": "NC(=O)C[Z1]", "a1": "OC(=O)C[Z1]"}, "B": {"b1": "c1ccccc1C(=O)[R1]"}}
        >>> result = block_fingerprints(blocks, radius=2, n_bits=256)
        >>> result["A"][0], result["A"][1].shape, result["B"][1].shape
        (['a1', 'a2'], (2, 32), (1, 32))
    """
    if not isinstance(block_smiles, Mapping):
        kind = type(block_smiles).__name__
        raise TypeError(f"block_smiles must map each cycle to a mapping of block id -> SMILES, got {kind}")
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or n_bits <= 0 or n_bits % 8:
        raise ValueError(f"n_bits must be a positive multiple of 8, got {n_bits!r}")

    result: dict[str, tuple[list[str], np.ndarray]] = {}
    for cycle, blocks in block_smiles.items():
        name = str(cycle)
        if name in result:
            raise DELDataError(f"building blocks: two cycles are both named {name!r} as strings")
        if not isinstance(blocks, Mapping):
            kind = type(blocks).__name__
            raise TypeError(f"block_smiles[{cycle!r}] must map block ids to SMILES strings, got {kind}")
        by_id: dict[str, object] = {}
        for block_id, text in blocks.items():
            key = str(block_id)
            if key in by_id:
                raise DELDataError(f"building blocks of cycle {name!r}: two block ids are both {key!r} as strings")
            by_id[key] = text
        ids = sorted(by_id)
        raw = [by_id[key] for key in ids]

        missing = [k for k, text in enumerate(raw) if not isinstance(text, str) or not text.strip()]
        if missing:
            raise _bad_blocks_error(name, ids, raw, None, missing, "have a missing, empty or non-string SMILES")
        converted = [attachment_points_to_dummies(text) for text in raw]
        try:
            packed = fingerprints(
                converted, radius=radius, n_bits=n_bits, use_chirality=use_chirality, cache_dir=cache_dir
            )
        except DELDataError:
            with rdBase.BlockLogs():
                bad = [k for k, text in enumerate(converted) if _parse(text) is None]
            if not bad:
                raise
            raise _bad_blocks_error(name, ids, raw, converted, bad, "are not SMILES that RDKit can parse") from None
        result[name] = (ids, packed)
    return result


def combine_block_fingerprints(codes, tables) -> np.ndarray:
    """Each compound's building-block fingerprints, concatenated in cycle order.

    Parameters
    ----------
    codes:
        Integer array ``[n_compounds, n_cycles]``: each compound's row in each cycle's table (its block's
        position in the ids of :func:`block_fingerprints`).  A negative code or one past the table's last
        row means a block without a fingerprint: that cycle's bytes are zero.
    tables:
        Sequence of ``n_cycles`` packed arrays in cycle order, uint8 ``[n_blocks_c, n_bytes]`` with the
        same ``n_bytes`` (``n_bits // 8``); for the result of :func:`block_fingerprints`,
        ``[packed for _, packed in result.values()]``.

    Returns
    -------
    np.ndarray
        uint8 ``[n_compounds, n_cycles * n_bytes]``: bytes ``c * n_bytes`` to ``(c + 1) * n_bytes`` of a row
        are the packed fingerprint of the compound's cycle-``c`` block, so the bits of each cycle keep
        their own positions (bit ``j`` of cycle ``c`` is bit ``c * n_bits + j`` after :func:`unpack_bits`).
        Gathered with numpy a chunk of compounds at a time: the memory used is the output and a few MiB.

    Example::

        >>> tables = [np.array([[1], [2]], dtype=np.uint8), np.array([[7]], dtype=np.uint8)]
        >>> combine_block_fingerprints(np.array([[1, 0], [0, -1], [5, 0]]), tables)
        array([[2, 7],
               [1, 0],
               [0, 7]], dtype=uint8)
    """
    if isinstance(tables, Mapping):
        raise TypeError(
            "tables must be a sequence of packed arrays in cycle order, not a mapping; for the result of "
            "block_fingerprints pass [packed for _, packed in result.values()]"
        )
    tables = list(tables)
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be two-dimensional [n_compounds, n_cycles], got shape {codes.shape}")
    if codes.dtype == np.bool_ or not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"codes must hold integers (rows of the block tables, -1 for none), got dtype {codes.dtype}")
    n_compounds, n_cycles = codes.shape
    if len(tables) != n_cycles:
        raise ValueError(f"codes have {n_cycles} cycles (columns) but {len(tables)} tables were given")
    for cycle, table in enumerate(tables):
        if not isinstance(table, np.ndarray) or table.dtype != np.uint8 or table.ndim != 2:
            described = f"{table.dtype} array of shape {table.shape}" if isinstance(table, np.ndarray) else type(table)
            raise TypeError(f"tables[{cycle}] must be a uint8 array [n_blocks, n_bytes], got {described}")
    widths = sorted({table.shape[1] for table in tables})
    if len(widths) > 1:
        raise ValueError(f"the tables must all have the same number of bytes per row, got {widths}")
    n_bytes = widths[0] if widths else 0

    combined = np.empty((n_compounds, n_cycles * n_bytes), dtype=np.uint8)
    for cycle, table in enumerate(tables):
        n_blocks = table.shape[0]
        padded = np.zeros((n_blocks + 1, n_bytes), dtype=np.uint8)  # the last row: no fingerprint
        padded[:n_blocks] = table
        target = combined[:, cycle * n_bytes : (cycle + 1) * n_bytes]
        for start in range(0, n_compounds, _COMBINE_ROWS):
            stop = min(start + _COMBINE_ROWS, n_compounds)
            column = codes[start:stop, cycle]
            known = (column >= 0) & (column < n_blocks)
            rows = np.where(known, column.astype(np.intp), n_blocks)
            target[start:stop] = padded[rows]
    return combined
