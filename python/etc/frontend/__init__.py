"""ETC front end: PyTorch programs to torch-dialect IR text (see torch_import.py)."""
