"""Stage 03: can a machine tell real from synthetic, and how do they lie in feature space?

Reads: ``patches/*.zarr``, ``synthetic/*.zarr``. Writes: ``feature_space/`` (metrics.json,
metrics_table.csv, embedding.csv, c2st_scores.csv, timings.json, figures/).
Exports: ``c2st/`` (the CNN two-sample test, the study's realism verdict), ``tsne/`` (the exact
t-SNE and what its picture can show), ``sampling.load_groups``, ``metrics`` (1-NN, PRDC, Fréchet
distance, authenticity, with yardsticks and intervals), ``lesion_cnn``, ``random_cnn``,
``results``, ``tables``, ``figures``, ``streams`` (the stage's random streams).
"""
