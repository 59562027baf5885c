"""Run configuration: loading recipe files with command-line overrides, and the schema that validates them."""
