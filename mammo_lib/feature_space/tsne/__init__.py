"""The exact t-SNE of stage 03: ``run.run_tsne`` (backends), ``affinity`` (P), ``kernels`` (the
fused numba gradient), ``torch_gradient`` (GPU), ``optimiser`` (scikit-learn's schedule, for both),
``readability`` (what a t-SNE picture can show)."""
