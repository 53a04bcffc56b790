"""Benchmarks of ``dstft_cli``: ``python -m benchmarks`` regenerates ``BENCHMARKS.md``.

Tables (see ``python -m benchmarks --help``):

* ``a`` — the transform per parameterisation vs ``torch.stft`` and the authors' ``dstft`` 3.0.0
  (:mod:`benchmarks.transform`, also runnable as ``python benchmarks/transform.py``);
* ``b`` — time to the optimum vs a ``torch.stft`` grid search (:mod:`benchmarks.optimum`);
* ``c`` — scaling with signal length and ``n_fft`` (:mod:`benchmarks.scaling`);
* ``d``, ``e`` — the CLI: batch throughput and a 10-minute signal (:mod:`benchmarks.cli_runs`).

Everything here measures; nothing here is imported by the package.
"""
