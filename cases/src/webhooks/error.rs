//! What goes wrong setting up a webhook or reading its records.

/// What went wrong setting up a webhook or reading its records (failed deliveries are retried,
/// not returned).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The configuration is unusable.
    #[error("invalid webhook for department {department}: {reason}")]
    Invalid {
        /// The department as configured.
        department: String,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the http client for the webhook of {department}: {source}")]
    Client {
        /// The department.
        department: String,
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
    /// The delivery records bucket could not be created or opened.
    #[error("cannot open bucket {bucket}: {source}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// The JetStream error.
        #[source]
        source: async_nats::Error,
    },
    /// The routed stream or the department's consumer could not be opened.
    #[error("cannot open consumer {durable} on {stream}: {source}")]
    Consumer {
        /// Stream name.
        stream: String,
        /// Consumer name.
        durable: String,
        /// The JetStream error.
        #[source]
        source: async_nats::Error,
    },
    /// The delivery records could not be read.
    #[error("cannot read the webhook deliveries of {department}: {source}")]
    Read {
        /// The department.
        department: String,
        /// The JetStream error.
        #[source]
        source: async_nats::Error,
    },
}
