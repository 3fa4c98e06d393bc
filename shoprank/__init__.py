"""shoprank: raw e-commerce behavior in, search and recommendation rankings out."""

__version__ = "0.1.0"
