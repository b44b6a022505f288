"""pip install ./python: the nnterp_c package with the libnnterp.so it was built with.

The library comes from the CMake build directory, NNTERP_BUILD_DIR (default: ../build beside this
file), and is copied into the package, so the installed package keeps working whatever happens to
the build tree. No dependency is downloaded: ctypes is in the standard library, numpy is assumed
installed (Debian's python3-numpy)."""
import os
import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent


class build_with_library(build_py):
    def run(self):
        super().run()
        build = pathlib.Path(os.environ.get("NNTERP_BUILD_DIR", HERE.parent / "build"))
        lib = build / "libnnterp.so"
        if not lib.exists():
            raise SystemExit(f"nnterp_c: {lib} not found: build the engine first "
                             "(cmake -S . -B build && cmake --build build), or set "
                             "NNTERP_BUILD_DIR")
        dst = pathlib.Path(self.build_lib) / "nnterp_c" / "libnnterp.so"
        shutil.copyfile(lib.resolve(), dst)


setup(
    name="nnterp-c",
    version="0.1.0",
    description="nnterp's API over the nnterp C engine (ctypes + numpy)",
    packages=["nnterp_c"],
    python_requires=">=3.9",
    cmdclass={"build_py": build_with_library},
    zip_safe=False,
)
