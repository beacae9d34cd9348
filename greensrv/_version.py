"""The package's version, in a module of its own so that the command can print it without
importing the package's public face (``__init__``), which sits above it."""

__version__ = "0.1.0"
