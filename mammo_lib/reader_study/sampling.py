"""Stage 04, drawing the reader study's sample: which rows of the real store and of each
generator's synthetic store become scored cases, practice cases or held-out patches (the machine
observers' training data), and the opaque case ids. No file I/O: numbers in, row indices out.

The paper's balance is kept: as many real as synthetic scored cases. With several generators the
synthetic half is split evenly across them (:func:`split_evenly`); the generator that gets an odd
case is chosen from a stream keyed by (seed, purpose), never by position in a list.

Random streams
--------------
* Real rows, and the synthetic rows of a study with ONE generator: ``np.random.default_rng(seed)``,
  first the real permutation, then the synthetic one (the stream of earlier versions, so a
  one-generator case set is unchanged).
* With several generators, generator ``g``'s rows: :func:`mammo_lib.reader_study.files.stable_rng`
  keyed by ("synthetic sample", seed, g): adding a generator changes no other generator's sample,
  and the real rows stay those of the one-generator study.
* The split of an uneven count: keyed by ("generator split", seed, part).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mammo_lib.reader_study.files import ReaderStudyError, stable_rng
from mammo_lib.rng import case_sampling_stream


@dataclass
class CaseSample:
    """Which store rows form the scored cases, the practice cases and the held-out rest."""

    real_cases: np.ndarray
    synthetic_cases: np.ndarray
    real_practice: np.ndarray
    synthetic_practice: np.ndarray
    real_held_out: np.ndarray
    synthetic_held_out: np.ndarray
    warnings: list[str] = field(default_factory=list)


@dataclass
class GeneratorRows:
    """One generator's rows of its store: scored cases, practice cases, held out (int arrays)."""

    cases: np.ndarray
    practice: np.ndarray
    held_out: np.ndarray


@dataclass
class StudySample:
    """The whole sample: real rows and, per generator (in study order), its synthetic rows."""

    real_cases: np.ndarray
    real_practice: np.ndarray
    real_held_out: np.ndarray
    synthetic: dict[str, GeneratorRows]
    warnings: list[str] = field(default_factory=list)

    @property
    def n_synthetic(self) -> int:
        return int(sum(len(g.cases) for g in self.synthetic.values()))


def draw_sample(
    n_real_available: int, n_synthetic_available: int, n_real: int, n_synthetic: int,
    n_practice: int = 0, seed: int = 0, shrink_to_fit: bool = False, min_held_out: int = 0,
) -> CaseSample:
    """Balanced random sample of store rows (one synthetic store).

    Practice cases (half real, half synthetic) and ``min_held_out`` patches per class are kept
    out of the scored sample.

    Parameters
    ----------
    n_real_available, n_synthetic_available : int
        Rows in the real and synthetic stores.
    n_real, n_synthetic : int
        Scored cases asked for (>= 1).
    n_practice : int
        Practice cases (real ones get the odd one).
    seed : int
        Sampling seed.
    shrink_to_fit : bool
        A too-small store gives the largest balanced sample possible (with a note in
        ``warnings``) instead of an error.
    min_held_out : int
        Patches per class left out of cases and practice (the machine observers' training data).

    Returns
    -------
    CaseSample
        Sorted row indices (int arrays) of each part.

    Raises
    ------
    ReaderStudyError
        If a count is not positive, or the stores are too small (without ``shrink_to_fit``, or
        when not even one balanced pair fits).
    """
    _check_counts(n_real, n_synthetic, n_practice, min_held_out)
    prac_real, prac_syn = (n_practice + 1) // 2, n_practice // 2
    room_real = n_real_available - prac_real - min_held_out
    room_syn = n_synthetic_available - prac_syn - min_held_out
    notes: list[str] = []
    if n_real > room_real or n_synthetic > room_syn:
        msg = (
            f"the stores hold {n_real_available} real and {n_synthetic_available} synthetic "
            f"patches; {n_real} + {n_synthetic} cases, {n_practice} practice cases and "
            f"{min_held_out} held-out patches per class do not fit"
        )
        if not shrink_to_fit:
            raise ReaderStudyError(msg + ": extract/generate more patches (notebooks 01/02) or ask for fewer cases")
        n_each = min(n_real, n_synthetic, room_real, room_syn)
        if n_each < 1:
            raise ReaderStudyError(msg + ": not even one balanced pair is left")
        notes.append(msg + f"; using the most balanced sample possible: {n_each} + {n_each}")
        n_real = n_synthetic = n_each
    rng = case_sampling_stream(seed)
    perm_real = rng.permutation(n_real_available)
    perm_syn = rng.permutation(n_synthetic_available)
    return CaseSample(
        real_cases=np.sort(perm_real[:n_real]),
        synthetic_cases=np.sort(perm_syn[:n_synthetic]),
        real_practice=np.sort(perm_real[n_real:n_real + prac_real]),
        synthetic_practice=np.sort(perm_syn[n_synthetic:n_synthetic + prac_syn]),
        real_held_out=np.sort(perm_real[n_real + prac_real:]),
        synthetic_held_out=np.sort(perm_syn[n_synthetic + prac_syn:]),
        warnings=notes,
    )


