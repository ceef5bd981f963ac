from setuptools import setup

# cffi compiles the extension against the stable ABI (autograd_c/_autograd_c.abi3.so),
# so one wheel serves every CPython >= 3.9.
setup(
    cffi_modules=["autograd_c/_cffi_build.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
