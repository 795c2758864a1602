"""ccidkit.scripts: the `ccidkit` command line, thin over the packages."""
