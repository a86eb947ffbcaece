"""Code generation: kernel IR, its renderers (LLVM, CUDA) and their support code."""
