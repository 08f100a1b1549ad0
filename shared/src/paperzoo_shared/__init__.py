"""paperzoo-shared: the thin core every paperzoo paper package builds on."""

__version__ = "0.2.0"
