"""Workflows built on many registrations: multi-atlas segmentation, templates, longitudinal change."""
