"""CP-IS: the child protection alert exchange."""

__version__ = "0.1.0"
