"""One module per subcommand: parse flags, call the core, render, return an exit code."""
