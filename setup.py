"""Build hook for the optional C module ``dstft_cli.core._frames`` (metadata is in pyproject.toml).

The module only speeds up the grid engine; without a C compiler the build skips it
(``optional=True``) and the transform falls back to its pure-PyTorch path, with equal results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dstft_cli.core._frames",
            sources=["dstft_cli/core/_frames.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
