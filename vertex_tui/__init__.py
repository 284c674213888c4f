"""vertex-tui: operations console and engine for the Vertex AR background services."""

__version__ = "0.1.0"
