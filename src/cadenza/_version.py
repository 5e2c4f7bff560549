"""The one version string of Cadenza (read by pyproject.toml and the package)."""

__version__ = "0.2.0"
