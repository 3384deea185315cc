"""Builds the optional C speedups of stackmedic.observe (everything else is in pyproject.toml).

`optional=True`: where no C compiler is available the install still succeeds and
LatencyTracker and LogSketch use their pure-Python paths (slower, same results).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("stackmedic.observe._speedups",
                             ["src/stackmedic/observe/_speedups.c"],
                             extra_compile_args=["-O2"], optional=True)])
