use std::fmt;

/// Why a plugin call failed; the host reports kind and message and stops the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The step's configuration is unusable.
    InvalidConfig,
    /// The batch lacks the columns or types the plugin needs.
    InvalidInput,
    /// Anything else.
    Internal,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn config(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::InvalidConfig,
            message: message.into(),
        }
    }
    pub fn input(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::InvalidInput,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

/// Arrow errors inside a plugin are almost always about the input it was given.
impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Error {
        Error::input(e.to_string())
    }
}
