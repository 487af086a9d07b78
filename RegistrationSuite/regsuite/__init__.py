"""RegistrationSuite: physical-space image registration (engine, files, evaluation, CLI)."""
__version__ = "0.1.0"