def _check_counts(n_real: int, n_synthetic: int, n_practice: int, min_held_out: int) -> None:
    if n_real < 1 or n_synthetic < 1 or n_practice < 0 or min_held_out < 0:
        raise ReaderStudyError(
            f"case counts must be positive (n_real={n_real}, n_synthetic={n_synthetic}, "
            f"n_practice={n_practice}, min_held_out={min_held_out})"
        )


def split_evenly(n: int, generators: Sequence[str], seed: int, part: str) -> dict[str, int]:
    """``n`` cases split as evenly as possible across generators.

    Every generator gets ``n // G``; the ``n % G`` odd cases go to generators drawn from a stream
    keyed by ("generator split", seed, part), so no generator is favoured by its position.

    Parameters
    ----------
    n : int
        Cases to split (>= 0).
    generators : sequence of str
        Generator names, in study order.
    seed : int
        The study seed.
    part : str
        What is split ("cases", "practice"): each part has its own stream.

    Returns
    -------
    dict
        generator -> count (int), in the order of ``generators``; the counts sum to ``n``.
    """
    names = list(generators)
    base, extra = divmod(int(n), len(names))
    lucky = set(stable_rng("generator split", seed, part).permutation(len(names))[:extra].tolist())
    return {g: base + (1 if k in lucky else 0) for k, g in enumerate(names)}


def _fits(n_real: int, n_syn: int, room_real: int, room: Mapping[str, int], generators: Sequence[str],
          seed: int) -> bool:
    counts = split_evenly(n_syn, generators, seed, "cases")
    return n_real <= room_real and all(counts[g] <= room[g] for g in generators) and min(counts.values()) >= 1


