"""Command-line interface: ``attmask <subcommand>``."""
