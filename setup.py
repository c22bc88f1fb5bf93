"""Metadata is in setup.cfg; this file only declares the optional C helper.

gswoole._atomic (gswoole/_atomic.c) makes gswoole.Table's locking cheaper.
It is optional: if it cannot be built (no C compiler), the install still
succeeds and gswoole calls libatomic through ctypes instead."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gswoole._atomic", ["gswoole/_atomic.c"], optional=True)])
