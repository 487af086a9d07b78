"""Benchmark harness: RegistrationSuite against peer registration tools (see README.md)."""
