"""pytest plugin (entry point pytest11 `ccidkit`): fixtures for firmware tests."""
