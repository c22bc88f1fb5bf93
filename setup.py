"""Metadata is in setup.cfg; this file only declares the optional C helpers.

Both are optional: if they cannot be built (no C compiler), the install still
succeeds and gswoole uses its pure-Python paths instead.

* gswoole._atomic (gswoole/_atomic.c) makes gswoole.Table's locking cheaper
  (without it: libatomic through ctypes).
* gswoole._http (gswoole/_http.c) reads the common HTTP request head in one
  call (without it: httptools' callbacks, for every request)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gswoole._atomic", ["gswoole/_atomic.c"], optional=True),
                   Extension("gswoole._http", ["gswoole/_http.c"], optional=True)])
