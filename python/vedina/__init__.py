"""Vedina: the backend of a movie streaming platform.

Python services and a Robyn HTTP layer, served by Granian, on a Rust core
(``vedina._native``) for the hot paths.
"""

__version__ = "0.1.0"
