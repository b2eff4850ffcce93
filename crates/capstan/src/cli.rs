//! The `validate` and `explain` commands.
