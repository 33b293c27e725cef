//! One module per subcommand.

pub(crate) mod invoke;
pub(crate) mod up;
pub(crate) mod validate;
