"""databazaar: an open data market for AI.

Subpackages (imports point down only): ``core`` (config, errors, io, progress),
``valuation`` (pure numerics), ``market`` (domain layer), ``server`` (FastAPI),
``lm`` and the LM-based tools built on it.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