def draw_generator_sample(
    n_real_available: int, n_available: Mapping[str, int], n_real: int, n_synthetic: int,
    n_practice: int = 0, seed: int = 0, shrink_to_fit: bool = False, min_held_out: int = 0,
) -> StudySample:
    """Balanced random sample from the real store and one or more generators' stores.

    As many real as synthetic scored cases (the paper's balance); the synthetic cases, and the
    synthetic half of the practice cases, are split evenly across the generators
    (:func:`split_evenly`); ``min_held_out`` real patches and ``min_held_out`` patches of EACH
    generator stay out of cases and practice (the per-generator machine observers' training
    data). With one generator this is exactly :func:`draw_sample` (same rows, same warnings).

    Parameters
    ----------
    n_real_available : int
        Rows in the real store (after any lesion-class filter).
    n_available : mapping of str to int
        Generator name -> rows in its store, in study order.
    n_real, n_synthetic : int
        Scored cases asked for (>= 1; with G generators, ``n_synthetic`` >= G).
    n_practice : int
        Practice cases (real ones get the odd one; the synthetic ones are split across generators).
    seed : int
        Sampling seed (streams: see the module docstring).
    shrink_to_fit : bool
        Too-small stores give the largest balanced sample that fits (a note in ``warnings``).
    min_held_out : int
        Patches kept out per class and per generator.

    Returns
    -------
    StudySample
        Sorted row indices of each part.

    Raises
    ------
    ReaderStudyError
        If a count is not positive, there are fewer synthetic cases than generators, or the
        stores are too small (without ``shrink_to_fit``, or when nothing fits).
    """
    names = list(n_available)
    if not names:
        raise ReaderStudyError("no synthetic patch store: run notebook 02 first")
    if len(names) == 1:
        s = draw_sample(n_real_available, n_available[names[0]], n_real, n_synthetic, n_practice, seed,
                        shrink_to_fit, min_held_out)
        return StudySample(s.real_cases, s.real_practice, s.real_held_out,
                           {names[0]: GeneratorRows(s.synthetic_cases, s.synthetic_practice, s.synthetic_held_out)},
                           s.warnings)
    _check_counts(n_real, n_synthetic, n_practice, min_held_out)
    if n_synthetic < len(names):
        raise ReaderStudyError(f"n_synthetic={n_synthetic} cannot be split across {len(names)} generators "
                               f"({', '.join(names)}): ask for at least one synthetic case per generator")
    prac_real = (n_practice + 1) // 2
    prac = split_evenly(n_practice // 2, names, seed, "practice")
    room_real = n_real_available - prac_real - min_held_out
    room = {g: n_available[g] - prac[g] - min_held_out for g in names}
    notes: list[str] = []
    if not _fits(n_real, n_synthetic, room_real, room, names, seed):
        notes, n_real = _shrink(n_real_available, n_available, n_real, n_synthetic, n_practice, min_held_out,
                                room_real, room, names, seed, shrink_to_fit)
        n_synthetic = n_real
    counts = split_evenly(n_synthetic, names, seed, "cases")
    perm_real = case_sampling_stream(seed).permutation(n_real_available)
    synthetic = {}
    for g in names:
        perm = stable_rng("synthetic sample", seed, g).permutation(n_available[g])
        k, p = counts[g], prac[g]
        synthetic[g] = GeneratorRows(np.sort(perm[:k]), np.sort(perm[k:k + p]), np.sort(perm[k + p:]))
    return StudySample(np.sort(perm_real[:n_real]), np.sort(perm_real[n_real:n_real + prac_real]),
                       np.sort(perm_real[n_real + prac_real:]), synthetic, notes)


def _shrink(n_real_available, n_available, n_real, n_synthetic, n_practice, min_held_out, room_real, room,
            names, seed, shrink_to_fit) -> tuple[list[str], int]:
    """The largest balanced count that fits, with its note (or the error)."""
    held = ", ".join(f"{n_available[g]} of {g}" for g in names)
    msg = (f"the stores hold {n_real_available} real patches and {held}; {n_real} + {n_synthetic} cases "
           f"(synthetic split evenly across {len(names)} generators), {n_practice} practice cases and "
           f"{min_held_out} held-out patches per class and generator do not fit")
    if not shrink_to_fit:
        raise ReaderStudyError(msg + ": extract/generate more patches (notebooks 01/02) or ask for fewer cases")
    n_each = next((n for n in range(min(n_real, n_synthetic), 0, -1)
                   if _fits(n, n, room_real, room, names, seed)), 0)
    if n_each < len(names):
        raise ReaderStudyError(msg + ": not even one real case per synthetic case of every generator is left")
    return [msg + f"; using the most balanced sample possible: {n_each} + {n_each}"], n_each


def opaque_ids(rng: np.random.Generator, n: int, prefix: str = "c") -> list[str]:
    """``n`` distinct random hex ids (they reveal nothing about truth or source).

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
    prefix : str

    Returns
    -------
    list of str
        ``prefix`` + 10 hex digits each.
    """
    ids: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        token = prefix + "".join(f"{b:02x}" for b in rng.integers(0, 256, size=5))
        if token not in ids:
            ids.add(token)
            out.append(token)
    return out
