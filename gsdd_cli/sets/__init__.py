"""Synthetic sets: Gaussian and pixel images, the storage budget, the `.gsd` file, fitting, PNG output."""
