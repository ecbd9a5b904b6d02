"""Running the integer model: the golden path (executable spec), the packed Numba path, kernels, test vectors."""
