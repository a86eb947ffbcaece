"""Test helpers for the CUDA target without a GPU: a CPU emulator of CUDA C kernels
(``cpu_emulate``, ``cpuemu_shim.h``) and NVRTC/ptxas compile checks (``cuda_compile_check``),
adapted from the project's shared tools."""
