"""Stage 02: synthetic lesions, from the DCGAN trained here and from any other generator.

Reads: ``patches/lesion.zarr``; a generator's folder, TorchScript file or medigan model.
Writes: ``dcgan/`` (checkpoints, loss log, samples, figures), ``synthetic/<name>.zarr``.
Exports: ``training.train_dcgan``, ``synthesis.generate_synthetic_patches``, ``model`` (G and D),
``config.TrainConfig``, ``regularisers`` (options for few patches), ``session`` (one training
session), ``files``, ``figures``, ``streams`` (the stage's random streams); ``contract``,
``sources`` and ``imported`` for the ``generators`` parameter.
"""
