from setuptools import setup

setup(cffi_modules=["autograd_c/_cffi_build.py:ffibuilder"])
