"""The t-SNE of stage 03: ``run.run_tsne`` (the exact numba and torch backends, and scikit-learn's and openTSNE's), ``affinity`` (P), ``kernels`` (the
fused numba gradient), ``torch_gradient`` (GPU), ``optimiser`` (scikit-learn's schedule, for both),
``readability`` (what a t-SNE picture can show)."""
