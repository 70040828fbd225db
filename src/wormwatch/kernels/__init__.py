"""Numba kernels: the only place numba is imported. Each file holds kernels that call each other."""

from wormwatch.kernels.cacheload import install

# cached kernels load without numba's whole set-up (see cacheload)
install()
