use thiserror::Error;

/// Failures of the xDS helpers; each names the protobuf type involved.
#[derive(Debug, Error)]
pub enum XdsError {
    /// An `Any` holds another type than the one asked for.
    #[error("Any holds {actual}, expected {expected}")]
    TypeMismatch {
        /// Full name of the type the caller wanted.
        expected: String,
        /// Type URL found in the `Any`.
        actual: String,
    },
    /// The bytes are not a valid encoding of the type.
    #[error("decoding {type_name}: {source}")]
    Decode {
        /// Full protobuf name of the type being decoded.
        type_name: String,
        /// What prost found wrong.
        #[source]
        source: prost::DecodeError,
    },
    /// The descriptor pool does not describe this type, so it has no JSON form here.
    #[error("{type_name} is not in the embedded descriptor pool")]
    UnknownType {
        /// Full protobuf name that was looked up.
        type_name: String,
    },
    /// JSON could not be produced from, or read into, the type.
    #[error("JSON for {type_name}: {message}")]
    Json {
        /// Full protobuf name of the top-level type.
        type_name: String,
        /// The reason, prefixed by the JSON path when reading (e.g. `admin.foo: ...`).
        message: String,
    },
    /// The embedded descriptor set could not be loaded (a build problem, not an input one).
    #[error("embedded descriptor set is invalid: {0}")]
    Pool(String),
}
