"""Numba kernels: the only place numba is imported. Each file holds kernels that call each other."""
