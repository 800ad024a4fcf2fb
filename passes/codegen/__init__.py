"""Code generation passes: sm_task IR through the GPU and NVVM dialects to PTX."""
