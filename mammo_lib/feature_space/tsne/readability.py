"""What a t-SNE picture can show (stage 03): can it judge where synthetic lesions lie at all?

The paper's Fig. 2 asks whether synthetic lesions sit among real lesions or among normal
tissue. That question has an answer only in a space where real lesions themselves are told
from normal tissue. In raw pixels they often are not (on the default phantom about a third of
the real lesions sit among normal tissue): the picture then cannot judge the synthetic ones,
whatever it shows. This module measures it, by one rule:

- the leave-one-out 1-NN accuracy of real lesions vs normal tissue in the embedding
  (:func:`mammo_lib.feature_space.metrics.one_nn_accuracy`; 0.5 = not told apart at all), and
- the share of real lesions that are "outliers" (their nearest real neighbours mostly normal
  tissue, :func:`mammo_lib.feature_space.sampling.mark_outliers`).

The picture is called readable when the 1-NN accuracy is at least
:data:`MIN_LESION_VS_NORMAL_1NN` and the outlier share at most :data:`MAX_REAL_OUTLIER_SHARE`.
Reads and writes no files.
"""

from __future__ import annotations

import numpy as np

from mammo_lib.feature_space import metrics as rm

#: lesion-vs-normal 1-NN accuracy a picture needs before it can judge synthetic lesions
MIN_LESION_VS_NORMAL_1NN = 0.75
#: largest share of real lesions among normal tissue for a readable picture
MAX_REAL_OUTLIER_SHARE = 0.2


def readability(embedding: np.ndarray, groups: np.ndarray, outliers: np.ndarray, space: str,
                n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Whether a t-SNE embedding can show where synthetic lesions lie, with the numbers behind it.

    Parameters
    ----------
    embedding : float array, shape (n, 2)
        t-SNE coordinates.
    groups : str array, shape (n,)
        "lesion", "synthetic" or "normal" per row.
    outliers : bool array, shape (n,)
        Outlier flags in this embedding (:func:`mammo_lib.feature_space.sampling.mark_outliers`).
    space : str
        The feature space the embedding was computed from ("pixels", "cnn"), for the sentence.
    n_bootstrap, seed : int
        The 1-NN accuracy's interval.

    Returns
    -------
    dict
        ``space``, ``lesion_vs_normal_1nn`` (an estimate with its interval),
        ``real_lesion_outlier_share``, ``readable`` (bool), the rule's thresholds
        (``min_lesion_vs_normal_1nn``, ``max_real_outlier_share``) and ``sentence`` (in words).

    Raises
    ------
    MetricsError
        When the lesion or normal group has fewer than 2 points.
    """
    groups = np.asarray(groups)
    lesion = groups == "lesion"
    acc = rm.one_nn_accuracy(np.asarray(embedding)[lesion], np.asarray(embedding)[groups == "normal"],
                             n_bootstrap=n_bootstrap, seed=seed)
    share = float(np.mean(np.asarray(outliers)[lesion]))
    readable = bool(acc["value"] >= MIN_LESION_VS_NORMAL_1NN and share <= MAX_REAL_OUTLIER_SHARE)
    told = f"real lesions are told from normal tissue with 1-NN accuracy {acc['value']:.2f} (0.5 = not at all)"
    where = f"{share:.0%} of the real lesions sit among normal tissue"
    if readable:
        sentence = (f"In this {space} t-SNE {told} and {where}: the picture can show whether synthetic lesions sit "
                    "among real lesions or among normal tissue.")
    else:
        sentence = (f"In this {space} t-SNE {told} and {where}: in this space real lesions are not told from "
                    "normal tissue, so the picture cannot judge where synthetic lesions lie (rule: 1-NN accuracy "
                    f">= {MIN_LESION_VS_NORMAL_1NN} and at most {MAX_REAL_OUTLIER_SHARE:.0%} real outliers).")
    return {"space": space, "lesion_vs_normal_1nn": {k: acc[k] for k in ("value", "ci_low", "ci_high")},
            "real_lesion_outlier_share": share, "readable": readable,
            "min_lesion_vs_normal_1nn": MIN_LESION_VS_NORMAL_1NN, "max_real_outlier_share": MAX_REAL_OUTLIER_SHARE,
            "sentence": sentence}
