# The compiled cffi module (built from csrc/ by _cffi_build.py).
from typing import Any

ffi: Any
lib: Any
