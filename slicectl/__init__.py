"""slicectl: the Slice Portal's command-line client (docs/slices-as-code.md)."""

__version__ = "0.1.0"
