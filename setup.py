"""Build hook for the optional C modules ``dstft_cli.core._frames`` and ``dstft_cli.core._losses``
(metadata is in pyproject.toml).

The modules only speed up the engines (grid, position, per-bin / per-TF-bin) and the losses;
without a C compiler the build skips them (``optional=True``) and the transform and losses fall
back to their pure-PyTorch paths, with equal results.
They split their loops over PyTorch's OpenMP threads (``_parallel.h``) when the compiler supports
``-fopenmp``, and run them on the calling thread otherwise (same results, bit for bit).
"""

import os
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP = ["-fopenmp"]


class BuildExt(build_ext):
    """Drop the OpenMP flags when this compiler cannot build and link an OpenMP program."""

    def build_extensions(self):
        if not self._supports_openmp():
            for ext in self.extensions:
                ext.extra_compile_args = [a for a in ext.extra_compile_args if a not in OPENMP]
                ext.extra_link_args = [a for a in ext.extra_link_args if a not in OPENMP]
        super().build_extensions()

    def _supports_openmp(self) -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "probe.c")
            with open(source, "w") as f:
                f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
            try:
                objects = self.compiler.compile([source], output_dir=tmp, extra_postargs=OPENMP)
                self.compiler.link_executable(objects, os.path.join(tmp, "probe"),
                                              extra_postargs=OPENMP)
            except Exception:  # any compiler or linker failure means: no OpenMP
                return False
        return True


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "dstft_cli.core._frames",
            sources=["dstft_cli/core/_frames.c"],
            depends=["dstft_cli/core/_parallel.h"],
            extra_compile_args=["-O3", *OPENMP],
            extra_link_args=OPENMP,
            optional=True,
        ),
        Extension(
            "dstft_cli.core._losses",
            sources=["dstft_cli/core/_losses.c"],
            depends=["dstft_cli/core/_parallel.h"],
            # no errno or FP traps: sqrt is one instruction and the branch-free selects vectorise
            extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math", *OPENMP],
            extra_link_args=OPENMP,
            optional=True,
        ),
    ],
)
