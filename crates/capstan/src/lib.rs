//! capstan: config loading, the daemon, the CLI.
