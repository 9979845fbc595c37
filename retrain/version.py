"""The package version, read by the CLI and the package root."""
__version__ = "0.1.0"
