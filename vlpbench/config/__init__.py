"""Experiment files: schema, YAML loading with line numbers, variant × seed expansion."""
