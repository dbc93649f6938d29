"""Stage 04's CNN machine reader, ``machine-cnn``: stage 03's two-sample-test network as a reader.

The network and training recipe are the defaults of the classifier two-sample test of stage 03
(:class:`mammo_lib.feature_space.c2st.two_sample.ObserverConfig`; stage 03's ``c2st_*`` parameters do not reach it, notebook
04's ``cnn_epochs`` and ``cnn_max_cpu_seconds`` do; Lopez-Paz & Oquab, "Revisiting classifier two-sample
tests", ICLR 2017): a small CNN trained from random weights to tell real lesion patches from
one generator's patches. As a reader it is trained ONCE per generator, on the case set's
held-out patches only (``key/held_out.csv``: never a case or practice patch), with equal numbers
of real and synthetic patches (the larger held-out set subsampled by the keyed stream
``mammo_lib.rng.numpy_stream(seed, "machine_cnn_balance", name_key(generator))``), and then
rates every case: its P(real) = 1 - P(synthetic) is mapped to the nearest of the six options by
:mod:`mammo_lib.reader_study.machine_observers`, which reads and writes the files.

A reader's probabilities must be calibrated, not just ranked (the six options are absolute), so
after training the network's batch-normalisation layers get the population statistics of its
training patches, as Ioffe & Szegedy prescribe for inference ("Batch normalization", ICML 2015,
sec. 3.1), instead of the running averages left by the last training steps (done by
:func:`mammo_lib.feature_space.c2st.two_sample.train_observer` for every observer network). On the default study (seed 0, 15 epochs) the running averages
left every probability shifted: held-out AUC 0.97 on continuous scores but 0.86 once rounded to
the six options (many real cases "extremely confident synthetic"); with population statistics
1.00 and 1.00.

Randomness: besides the balancing stream, the network's initial weights, batch order and flips
come from :func:`mammo_lib.feature_space.c2st.two_sample.train_observer`'s streams keyed by the label
``"machine-cnn/<generator>"`` (not the reader id, so a generator's network does not depend on
which other generators the case set holds). On a CPU with a fixed thread count
(``ObserverConfig.n_threads``) a rerun gives the same ratings, unless the CPU-time safety net
(``max_cpu_seconds``) cuts training short, which the result's warnings say.
Reads and writes no files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from mammo_lib.feature_space.arrays import FeatureSpaceError
from mammo_lib.feature_space.c2st.two_sample import (
    ObserverConfig,
    n_parameters,
    observer_scores,
    train_observer,
)
from mammo_lib.feature_space.sampling import name_key
from mammo_lib.reader_study.files import ReaderStudyError
from mammo_lib.rng import numpy_stream

CNN_OBSERVER = "machine-cnn"
BALANCE_PURPOSE = "machine_cnn_balance"


def reader_config(epochs: int | None = None, max_cpu_seconds: float | None = None, **overrides):
    """The reader's :class:`mammo_lib.feature_space.c2st.two_sample.ObserverConfig`: stage 03's defaults, with the given changes.

    Parameters
    ----------
    epochs : int, optional
        Passes over the held-out training patches (default: the observer's default).
    max_cpu_seconds : float, optional
        CPU seconds (all threads) for training one generator's network, a safety net checked
        after each epoch (default: the observer's default).
    **overrides
        Any other :class:`~mammo_lib.feature_space.c2st.two_sample.ObserverConfig` field (``widths``, ``first_stride``,
        ``learning_rate``, ``batch_size``, ``flips``, ``n_threads``).

    Returns
    -------
    ObserverConfig

    Raises
    ------
    ReaderStudyError
        When a value is out of range or a field is unknown (the message names it).
    """

    given = {k: v for k, v in {"epochs": epochs, "max_cpu_seconds": max_cpu_seconds}.items() if v is not None}
    try:
        return replace(ObserverConfig(), **given, **overrides)
    except FeatureSpaceError as exc:
        raise ReaderStudyError(f"{CNN_OBSERVER}: {exc}") from None
    except TypeError as exc:
        raise ReaderStudyError(f"{CNN_OBSERVER}: {exc}") from None


def min_patch_size(config) -> int:
    """Smallest patch side the network takes (:meth:`mammo_lib.feature_space.c2st.two_sample.ObserverConfig.min_patch_size`).

    Parameters
    ----------
    config : ObserverConfig

    Returns
    -------
    int
    """
    return config.min_patch_size()


def balanced_rows(n_real: int, n_synthetic: int, generator: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the held-out real and synthetic patches to train on: equal numbers of each.

    Parameters
    ----------
    n_real, n_synthetic : int
        Held-out patches of each class.
    generator : str
        Keys the stream (with the seed), so each generator's subsample is its own.
    seed : int
        Study seed.

    Returns
    -------
    real, synthetic : int array, shape (n,)
        Sorted positions in the held-out real / synthetic lists, ``n = min(n_real, n_synthetic)``;
        the smaller set is kept whole.
    """

    n = min(n_real, n_synthetic)
    rng = numpy_stream(seed, BALANCE_PURPOSE, name_key(generator))
    real = np.sort(rng.permutation(n_real)[:n]) if n_real > n else np.arange(n)
    synthetic = np.sort(rng.permutation(n_synthetic)[:n]) if n_synthetic > n else np.arange(n)
    return real, synthetic


@dataclass
class CnnReader:
    """One generator's trained ``machine-cnn`` network.

    Attributes
    ----------
    model : torch.nn.Module
        In eval mode; its output is the logit of P(synthetic).
    generator : str
    n_per_class : int
        Held-out patches of each class it was trained on.
    epochs : int
        Epochs trained (fewer than ``config.epochs`` when the CPU limit cut in).
    train_accuracy : float
        Accuracy at P = 0.5 on its own training patches.
    cpu_seconds : float
        CPU time of the training (a timing: varies run to run).
    config : ObserverConfig
    warnings : list of str
    """

    model: object
    generator: str
    n_per_class: int
    epochs: int
    train_accuracy: float
    cpu_seconds: float
    config: object
    warnings: list[str] = field(default_factory=list)

    def prob_real(self, patches: np.ndarray) -> np.ndarray:
        """P(real) = 1 - P(synthetic) of each patch.

        Parameters
        ----------
        patches : uint8 array, shape (n, s, s)

        Returns
        -------
        float64 array, shape (n,)
            In (0, 1).

        Raises
        ------
        ReaderStudyError
            When ``patches`` is not (n, s, s) or not finite.
        """
        from mammo_lib.feature_space.c2st.two_sample import observer_scores

        try:
            return 1.0 - observer_scores(self.model, patches, self.config.n_threads)
        except FeatureSpaceError as exc:
            raise ReaderStudyError(f"{CNN_OBSERVER} ({self.generator}): {exc}") from None


def train_cnn_reader(real: np.ndarray, synthetic: np.ndarray, generator: str, config=None, seed: int = 0,
                     progress: bool = False) -> CnnReader:
    """Train the ``machine-cnn`` network of one generator on its held-out patches.

    :func:`mammo_lib.feature_space.c2st.two_sample.train_observer` trains it, ending with the population batch-norm
    statistics of its training patches, so its probabilities are calibrated for the six-option
    scale.

    Parameters
    ----------
    real, synthetic : uint8 array, shape (n_real, s, s) and (n_synthetic, s, s)
        The held-out real lesion patches and the generator's held-out patches (never a case or
        practice patch: the caller's duty). The larger set is subsampled to the smaller's size
        (:func:`balanced_rows`), so 0.5 stays the chance level.
    generator : str
        The generator (keys the random streams).
    config : ObserverConfig, optional
        Architecture and recipe (default :func:`reader_config()`, i.e. stage 03's defaults).
    seed : int
        Study seed.
    progress : bool
        Print one plain line when training starts and one when it ends (no times: an executed
        notebook stays byte-identical on a rerun).

    Returns
    -------
    CnnReader

    Raises
    ------
    ReaderStudyError
        When the patches are smaller than the network takes (:func:`min_patch_size`), either set
        has fewer than 2 patches, or a patch array is not (n, s, s) or not finite.

    References
    ----------
    Lopez-Paz & Oquab, "Revisiting classifier two-sample tests", ICLR 2017; Ioffe & Szegedy,
    "Batch normalization", ICML 2015.
    """

    config = config if config is not None else reader_config()
    size = min(np.shape(real)[1:] + np.shape(synthetic)[1:], default=0)
    if size < min_patch_size(config):
        raise ReaderStudyError(
            f"{CNN_OBSERVER} ({generator}): the patches are {size}x{size} pixels; its network "
            f"({len(config.widths)} blocks that each halve the image, first stride {config.first_stride}) "
            f"needs at least {min_patch_size(config)}x{min_patch_size(config)}: use larger patches or fewer "
            "blocks (widths)")
    rows_real, rows_syn = balanced_rows(len(real), len(synthetic), generator, seed)
    first, second = np.asarray(real)[rows_real], np.asarray(synthetic)[rows_syn]
    if progress:
        print(f"{CNN_OBSERVER} ({generator}): training on {len(first)} real and {len(second)} synthetic "
              f"held-out patches ({config.epochs} epochs, at most {config.max_cpu_seconds:g} CPU s)", flush=True)
    started = time.process_time()
    try:
        model, epochs = train_observer(first, second, f"{CNN_OBSERVER}/{generator}", config, seed)
        scores = observer_scores(model, np.concatenate([first, second]), config.n_threads)
    except FeatureSpaceError as exc:
        raise ReaderStudyError(f"{CNN_OBSERVER} ({generator}): {exc}") from None
    cpu = time.process_time() - started
    truth = np.r_[np.zeros(len(first), bool), np.ones(len(second), bool)]
    accuracy = float(np.mean((scores > 0.5) == truth))
    warnings = []
    if epochs < config.epochs:
        warnings.append(f"{CNN_OBSERVER} ({generator}): the CPU limit ({config.max_cpu_seconds:g} s) stopped "
                        f"training after {epochs} of {config.epochs} epochs: its ratings now depend on this "
                        "machine's speed (raise cnn_max_cpu_seconds or lower cnn_epochs)")
    if progress:
        print(f"{CNN_OBSERVER} ({generator}): trained {epochs} of {config.epochs} epochs; training accuracy "
              f"{accuracy:.3f} (seconds in reader_study/timings.json)", flush=True)
    return CnnReader(model=model, generator=generator, n_per_class=len(first), epochs=epochs,
                     train_accuracy=accuracy, cpu_seconds=cpu, config=config, warnings=warnings)


def describe_reader(config=None, observers=None) -> str:
    """One paragraph a radiologist can read: what ``machine-cnn`` is and how it was trained.

    Parameters
    ----------
    config : ObserverConfig, optional
        The reader's configuration (default :func:`reader_config()`).
    observers : sequence of str, optional
        The machine observers this run uses; when given without ``machine-cnn``, the paragraph
        says that it did not run.

    Returns
    -------
    str
        Markdown, every number generated from ``config``.
    """

    config = config if config is not None else reader_config()
    text = (f"**`{CNN_OBSERVER}`** is a small convolutional neural network ({len(config.widths)} layers of 3x3 "
            f"filters, {min(config.widths)} to {max(config.widths)} filters per layer, about "
            f"{n_parameters(config):,} weights) that looks at the whole patch at full resolution and "
            "answers one question: real lesion or synthetic? It starts from random weights (nothing "
            "downloaded, nothing learned elsewhere). For each generator it learns from the patches kept "
            "out of the case set: the held-out real lesions and as many of that generator's held-out "
            f"patches ({config.epochs} passes over them, patches randomly mirrored"
            f"{'' if config.flips else ' (mirroring off)'}), never a patch a reader is shown. It then "
            "rates every case; its probability that the patch is real is mapped to the nearest of the "
            "six options. It is the network of notebook 03's two-sample test, trained once on the "
            "held-out patches instead of in folds. Unlike a reader it has been shown labelled examples, "
            "so its AUC answers a different question: does the generator leave a trace that a machine "
            "can learn to see?")
    if observers is not None and CNN_OBSERVER not in observers:
        text += f" *Not run here:* `machine_observers` does not list `{CNN_OBSERVER}`."
    return text
