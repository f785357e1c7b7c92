"""sungen-ray: zero-label synthetic training sets for text classifiers, cleaned by SunGen, on Ray."""

__version__ = "0.1.0"
