"""kallelse: email and SMS notification pipeline for conferences and meetings."""

__version__ = "0.1.0"
